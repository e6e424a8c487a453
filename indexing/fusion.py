"""Entity resolution and fact aggregation: alias merging (abbreviations, spelling variants,
paraphrased names), facts with combined confidence and provenance, and source overlap."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from rapidfuzz import fuzz, process

from indexing.extraction import ChunkExtraction, RelationMention

# --- resolution and aggregation -----------------------------------------------------------


_NUMBER = re.compile(r"\d+")
# Patterns that say "same thing", used to merge entities rather than stored as facts.
ALIAS_PATTERNS = {"abbreviation"}
# Score cells per rapidfuzz.cdist call: 16M float32 cells = 64 MB, whatever the number of keys
# (the full key x key matrix of 100,000 keys would be 40 GB).
FUZZY_BLOCK_CELLS = 16_000_000


@dataclass(frozen=True)
class FusionParams:
    fuzzy_min_ratio: float = 92.0  # rapidfuzz ratio (0-100) for two keys to be spelling variants
    embedding_min_cosine: float = 0.93  # name-embedding cosine for two keys to be paraphrases
    embedding_min_overlap: float = 50.0  # ...and at least this token-set overlap, so unrelated names never merge
    min_key_length: int = 4  # shorter keys are merged only when equal
    fuzzy_block_cells: int = FUZZY_BLOCK_CELLS  # memory bound of fuzzy matching, in score cells


@dataclass
class EntityRecord:
    key: str
    name: str
    type: str
    aliases: list[str]
    mentions: int


@dataclass
class FactRecord:
    head: str  # entity key
    relation: str
    tail: str
    confidence: float
    count: int
    chunk_ids: list[str]
    doc_ids: list[str]
    curated: bool
    patterns: list[str]

    @property
    def triple(self) -> tuple[str, str, str]:
        return (self.head, self.relation, self.tail)


@dataclass
class DomainGraph:
    entities: dict[str, EntityRecord] = field(default_factory=dict)
    facts: list[FactRecord] = field(default_factory=list)
    mentions: list[tuple[str, str]] = field(default_factory=list)  # (chunk_id, entity key)
    source_overlap: dict[tuple[str, str], float] = field(default_factory=dict)  # gamma(u, v)
    key_map: dict[str, str] = field(default_factory=dict)  # every mention key -> its entity's key


class _UnionFind:
    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, key: str) -> str:
        self.parent.setdefault(key, key)
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _numbers(key: str) -> list[str]:
    return _NUMBER.findall(key)


def _may_be_same(a: str, b: str, params: FusionParams) -> bool:
    """Guards against merging different things with similar names: "type 1 diabetes" vs
    "type 2 diabetes", "cox-1" vs "cox-2", "federal reserve" vs "federal reserve act"."""
    if min(len(a), len(b)) < params.min_key_length or _numbers(a) != _numbers(b):
        return False
    words_a, words_b = a.split(), b.split()
    shorter, longer = sorted((words_a, words_b), key=len)
    if len(shorter) < len(longer) and (longer[:len(shorter)] == shorter or longer[-len(shorter):] == shorter):
        return False  # one name extends the other: usually a different (more specific) thing
    return True


@dataclass
class FuzzyStats:
    """What fuzzy matching allocated: lets a test check the memory bound without timing anything."""
    blocks: int = 0
    cells: int = 0  # score cells computed, all blocks together
    largest_block: tuple[int, int] = (0, 0)  # (rows, columns) of the biggest score array

    def add(self, shape: tuple[int, int]) -> None:
        self.blocks += 1
        self.cells += shape[0] * shape[1]
        if shape[0] * shape[1] > self.largest_block[0] * self.largest_block[1]:
            self.largest_block = shape


def _row_blocks(n: int, block_cells: int) -> Iterator[tuple[int, int]]:
    """Row ranges [start, stop) of the n x n score matrix, each scored against columns start..n
    only (a pair i < j lies right of the diagonal), with rows x columns <= block_cells; a block
    is never less than one row, so the bound is really max(block_cells, n)."""
    start = 0
    while start < n - 1:  # the last row has no column right of the diagonal
        stop = min(n, start + max(1, block_cells // (n - start)))
        yield start, stop
        start = stop


def _block_hits(keys: list[str], start: int, stop: int, params: FusionParams,
                stats: FuzzyStats | None) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) with i < j of rows start..stop whose ratio passes the cutoff, in row-major order;
    the block's score array is freed on return, before the next block is allocated."""
    scores = process.cdist(keys[start:stop], keys[start:], scorer=fuzz.ratio,
                           score_cutoff=params.fuzzy_min_ratio, workers=1)
    if stats is not None:
        stats.add(scores.shape)
    rows, cols = np.nonzero(scores)  # cdist sets scores under the cutoff to 0
    right = cols > rows  # both local to the block, which starts on the diagonal
    return rows[right] + start, cols[right] + start


def _fuzzy_pairs(keys: list[str], params: FusionParams, stats: FuzzyStats | None = None) -> Iterable[tuple[str, str]]:
    """Spelling-variant pairs (keys[i], keys[j]), i < j, exactly those of the full key x key
    ratio matrix and in its order, scored in row blocks of at most params.fuzzy_block_cells."""
    if len(keys) < 2:
        return
    for start, stop in _row_blocks(len(keys), params.fuzzy_block_cells):
        rows, cols = _block_hits(keys, start, stop, params, stats)
        for i, j in zip(rows.tolist(), cols.tolist()):
            if _may_be_same(keys[i], keys[j], params):
                yield keys[i], keys[j]


def _embedding_pairs(keys: list[str], encode: Callable[[list[str]], np.ndarray],
                     params: FusionParams) -> Iterable[tuple[str, str]]:
    import faiss

    candidates = [k for k in keys if len(k) >= params.min_key_length and not k.isdigit()]
    if len(candidates) < 2:
        return
    vectors = encode(candidates)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    scores, neighbours = index.search(vectors, min(6, len(candidates)))
    for i, (row_scores, row_ids) in enumerate(zip(scores, neighbours)):
        for score, j in zip(row_scores, row_ids):
            if j <= i or score < params.embedding_min_cosine:
                continue
            a, b = candidates[i], candidates[j]
            if fuzz.token_set_ratio(a, b) >= params.embedding_min_overlap and _may_be_same(a, b, params):
                yield a, b


def fuse(extractions: list[ChunkExtraction], curated: Sequence[RelationMention] = (), *,
         derived: Sequence[RelationMention] = (), encode: Callable[[list[str]], np.ndarray] | None = None, params: FusionParams = FusionParams(),
         source_of: Callable[[str], str] | None = None) -> DomainGraph:
    """Merge a domain's mentions into entities and facts.

    ``curated`` are facts from triples files, ``derived`` relations computed over the whole
    domain (co-occurrence); ``encode`` embeds entity names for paraphrase merging (skipped
    when None); ``source_of`` maps a doc id to its source (sub-folder, file) for the overlap report.
    """
    names: dict[str, Counter] = defaultdict(Counter)
    types: dict[str, Counter] = defaultdict(Counter)
    for extraction in extractions:
        for m in extraction.entities:
            if m.key:
                names[m.key][m.name] += 1
                types[m.key][m.type] += 1
    relations = [r for e in extractions for r in e.relations] + list(curated) + list(derived)
    for r in relations:
        for key, name in ((r.head_key, r.head), (r.tail_key, r.tail)):
            if key and key not in names:
                names[key][name] += 1  # an entity seen only inside a relation still gets a name

    groups = _UnionFind()
    for key in names:
        groups.find(key)
    for r in relations:
        if r.pattern in ALIAS_PATTERNS and r.head_key and r.tail_key:
            groups.union(r.head_key, r.tail_key)
    keys = sorted(names)
    for a, b in _fuzzy_pairs(keys, params):
        groups.union(a, b)
    if encode is not None:
        for a, b in _embedding_pairs(keys, encode, params):
            groups.union(a, b)

    graph = DomainGraph()
    graph.key_map = _build_entities(graph, keys, groups, names, types, relations)
    _build_facts(graph, relations, graph.key_map)
    graph.mentions = sorted({(m.chunk_id, graph.key_map[m.key]) for e in extractions for m in e.entities if m.key})
    _drop_one_off_terms(graph)
    if source_of is not None:
        graph.source_overlap = source_overlap(graph, extractions, curated, source_of)
    return graph


def _build_entities(graph: DomainGraph, keys: list[str], groups: _UnionFind, names: dict[str, Counter],
                    types: dict[str, Counter], relations: list[RelationMention]) -> dict[str, str]:
    members: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        members[groups.find(key)].append(key)
    long_forms = {r.tail_key for r in relations if r.pattern in ALIAS_PATTERNS}
    canonical: dict[str, str] = {}
    for group in members.values():
        all_names = sum((names[k] for k in group), Counter())
        # The long form of an abbreviation names the group; else the most used, then longest, name.
        preferred = [k for k in group if k in long_forms]
        best_key = max(preferred or group, key=lambda k: (sum(names[k].values()), len(k), k))
        name = names[best_key].most_common(1)[0][0]
        type_counts = sum((types[k] for k in group), Counter())
        specific = [(n, t) for t, n in type_counts.items() if t != "CONCEPT"]
        entity_type = max(specific)[1] if specific else "CONCEPT"
        aliases = sorted({n for n in all_names} - {name})
        graph.entities[best_key] = EntityRecord(best_key, name, entity_type, aliases, sum(all_names.values()))
        for k in group:
            canonical[k] = best_key
    return canonical


def _build_facts(graph: DomainGraph, relations: list[RelationMention], canonical: dict[str, str]) -> None:
    grouped: dict[tuple[str, str, str], list[RelationMention]] = defaultdict(list)
    for r in relations:
        if r.pattern in ALIAS_PATTERNS or not r.head_key or not r.tail_key:
            continue
        head, tail = canonical[r.head_key], canonical[r.tail_key]
        if head != tail:
            grouped[(head, r.relation, tail)].append(r)
    for (head, relation, tail), mentions in sorted(grouped.items()):
        curated = any(m.pattern == "curated" for m in mentions)
        # Independent pieces of evidence: 1 - prod(1 - c). Curated facts are certain.
        miss = 1.0
        for m in mentions:
            miss *= 1.0 - min(max(m.confidence, 0.0), 1.0)
        confidence = 1.0 if curated else round(1.0 - miss, 4)
        graph.facts.append(FactRecord(
            head, relation, tail, confidence, len(mentions),
            sorted({m.chunk_id for m in mentions if m.chunk_id}), sorted({m.doc_id for m in mentions}),
            curated, sorted({m.pattern for m in mentions})))


def _drop_one_off_terms(graph: DomainGraph) -> None:
    """Keep a plain noun-chunk term only when it recurs (mentioned in two or more chunks) or takes
    part in a fact; named entities are always kept."""
    in_facts = {k for f in graph.facts for k in (f.head, f.tail)}
    chunks_per_entity = Counter(key for _, key in graph.mentions)
    dropped = {key for key, e in graph.entities.items()
               if e.type == "CONCEPT" and key not in in_facts and chunks_per_entity[key] < 2}
    graph.entities = {k: e for k, e in graph.entities.items() if k not in dropped}
    graph.mentions = [(chunk_id, key) for chunk_id, key in graph.mentions if key not in dropped]
    graph.key_map = {raw: key for raw, key in graph.key_map.items() if key not in dropped}


def source_overlap(graph: DomainGraph, extractions: list[ChunkExtraction], curated: Sequence[RelationMention],
                   source_of: Callable[[str], str]) -> dict[tuple[str, str], float]:
    """gamma(u, v) = shared entities / all entities of sources u and v, for every pair."""
    by_source: dict[str, set[str]] = defaultdict(set)
    for extraction in extractions:
        for m in extraction.entities:
            if m.key in graph.key_map:
                by_source[source_of(m.doc_id)].add(graph.key_map[m.key])
    for r in curated:
        for key in (r.head_key, r.tail_key):
            if key in graph.key_map:
                by_source["curated:" + r.doc_id].add(graph.key_map[key])
    sources = sorted(by_source)
    overlap = {}
    for i, u in enumerate(sources):
        for v in sources[i + 1:]:
            union = by_source[u] | by_source[v]
            overlap[(u, v)] = round(len(by_source[u] & by_source[v]) / len(union), 4) if union else 0.0
    return overlap
