"""Cleaning: unicode and whitespace normalisation, empty-document removal, deduplication.

Exact duplicates are found by a hash of the normalised text, near-duplicates by MinHash LSH
over word shingles (near_duplicates.py), within each domain. The first document (in reading
order) of a group is kept.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field, replace

from indexing.corpus import Document
from indexing.near_duplicates import NearDuplicateFilter

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\u200c\u200d\u2060\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class Duplicate:
    doc_id: str
    duplicate_of: str
    kind: str  # "exact" or "near"
    similarity: float


class DuplicateCounts:
    """For results that carry a ``duplicates`` list."""

    duplicates: list[Duplicate]

    @property
    def exact_duplicates(self) -> int:
        return sum(d.kind == "exact" for d in self.duplicates)

    @property
    def near_duplicates(self) -> int:
        return sum(d.kind == "near" for d in self.duplicates)


@dataclass
class CleanResult(DuplicateCounts):
    documents: list[Document] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)


def normalise_text(text: str) -> str:
    """NFKC, no control or zero-width characters, single spaces, at most one blank line."""
    text = unicodedata.normalize("NFKC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def clean_documents(documents: list[Document], *, near_duplicate_threshold: float = 0.9,
                    words_per_shingle: int = 5, permutations: int = 128) -> CleanResult:
    result = CleanResult()
    seen_hashes: dict[tuple[str, str], str] = {}
    near_by_domain: dict[str, NearDuplicateFilter] = {}
    for document in documents:
        text = normalise_text(document.text)
        if not text:
            result.empty.append(document.id)
            continue
        key = (document.domain, content_hash(text))
        if key in seen_hashes:
            result.duplicates.append(Duplicate(document.id, seen_hashes[key], "exact", 1.0))
            continue
        seen_hashes[key] = document.id
        if document.domain not in near_by_domain:  # building one costs ~20 ms: once per domain
            near_by_domain[document.domain] = NearDuplicateFilter(near_duplicate_threshold, permutations,
                                                                  words_per_shingle)
        match = near_by_domain[document.domain].keep(document.id, text)
        if match is not None:
            result.duplicates.append(Duplicate(document.id, match[0], "near", round(match[1], 3)))
            continue
        result.documents.append(replace(document, text=text, title=normalise_text(document.title) or document.id))
    return result
