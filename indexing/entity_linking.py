"""Entity linking: the entities of a domain's graph that a question names, found by exact name or
alias matches of its word n-grams, then fuzzy ones. Works on the domain version's alias table,
which the graph store reads (one query, in cypher.py) and caches; nothing here talks to a server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from rapidfuzz import fuzz, process
from spacy.lang.en.stop_words import STOP_WORDS

from indexing.entity_keys import canonical_key, name_spans


@dataclass(frozen=True)
class EntityLink:
    key: str
    name: str
    type: str
    score: float  # 1.0 exact name or alias, lower for fuzzy matches
    matched_text: str


@dataclass
class AliasTable:
    """A domain version's entity names and aliases, for linking question text to entities."""

    by_alias: dict[str, str]  # canonical alias key -> entity key
    names: dict[str, tuple[str, str]]  # entity key -> (name, type)
    alias_keys: list[str]

    @classmethod
    def from_rows(cls, rows: Iterable[dict]) -> AliasTable:
        """From the rows of cypher.ENTITY_CATALOG ({key, name, type, aliases, mentions})."""
        by_alias: dict[str, str] = {}
        names: dict[str, tuple[str, str]] = {}
        for row in sorted(rows, key=lambda r: -(r["mentions"] or 0)):  # frequent entities win alias clashes
            names[row["key"]] = (row["name"], row["type"])
            for alias in [row["name"], *(row["aliases"] or [])]:
                alias_key = canonical_key(alias)
                if alias_key and alias_key not in STOP_WORDS:
                    by_alias.setdefault(alias_key, row["key"])
            by_alias.setdefault(row["key"], row["key"])
        return cls(by_alias, names, sorted(by_alias))


def link_entities(table: AliasTable, text: str, limit: int = 10, min_score: float = 0.88) -> list[EntityLink]:
    """Entities named in ``text``: exact name/alias matches of its word n-grams, then fuzzy ones.
    Longer matches win over the shorter ones inside them ("type 2 diabetes" over "diabetes")."""
    links: dict[str, EntityLink] = {}
    taken: list[tuple[int, int]] = []
    for start, end, surface, key, fuzzy_ok in name_spans(text):  # longest first
        if any(s <= start and end <= e for s, e in taken):
            continue
        entity_key, score = table.by_alias.get(key), 1.0
        if entity_key is None and fuzzy_ok and len(key) >= 5:
            match = process.extractOne(key, table.alias_keys, scorer=fuzz.ratio, score_cutoff=min_score * 100)
            if match:
                entity_key, score = table.by_alias[match[0]], match[1] / 100.0
        if entity_key is None:
            continue
        taken.append((start, end))
        name, entity_type = table.names[entity_key]
        if entity_key not in links or links[entity_key].score < score:
            links[entity_key] = EntityLink(entity_key, name, entity_type, round(score, 3), surface)
    return sorted(links.values(), key=lambda link: (-link.score, -len(link.matched_text)))[:limit]
