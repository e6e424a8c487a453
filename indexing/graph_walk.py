"""Personalized PageRank over a domain version's entity-chunk graph (HippoRAG-style).

Nodes are the version's chunks (in FAISS order, so a chunk node's number is its position in
``chunks.jsonl``) followed by its entities. Edges, all undirected:

- chunk - entity for every mention (weight 1);
- entity - entity for every fact, weighted by its confidence (several facts between the same
  pair add up);
- aliases need no edge: fusion has already merged an entity's spellings into one node.

The adjacency is built once per index version from the fused graph (``build_walk_graph``),
written beside FAISS and BM25 (``walk.npz``, checksummed in the manifest like them) and walked
in-process with scipy, so the walk reads nothing from the graph server and behaves the same on
FalkorDB and Neo4j. A question's walk starts from the entities it names, weighted by how
specific they are (1 / the number of chunks that mention them), and from its best dense and
BM25 passages (the caller picks the seeds: assistant/answering/retrieval.py); the chunks where the walk's probability gathers are passages a second or third
document holds, linked to the question only through shared entities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np
from scipy import sparse

from indexing.versions import sha256_file

if TYPE_CHECKING:  # only for types: loading a walk file needs neither spaCy's nor entity resolution's imports
    from indexing.chunking import Chunk
    from indexing.entity_resolution import DomainGraph

WALK_FILE = "walk.npz"


@dataclass(frozen=True)
class WalkParams:
    damping: float = 0.5  # probability of following an edge rather than restarting (HippoRAG: 0.5)
    passage_seed_share: float = 0.5  # share of the restart mass on the seed passages (the rest on entities)
    iterations: int = 50
    tolerance: float = 1e-7  # L1 change that ends the iteration early


@dataclass(frozen=True)
class WalkNode:
    kind: str  # "entity" or "passage"
    key: str  # entity key, or chunk id
    name: str  # entity name, or the passage's title
    score: float  # the walk's probability at the node
    doc_id: str = ""  # a passage's document


@dataclass(frozen=True)
class WalkResult:
    chunk_scores: list[tuple[int, float]]  # (chunk position, probability), best first
    top_entities: list[WalkNode]
    entity_scores: dict[str, float] = field(default_factory=dict)  # the walk's probability at each asked-for key


class WalkGraph:
    """The loaded adjacency of one version; immutable, shared by every question's walk."""

    def __init__(self, adjacency: sparse.csr_matrix, chunk_ids: Sequence[str], entity_keys: Sequence[str],
                 entity_names: Sequence[str]):
        self.adjacency = adjacency  # symmetric; kept for writing the file
        self.chunk_ids = list(chunk_ids)
        self.entity_keys = list(entity_keys)
        self.entity_names = list(entity_names)
        self.entity_position = {key: len(self.chunk_ids) + i for i, key in enumerate(self.entity_keys)}
        n = adjacency.shape[0]
        if n != len(self.chunk_ids) + len(self.entity_keys):
            raise ValueError(f"walk graph has {n} nodes for {len(self.chunk_ids)} chunks and "
                             f"{len(self.entity_keys)} entities")
        degree = np.asarray(adjacency.sum(axis=1)).ravel()
        # Column-stochastic transition (P^T of the row-normalised adjacency): walking is one product.
        inverse = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)
        self.transition = (adjacency @ sparse.diags(inverse)).tocsr()
        self.dangling = degree == 0
        # Chunks mentioning each entity: how specific a name is (1 / that count).
        mentions = adjacency[len(self.chunk_ids):, :len(self.chunk_ids)]
        self.entity_chunks = np.asarray((mentions > 0).sum(axis=1)).ravel()

    @property
    def size(self) -> int:
        return self.transition.shape[0]

    def named_chunks(self, min_words: int = 2) -> dict[str, int]:
        """Entity key -> chunks that mention it, for keys of at least ``min_words`` words: the
        names specific enough to say which corpus a question is about ("special drawing right")."""
        return {key: int(count) for key, count in zip(self.entity_keys, self.entity_chunks)
                if len(key.split()) >= min_words and count > 0}

    def walk(self, entity_seeds: Mapping[str, float], passage_seeds: Mapping[int, float], params: WalkParams,
             top_entities: int = 8, score_keys: Iterable[str] = ()) -> WalkResult:
        """Personalized PageRank from the given seeds. ``entity_seeds``: entity key -> link
        score (scaled here by specificity); ``passage_seeds``: chunk position -> dense score;
        ``score_keys``: entities whose probability the result should carry (0 when absent)."""
        reset = self._reset(entity_seeds, passage_seeds, params.passage_seed_share)
        if reset is None:
            return WalkResult([], [])
        scores = reset.copy()
        for _ in range(params.iterations):
            lost = scores[self.dangling].sum()  # mass on nodes without edges restarts
            updated = (1 - params.damping) * reset + params.damping * (self.transition @ scores + lost * reset)
            change = np.abs(updated - scores).sum()
            scores = updated
            if change < params.tolerance:
                break
        chunks = len(self.chunk_ids)
        order = np.argsort(-scores[:chunks], kind="stable")
        ranked = [(int(i), float(scores[i])) for i in order if scores[i] > 0]
        entity_order = np.argsort(-scores[chunks:], kind="stable")[:top_entities]
        entities = [WalkNode("entity", self.entity_keys[i], self.entity_names[i], float(scores[chunks + i]))
                    for i in entity_order if scores[chunks + i] > 0]
        asked = {key: float(scores[self.entity_position[key]]) if key in self.entity_position else 0.0
                 for key in score_keys}
        return WalkResult(ranked, entities, asked)

    def _reset(self, entity_seeds: Mapping[str, float], passage_seeds: Mapping[int, float],
               passage_share: float) -> np.ndarray | None:
        entities = np.zeros(self.size)
        for key, weight in entity_seeds.items():
            position = self.entity_position.get(key)
            if position is not None and weight > 0:
                entities[position] += weight / max(1, self.entity_chunks[position - len(self.chunk_ids)])
        passages = np.zeros(self.size)
        for position, weight in passage_seeds.items():
            if 0 <= position < len(self.chunk_ids) and weight > 0:
                passages[position] += weight
        parts = [(entities, 1 - passage_share), (passages, passage_share)]
        present = [(vector / vector.sum(), share) for vector, share in parts if vector.sum() > 0 and share > 0]
        if not present:
            return None
        total = sum(share for _, share in present)
        return sum(vector * (share / total) for vector, share in present)


def build_walk_graph(graph: DomainGraph, chunks: Sequence[Chunk]) -> WalkGraph:
    """The adjacency of a fused domain graph over the version's chunks (in FAISS order)."""
    chunk_position = {chunk.id: i for i, chunk in enumerate(chunks)}
    keys = sorted(graph.entities)
    position = {key: len(chunks) + i for i, key in enumerate(keys)}
    rows, cols, weights = [], [], []
    for chunk_id, key in graph.mentions:
        if chunk_id in chunk_position and key in position:
            rows.append(chunk_position[chunk_id])
            cols.append(position[key])
            weights.append(1.0)
    for fact in graph.facts:
        if fact.head in position and fact.tail in position:
            rows.append(position[fact.head])
            cols.append(position[fact.tail])
            weights.append(max(fact.confidence, 0.05))
    n = len(chunks) + len(keys)
    upper = sparse.coo_matrix((weights, (rows, cols)), shape=(n, n), dtype=np.float64).tocsr()
    adjacency = (upper + upper.T).tocsr()  # duplicates summed: parallel facts add their weights
    return WalkGraph(adjacency, [c.id for c in chunks], keys, [graph.entities[k].name for k in keys])


def write_walk_file(directory: Path, walk_graph: WalkGraph) -> dict[str, str]:
    """Write ``walk.npz`` (no pickles: plain arrays) and return {file name: checksum} for the
    manifest's files, so a damaged file makes the version unhealthy like a damaged FAISS file."""
    adjacency = walk_graph.adjacency
    with open(directory / WALK_FILE, "wb") as f:  # a Python file: a full disk raises OSError
        np.savez(f, indptr=adjacency.indptr, indices=adjacency.indices, weights=adjacency.data,
                 chunk_ids=np.array(walk_graph.chunk_ids, dtype=str),
                 entity_keys=np.array(walk_graph.entity_keys, dtype=str),
                 entity_names=np.array(walk_graph.entity_names, dtype=str))
    return {WALK_FILE: sha256_file(directory / WALK_FILE)}


def read_walk_file(directory: Path) -> WalkGraph:
    with np.load(directory / WALK_FILE, allow_pickle=False) as data:
        chunk_ids, entity_keys = data["chunk_ids"].tolist(), data["entity_keys"].tolist()
        n = len(chunk_ids) + len(entity_keys)
        adjacency = sparse.csr_matrix((data["weights"], data["indices"], data["indptr"]), shape=(n, n))
        return WalkGraph(adjacency, chunk_ids, entity_keys, data["entity_names"].tolist())
