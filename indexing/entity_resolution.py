"""Entity resolution and fact aggregation: alias merging (abbreviations, spelling variants,
paraphrased names), facts with combined confidence and provenance, and source overlap."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
from networkx.utils import UnionFind
from rapidfuzz import fuzz, process

from indexing.extraction import ChunkExtraction, RelationMention

# --- resolution and aggregation -----------------------------------------------------------


_NUMBER = re.compile(r"\d+")
# Patterns that say "same thing", used to merge entities rather than stored as facts.
ALIAS_PATTERNS = {"abbreviation"}
# Score cells per rapidfuzz.cdist call: 16M float32 cells = 64 MB, whatever the number of keys
# (the full key x key matrix of 100,000 keys would be 40 GB).
FUZZY_BLOCK_CELLS = 16_000_000
EMBEDDING_NEIGHBOURS = 6  # each name is compared with its 5 nearest other names
EMBEDDING_HNSW_M, EMBEDDING_HNSW_EF = 32, 64


@dataclass(frozen=True)
class FusionParams:
    fuzzy_min_ratio: float = 92.0  # rapidfuzz ratio (0-100) for two keys to be spelling variants
    embedding_min_cosine: float = 0.93  # name-embedding cosine for two keys to be paraphrases
    embedding_min_overlap: float = 50.0  # ...and at least this token-set overlap, so unrelated names never merge
    min_key_length: int = 4  # shorter keys are merged only when equal
    fuzzy_block_cells: int = FUZZY_BLOCK_CELLS  # memory bound of fuzzy matching, in score cells
    # Above this many names their nearest neighbours come from an HNSW graph (approximate, about
    # n log n) instead of an exact flat search (n x n dot products: 100,000 names ~ 4 TFLOP).
    embedding_exact_max_keys: int = 20_000


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
    """What fuzzy matching did: lets a test check the work and memory bounds without timing."""
    candidates: int = 0  # pairs the segment filter let through to scoring
    brute_force_rows: int = 0  # keys too short to split into segments, scored against every key
    blocks: int = 0  # score arrays of the brute-force rows
    cells: int = 0  # score cells of those arrays
    largest_block: tuple[int, int] = (0, 0)  # (rows, columns) of the biggest score array

    def add(self, shape: tuple[int, int]) -> None:
        self.blocks += 1
        self.cells += shape[0] * shape[1]
        if shape[0] * shape[1] > self.largest_block[0] * self.largest_block[1]:
            self.largest_block = shape


def max_edits(length: int, min_ratio: float) -> int:
    """The most insertions and deletions that can separate a key of this length from any key
    whose ``fuzz.ratio`` with it is at least ``min_ratio``. The ratio is 100 (1 - d / (la + lb))
    for d such edits, so d <= r (la + lb) with r = 1 - min_ratio / 100; and lb - la <= d, so
    lb <= la (1 + r) / (1 - r). Together d <= 2 r la / (1 - r). A larger bound than the length
    (a low cutoff) means no segment filter can apply: returned as the length + 1."""
    r = 1.0 - min_ratio / 100.0
    if r >= 1.0:
        return length + 1
    bound = int(2.0 * r * length / (1.0 - r) + 1e-6) if r > 0 else 0
    return min(bound, length + 1)


def _segments(key: str, edits: int) -> list[tuple[int, str]]:
    """The key cut into ``edits`` + 1 contiguous pieces (start, text), the longer ones last: d
    edits can break at most d of them, so a key within d edits contains one of them whole,
    shifted by at most d positions (the pigeonhole filter of Pass-Join, Li et al., VLDB 2011)."""
    pieces = edits + 1
    base, longer = divmod(len(key), pieces)
    segments, start = [], 0
    for number in range(pieces):
        size = base + (1 if number >= pieces - longer else 0)
        segments.append((start, key[start:start + size]))
        start += size
    return segments


class _SegmentIndex:
    """Every segmentable key's pieces, by text: which keys could be within reach of a string."""

    def __init__(self, keys: list[str], min_ratio: float):
        self.keys, self.min_ratio = keys, min_ratio
        self.r = 1.0 - min_ratio / 100.0  # the share of a pair's length that edits may be
        self.by_text: dict[str, list[tuple[int, int, int]]] = defaultdict(list)  # text -> (key, start, edits)
        self.piece_sizes: dict[int, set[int]] = defaultdict(set)  # key length -> its pieces' sizes
        self.unsegmentable: list[int] = []
        for i, key in enumerate(keys):
            edits = max_edits(len(key), min_ratio)
            if len(key) == 0 or edits + 1 > len(key):
                self.unsegmentable.append(i)
                continue
            for start, text in _segments(key, edits):
                self.by_text[text].append((i, start, edits))
                self.piece_sizes[len(key)].add(len(text))

    def candidates_before(self, j: int) -> set[int]:
        """Keys i < j that may reach ratio >= min_ratio with keys[j]: one of keys[i]'s pieces
        occurs in keys[j] near its own position, and the lengths are close enough."""
        query, r = self.keys[j], self.r
        if not self.by_text or r >= 1.0:
            return set()
        shortest = int(len(query) * (1 - r) / (1 + r))
        longest = int(len(query) * (1 + r) / (1 - r) + 1e-6) + 1
        sizes = set().union(*(self.piece_sizes.get(n, ()) for n in range(shortest, longest + 1)))
        found: set[int] = set()
        for size in sizes:
            for position in range(len(query) - size + 1):
                for i, start, edits in self.by_text.get(query[position:position + size], ()):
                    if i < j and abs(position - start) <= edits and abs(len(self.keys[i]) - len(query)) <= edits:
                        found.add(i)
        return found


def _fuzzy_pairs(keys: list[str], params: FusionParams, stats: FuzzyStats | None = None) -> Iterable[tuple[str, str]]:
    """Spelling-variant pairs (keys[i], keys[j]), i < j: exactly those of the full key x key
    ratio matrix and in its order, without scoring all pairs. A segment filter proposes the
    candidates (a superset of the pairs passing the cutoff), scored in one vectorised call;
    only keys too short for the filter at this cutoff (none at 92 but the empty key) are scored
    against every key, in row blocks of at most params.fuzzy_block_cells."""
    if len(keys) < 2:
        return
    stats = stats if stats is not None else FuzzyStats()
    index = _SegmentIndex(keys, params.fuzzy_min_ratio)
    left, right = [], []
    for j in range(len(keys)):
        for i in index.candidates_before(j):
            left.append(i)
            right.append(j)
    stats.candidates = len(left)
    pairs = set()
    if left:
        scores = process.cpdist([keys[i] for i in left], [keys[j] for j in right], scorer=fuzz.ratio,
                                score_cutoff=params.fuzzy_min_ratio, workers=1)
        pairs = {(left[n], right[n]) for n in np.nonzero(scores)[0].tolist()}
    pairs |= _brute_force_pairs(keys, index.unsegmentable, params, stats)
    for i, j in sorted(pairs):
        if _may_be_same(keys[i], keys[j], params):
            yield keys[i], keys[j]


def _brute_force_pairs(keys: list[str], rows: list[int], params: FusionParams, stats: FuzzyStats) -> set[tuple[int, int]]:
    """(i, j), i < j, passing the cutoff where i or j is one of ``rows``, each row scored against
    every key in blocks of at most params.fuzzy_block_cells score cells (at least one row)."""
    stats.brute_force_rows = len(rows)
    pairs: set[tuple[int, int]] = set()
    per_block = max(1, params.fuzzy_block_cells // len(keys))
    for start in range(0, len(rows), per_block):
        block = rows[start:start + per_block]
        scores = process.cdist([keys[i] for i in block], keys, scorer=fuzz.ratio,
                               score_cutoff=params.fuzzy_min_ratio, workers=1)
        stats.add(scores.shape)
        for row, column in zip(*np.nonzero(scores)):
            i, j = block[int(row)], int(column)
            if i != j:
                pairs.add((min(i, j), max(i, j)))
    return pairs


def _embedding_pairs(keys: list[str], encode: Callable[[list[str]], np.ndarray],
                     params: FusionParams) -> Iterable[tuple[str, str]]:
    import faiss

    candidates = [k for k in keys if len(k) >= params.min_key_length and not k.isdigit()]
    if len(candidates) < 2:
        return
    vectors = np.ascontiguousarray(encode(candidates), dtype=np.float32)
    if len(candidates) > params.embedding_exact_max_keys:
        index = faiss.IndexHNSWFlat(vectors.shape[1], EMBEDDING_HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction, index.hnsw.efSearch = EMBEDDING_HNSW_EF, EMBEDDING_HNSW_EF
    else:
        index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    scores, neighbours = index.search(vectors, min(EMBEDDING_NEIGHBOURS, len(candidates)))
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

    groups = UnionFind(names)  # each key its own group until an alias, a spelling or a paraphrase joins them
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


def _build_entities(graph: DomainGraph, keys: list[str], groups: UnionFind, names: dict[str, Counter],
                    types: dict[str, Counter], relations: list[RelationMention]) -> dict[str, str]:
    members: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        members[groups[key]].append(key)
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
