"""Personalized PageRank over a domain version's entity-chunk graph (HippoRAG-style).

Nodes are the version's chunks (in FAISS order, so a chunk node's number is its position in
``chunks.jsonl``) followed by its entities. Edges, all undirected:

- chunk - entity for every mention (weight 1);
- entity - entity for every fact, weighted by its confidence (several facts between the same
  pair add up);
- aliases need no edge: fusion has already merged an entity's spellings into one node.

The adjacency is built once per index version from the fused graph (``build_walk_graph``),
written beside FAISS and BM25 (``walk.npz``, checksummed in the manifest like them) and walked
in-process with numpy and scipy, so the walk reads nothing from the graph server and behaves the
same on FalkorDB and Neo4j. The walk pushes probability out from its seeds (forward push) rather
than multiplying the whole graph until it settles (power iteration): its work grows with the part
of the graph the question's probability reaches, not with the corpus (``WalkResult.edges_pushed``).

A question's walk starts from the entities it names, weighted by how specific they are (1 / the
number of chunks that mention them), and from its best dense and BM25 passages (the caller picks
the seeds: assistant/answering/retrieval.py); the chunks where the walk's probability gathers
are passages a second or third document holds, linked to the question only through shared
entities.
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
    # A node's leftover probability is pushed on only while it exceeds this times the node's
    # degree (Andersen-Chung-Lang): 1e-7 keeps the top-20 passages of the exact walk in 48-50 of
    # 50 seedings on each graph measured (1e-6: 46-49); what is left unpushed is the error.
    push_threshold: float = 1e-7
    max_rounds: int = 60  # bounds the work whatever the seeds; at damping 0.5 about 25 rounds are used
    dense_share: float = 1 / 16  # a round whose frontier has this share of all edges is one sparse product


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
    edges_pushed: int = 0  # the walk's work: edges it sent probability along (a dense round counts every edge)


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
        self.degree = np.asarray(adjacency.sum(axis=1)).ravel()
        # Column-stochastic transition (P^T of the row-normalised adjacency), for the rounds whose
        # frontier is most of the graph: pushing from every node at once is one product.
        inverse = np.divide(1.0, self.degree, out=np.zeros_like(self.degree), where=self.degree > 0)
        self.transition = (adjacency @ sparse.diags(inverse)).tocsr()
        self.degree_count = np.diff(adjacency.indptr)  # edges per node: a round's work
        self.dangling = (self.degree == 0).astype(np.float64)  # nodes whose probability restarts
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
             top_entities: int = 8, score_keys: Iterable[str] = (), top_passages: int | None = None) -> WalkResult:
        """Personalized PageRank from the given seeds. ``entity_seeds``: entity key -> link
        score (scaled here by specificity); ``passage_seeds``: chunk position -> dense score;
        ``score_keys``: entities whose probability the result should carry (0 when absent);
        ``top_passages``: how many of the best passages to return (None: every one reached)."""
        seeds = self._reset(entity_seeds, passage_seeds, params.passage_seed_share)
        if seeds is None:
            return WalkResult([], [])
        scores, reached, edges_pushed = self._push(*seeds, params)
        chunks = len(self.chunk_ids)
        passages, entities = reached[reached < chunks], reached[reached >= chunks]
        ranked = [(int(i), float(scores[i])) for i in _best_first(passages, scores, top_passages)]
        top = [WalkNode("entity", self.entity_keys[i - chunks], self.entity_names[i - chunks], float(scores[i]))
               for i in _best_first(entities, scores, top_entities)]
        asked = {key: float(scores[self.entity_position[key]]) if key in self.entity_position else 0.0
                 for key in score_keys}
        return WalkResult(ranked, top, asked, edges_pushed)

    def _push(self, seed_nodes: np.ndarray, seed_weights: np.ndarray,
              params: WalkParams) -> tuple[np.ndarray, np.ndarray, int]:
        """Forward push (Andersen, Chung and Lang 2006), every node over the threshold in one
        round: a node keeps (1 - damping) of its leftover probability and sends the rest along
        its edges in proportion to their weights (a node without edges sends it back to the
        seeds, as the restart would). Only nodes the probability reaches are read, so the work
        follows the part of the graph the question touches, not the graph's size. A round whose
        frontier has ``dense_share`` of the edges is one sparse product over the whole graph
        (cheaper than gathering that many rows), until the frontier is small again. Returns
        (probabilities, the nodes with a probability, edges pushed along)."""
        walk = _Push(self, seed_nodes, seed_weights, params)
        frontier, dense_edges = seed_nodes, params.dense_share * self.adjacency.nnz
        for _ in range(params.max_rounds):
            if frontier is None:  # dense: the frontier is every node over its threshold
                over = walk.leftover > walk.threshold
                if not over.any():
                    break
                if np.dot(over, self.degree_count) >= dense_edges:
                    walk.dense_round(over)
                    continue
                frontier = np.flatnonzero(over)
            frontier = frontier[walk.leftover[frontier] > walk.threshold[frontier]]
            if frontier.size == 0:
                break
            lengths = self.degree_count[frontier]
            if lengths.sum() >= dense_edges:
                over = np.zeros(self.size, dtype=bool)
                over[frontier] = True
                walk.dense_round(over)
                frontier = None
            else:
                frontier = walk.sparse_round(frontier, lengths)
        return walk.scores, walk.reached(), walk.edges_pushed

    def _reset(self, entity_seeds: Mapping[str, float], passage_seeds: Mapping[int, float],
               passage_share: float) -> tuple[np.ndarray, np.ndarray] | None:
        """The restart distribution as (nodes, probabilities), or None when no seed is in the graph."""
        chunks = len(self.chunk_ids)
        entities: dict[int, float] = {}
        for key, weight in entity_seeds.items():
            position = self.entity_position.get(key)
            if position is not None and weight > 0:
                entities[position] = entities.get(position, 0.0) + weight / max(1, self.entity_chunks[position - chunks])
        passages: dict[int, float] = {}
        for position, weight in passage_seeds.items():
            if 0 <= position < chunks and weight > 0:
                passages[position] = passages.get(position, 0.0) + weight
        parts = [(entities, 1 - passage_share), (passages, passage_share)]
        present = [(part, share) for part, share in parts if part and share > 0]
        if not present:
            return None
        total_share = sum(share for _, share in present)
        reset: dict[int, float] = {}
        for part, share in present:
            mass = sum(part.values())
            for node, weight in part.items():
                reset[node] = reset.get(node, 0.0) + weight / mass * share / total_share
        nodes = np.array(sorted(reset), dtype=np.int64)
        return nodes, np.array([reset[int(node)] for node in nodes])


class _Push:
    """One walk's state: the probability kept at each node, what is left to push on, and the work."""

    def __init__(self, graph: WalkGraph, seed_nodes: np.ndarray, seed_weights: np.ndarray, params: WalkParams):
        self.graph, self.seed_nodes, self.seed_weights = graph, seed_nodes, seed_weights
        self.damping = params.damping
        self.threshold = params.push_threshold * graph.degree
        # Zeroed arrays are allocated lazily by the OS: pages are touched only where written.
        self.scores, self.leftover = np.zeros(graph.size), np.zeros(graph.size)
        self.leftover[seed_nodes] = seed_weights
        self.touched = [seed_nodes]  # every node a sparse round reached
        self.dense = False  # after a dense round, any node may hold probability
        self.edges_pushed = 0

    def sparse_round(self, frontier: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Push from the frontier's nodes along their edges; returns the nodes that received."""
        graph, d = self.graph, self.damping
        mass = self._keep(frontier)
        edges = _row_slices(graph.adjacency.indptr[frontier], lengths)
        share = np.divide(d * mass, graph.degree[frontier], out=np.zeros_like(mass), where=lengths > 0)
        targets = graph.adjacency.indices[edges]
        amounts = np.repeat(share, lengths) * graph.adjacency.data[edges]
        restarting = d * mass[lengths == 0].sum()
        if restarting > 0:
            targets = np.concatenate([targets, self.seed_nodes])
            amounts = np.concatenate([amounts, restarting * self.seed_weights])
        received, slot = np.unique(targets, return_inverse=True)
        self.leftover[received] += np.bincount(slot, amounts, minlength=received.size)
        self.touched.append(received)
        self.edges_pushed += edges.size
        return received

    def dense_round(self, over: np.ndarray) -> None:
        """Push from every node marked in ``over`` at once: one product with the transition."""
        graph, d = self.graph, self.damping
        mass = np.where(over, self.leftover, 0.0)
        self.leftover -= mass
        self.scores += (1 - d) * mass
        self.leftover += d * (graph.transition @ mass)
        self.leftover[self.seed_nodes] += d * np.dot(mass, graph.dangling) * self.seed_weights
        self.dense = True
        self.edges_pushed += graph.adjacency.nnz

    def _keep(self, frontier: np.ndarray) -> np.ndarray:
        mass = self.leftover[frontier]
        self.leftover[frontier] = 0.0
        self.scores[frontier] += (1 - self.damping) * mass
        return mass

    def reached(self) -> np.ndarray:
        nodes = np.flatnonzero(self.scores) if self.dense else np.unique(np.concatenate(self.touched))
        return nodes[self.scores[nodes] > 0]


def _row_slices(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Positions in a CSR's ``indices`` of the given rows' entries (rows given by start, length)."""
    ends = np.cumsum(lengths)
    return np.repeat(starts - (ends - lengths), lengths) + np.arange(int(ends[-1]) if ends.size else 0)


def _best_first(nodes: np.ndarray, scores: np.ndarray, keep: int | None = None) -> np.ndarray:
    """The ``keep`` best nodes (None: all) by probability, highest first; ties by node number, as
    a stable sort gives them. Only the candidates at or above the keep-th score are sorted."""
    values = scores[nodes]
    if keep is not None and keep < nodes.size:
        cutoff = np.partition(values, nodes.size - keep)[nodes.size - keep] if keep > 0 else np.inf
        nodes, values = nodes[values >= cutoff], values[values >= cutoff]
    return nodes[np.lexsort((nodes, -values))][:keep]


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
