"""Cleaning: unicode and whitespace normalisation, empty-document removal, deduplication.

Exact duplicates are found by a hash of the normalised text, near-duplicates by MinHash LSH
(datasketch) over word shingles. The first document (in reading order) of a group is kept.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field, replace

from datasketch import MinHash, MinHashLSH

from indexing.corpus import Document

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\u200c\u200d\u2060\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_WORD = re.compile(r"\w+")


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


def shingles(text: str, words_per_shingle: int) -> set[str]:
    words = _WORD.findall(text.lower())
    if len(words) <= words_per_shingle:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + words_per_shingle]) for i in range(len(words) - words_per_shingle + 1)}


def minhash(text: str, words_per_shingle: int, permutations: int) -> MinHash:
    signature = MinHash(num_perm=permutations, seed=7)
    signature.update_batch([s.encode("utf-8") for s in shingles(text, words_per_shingle)])
    return signature


def clean_documents(documents: list[Document], *, near_duplicate_threshold: float = 0.9,
                    words_per_shingle: int = 5, permutations: int = 128) -> CleanResult:
    result = CleanResult()
    seen_hashes: dict[tuple[str, str], str] = {}
    lsh_by_domain: dict[str, MinHashLSH] = {}
    signatures: dict[tuple[str, str], MinHash] = {}
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
        signature = minhash(text, words_per_shingle, permutations)
        if document.domain not in lsh_by_domain:  # building one costs ~20 ms: once per domain
            lsh_by_domain[document.domain] = MinHashLSH(threshold=near_duplicate_threshold, num_perm=permutations)
        lsh = lsh_by_domain[document.domain]
        match = _best_near_match(lsh, signature, signatures, document.domain, near_duplicate_threshold)
        if match is not None:
            result.duplicates.append(Duplicate(document.id, match[0], "near", round(match[1], 3)))
            continue
        lsh.insert(document.id, signature)
        signatures[(document.domain, document.id)] = signature
        result.documents.append(replace(document, text=text, title=normalise_text(document.title) or document.id))
    return result


def _best_near_match(lsh: MinHashLSH, signature: MinHash, signatures: dict, domain: str,
                     threshold: float) -> tuple[str, float] | None:
    # LSH gives candidates; the estimated Jaccard decides, so the threshold means what it says.
    best = None
    for candidate in lsh.query(signature):
        similarity = signature.jaccard(signatures[(domain, candidate)])
        if similarity >= threshold and (best is None or similarity > best[1]):
            best = (candidate, similarity)
    return best
