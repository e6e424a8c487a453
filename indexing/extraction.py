"""Entity and relation extraction: the data types, the extractor interface, and curated facts.

The graph writer only sees :class:`ChunkExtraction` objects, so a stronger extractor (an LLM,
a domain NER model) can replace the spaCy one by implementing :class:`Extractor`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

from indexing.chunking import Chunk
from indexing.entity_keys import canonical_key, normalise_relation
from indexing.jsonl import BadJsonLine, numbered_lines, parse_json_line


@dataclass(frozen=True)
class EntityMention:
    chunk_id: str
    doc_id: str
    name: str  # as written, leading determiners removed ("the pancreas" -> "pancreas")
    key: str  # indexing.entity_keys.canonical_key(name)
    type: str  # spaCy NER label (PERSON, ORG, LAW, DATE, ...) or "CONCEPT" for recurring noun-chunk terms
    sentence: int  # index of the sentence within the chunk


@dataclass(frozen=True)
class RelationMention:
    chunk_id: str | None  # None for curated facts, which come from a triples file
    doc_id: str  # the document (or, for curated facts, the triples file / its source column)
    head: str
    head_key: str
    relation: str  # verb lemma ("inhibit"), verb_prep ("use_for"), or a pattern name ("is_a", "abbreviation_of", "co_occurs")
    tail: str
    tail_key: str
    confidence: float  # of this one mention, 0..1
    pattern: str  # "svo", "passive", "verb_prep", "copula", "apposition", "abbreviation", "cooccurrence", "curated"
    sentence_text: str = ""


@dataclass
class ChunkExtraction:
    chunk_id: str
    doc_id: str
    entities: list[EntityMention] = field(default_factory=list)
    relations: list[RelationMention] = field(default_factory=list)


class Extractor(Protocol):
    name: str  # recorded in the manifest: a different extractor means re-extracting every chunk

    def extract(self, chunks: Sequence[Chunk]) -> list[ChunkExtraction]:
        """One ChunkExtraction per chunk, in order."""
        ...


# --- curated triples --------------------------------------------------------------------------

_CURATED_FIELDS = ("head", "relation", "tail")


class CuratedTriplesError(ValueError):
    """A curated triples file cannot be taken as given; the message names the file and line."""


def read_curated_triples(path: Path) -> list[RelationMention]:
    """Curated facts from a .csv (header head,relation,tail[,source]) or .jsonl file, taken as
    given: confidence 1.0, no chunk. A bad row raises CuratedTriplesError naming the file and line
    (curated facts are all-or-nothing: a half-read file would silently drop facts)."""
    path = Path(path)
    try:
        return _read_curated(path)
    except CuratedTriplesError:
        raise
    except UnicodeDecodeError as exc:
        raise CuratedTriplesError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except ValueError as exc:
        raise CuratedTriplesError(str(exc)) from None


def _read_curated(path: Path) -> list[RelationMention]:
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        rows = _csv_rows(path, text)
    elif path.suffix.lower() == ".jsonl":
        rows = _jsonl_rows(path, text)
    else:
        raise ValueError(f"{path}: curated triples must be a .csv or .jsonl file")
    return [_curated_mention(path, line, row) for line, row in rows]


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    reader = csv.DictReader(text.splitlines())
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [f for f in _CURATED_FIELDS if f not in header]
    if missing:
        raise ValueError(f"{path}:1: header must have head,relation,tail[,source]; missing {', '.join(missing)}")
    reader.fieldnames = header
    rows = []
    for row in reader:
        if None in row:  # more cells than header columns
            raise ValueError(f"{path}:{reader.line_num}: more columns than the header")
        if any((v or "").strip() for v in row.values()):
            rows.append((reader.line_num, row))
    return rows


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    rows = []
    for line, raw in numbered_lines(text):
        try:
            row = parse_json_line(raw)
        except BadJsonLine as exc:
            raise ValueError(f"{path}:{line}: {exc}") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{line}: a line must be a JSON object with head, relation and tail")
        rows.append((line, row))
    return rows


def _curated_mention(path: Path, line: int, row: dict) -> RelationMention:
    values = {}
    for name in _CURATED_FIELDS:
        value = row.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{path}:{line}: missing or empty {name!r}")
        values[name] = value.strip()
    source = row.get("source")
    if source is not None and not isinstance(source, str):
        raise ValueError(f"{path}:{line}: 'source' must be text")
    head_key, tail_key = canonical_key(values["head"]), canonical_key(values["tail"])
    relation = normalise_relation(values["relation"])
    if not head_key or not tail_key or not relation:
        raise ValueError(f"{path}:{line}: head, relation and tail must contain letters or digits")
    return RelationMention(None, (source or "").strip() or path.name, values["head"], head_key, relation,
                           values["tail"], tail_key, 1.0, "curated")
