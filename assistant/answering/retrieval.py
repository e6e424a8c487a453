"""Evidence for one question: one ranked list of graph facts and passages from the routed domain(s).

Passages are ranked by a Personalized PageRank walk over the domain's entity-chunk graph
(indexing/graph_walk.py), as HippoRAG 2 ranks them: the walk restarts from the question's FAISS
(dense) and BM25 (lexical) candidates, each weighted by its score scaled within its list, and from
the entities the question names and its best facts' entities, each weighted by how specific it
is. Its ranking is the passage list (``passage_ranking`` walk): similarity and words decide where
it starts, the graph where its probability gathers, so the second and third documents a
multi-hop question needs, linked to the question only through shared entities, rise beside the
first. ``passage_ranking`` fusion instead fuses the dense, BM25 and walk rankings by weighted
reciprocal rank fusion (BM25's weight can rise for a question with a number or a rare code,
``lexical_cue_weight``), the list before issue 35; without a walk graph the dense and BM25
rankings are fused. Facts: the question's mentions linked to graph entities, their 1-2 hop
facts, ranked by how similar the fact's text is to the question, its confidence and its
evidence count. Facts and passages are then merged into **one list**, cut at the prompt's
budget (``evidence_per_answer``, each kind capped): what the prompt gets is that list, and
``assistant eval`` scores exactly it (method ``answer``). Everything keeps its chunk id,
document id and title for citations.

A graph failure never fails the answer: the facts are left out, marked ``degraded`` (the walk
needs no graph server and still runs from the passages), and the graph is left alone for
``graph_retry_after_s`` so every question does not wait on a dead server's timeouts.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from assistant.answering.document_window import join_chunks, window_positions
from assistant.settings import Settings
from indexing.embedding import CachedEncoder, Embedder
from indexing.entity_linking import EntityLink
from indexing.graph_connection import GraphError
from indexing.graph_store import Fact, GraphStore
from indexing.graph_walk import WalkNode, WalkParams
from indexing.vector_store import DomainIndex, Hit, IndexUnavailable, VectorStore

log = logging.getLogger(__name__)

# A number, or a code mixing letters with digits or capitals inside a word (HbA1c, eGFR, 10-K).
# A digit, or a word with a capital or digit after its first letter ("GDPR", "McCulloch", "H2O").
# Atomic and possessive: whichever capital is taken, the word ends at the same place, so the
# search never retries a word from each of its capitals (that made "aA" * 2000 + "_" quadratic).
_LEXICAL_CUE = re.compile(r"\d|\b(?>[A-Za-z]+[A-Z0-9])[A-Za-z0-9]*+\b")
WALK_NODES_SHOWN = 8


@dataclass(frozen=True)
class Passage:
    chunk_id: str
    doc_id: str
    title: str
    text: str
    domain: str
    score: float  # fused score
    dense_rank: int | None  # 1-based rank in the FAISS list, None when absent
    lexical_rank: int | None
    supports_fact: bool = False
    walk_rank: int | None = None  # 1-based rank in the graph walk's list
    read_on: tuple[str, ...] = ()  # the document's other chunks joined to this one (document_window.py)


@dataclass(frozen=True)
class RankedFact:
    fact: Fact
    domain: str
    score: float
    titles: tuple[str, ...] = ()  # titles of fact.doc_ids, same order

    @property
    def text(self) -> str:
        return self.fact.text


EvidenceEntry = RankedFact | Passage


@dataclass
class Evidence:
    ranked: list[EvidenceEntry] = field(default_factory=list)  # the one list, best first, cut at the budget
    linked_entities: list[str] = field(default_factory=list)
    walk_nodes: list[WalkNode] = field(default_factory=list)  # the walk's top entities and passages, per domain
    walk_passages: list[Passage] = field(default_factory=list)  # the walk's own ranking (for the evaluation)
    notes: list[str] = field(default_factory=list)  # what went wrong, in words for the user
    graph_degraded: bool = False

    @property
    def facts(self) -> list[RankedFact]:
        return [entry for entry in self.ranked if isinstance(entry, RankedFact)]

    @property
    def passages(self) -> list[Passage]:
        return [entry for entry in self.ranked if isinstance(entry, Passage)]


class Retriever:
    def __init__(self, settings: Settings, vectors: VectorStore, embedder: Embedder, graph: GraphStore | None):
        self.settings, self.vectors, self.embedder, self.graph = settings, vectors, embedder, graph
        # A domain's facts come back question after question (the same entities' neighbourhoods):
        # their texts' vectors are kept rather than embedded again for each ranking.
        self._fact_vectors = CachedEncoder(embedder)
        self._graph_down_until = 0.0
        self._lock = threading.Lock()

    def retrieve(self, question: str, domains: Sequence[str], query_vector: np.ndarray | None = None) -> Evidence:
        settings = self.settings
        evidence = Evidence()
        query = query_vector if query_vector is not None else self.embedder.encode([question])[0]
        links: dict[str, list[EntityLink]] = {}
        candidates: list[RankedFact] = []
        for domain in domains:
            links[domain], domain_facts = self._facts(domain, question, query, evidence)
            candidates += domain_facts
        candidates.sort(key=lambda f: -f.score)
        facts = candidates[:settings.facts_per_answer]
        supported = {c for f in facts for c in f.fact.chunk_ids}
        passages: list[Passage] = []
        walked_to: dict[tuple[str, str], float] = {}  # (domain, entity key) -> that domain's walk's probability there
        for domain in domains:
            seeds = [f for f in facts if f.domain == domain][:settings.walk_seed_facts]
            keys = ({key for f in candidates if f.domain == domain for key in (f.fact.head_key, f.fact.tail_key)}
                    if settings.walk_fact_weight > 0 else set())  # asked of the walk only when the facts follow it
            passages += self._passages(domain, question, query, links[domain], seeds, supported, evidence,
                                       keys, walked_to)
        if settings.walk_fact_weight > 0 and walked_to:
            facts = on_the_walks_path(candidates, walked_to, settings.walk_fact_weight)[:settings.facts_per_answer]
        ranked = self._read_on(spread_documents(sorted(passages, key=lambda p: -p.score),
                                                settings.passages_per_document))
        evidence.ranked = merge_evidence(facts, ranked[:settings.passages_per_answer], settings.fact_weight,
                                         settings.rrf_k, settings.evidence_per_answer)
        return evidence

    # --- passages ------------------------------------------------------------------------------
    def _read_on(self, ranked: list[Passage]) -> list[Passage]:
        """The best passage with its document's next chunks joined to it (best_document_chunks);
        the chunks it took in leave the rest of the list."""
        if not ranked or self.settings.best_document_chunks <= 1:
            return ranked
        first = ranked[0]
        try:
            index = self.vectors.get(first.domain)
        except IndexUnavailable:
            return ranked
        at = index.position_of(first.chunk_id)
        window = [] if at is None else window_positions(index.document_positions(first.doc_id), at,
                                                        self.settings.best_document_chunks)
        if len(window) <= 1:
            return ranked
        rows = [index.rows[position] for position in window]
        taken = tuple(row.chunk_id for row in rows if row.chunk_id != first.chunk_id)
        best = dataclasses.replace(first, text=join_chunks([row.text for row in rows]), read_on=taken)
        return [best] + [p for p in ranked[1:] if p.chunk_id not in taken]

    def _passages(self, domain: str, question: str, query: np.ndarray, links: list[EntityLink],
                  facts: list[RankedFact], supported: set[str], evidence: Evidence, fact_keys: set[str] = frozenset(),
                  walked_to: dict[tuple[str, str], float] | None = None) -> list[Passage]:
        try:
            index = self.vectors.get(domain)
        except IndexUnavailable as exc:
            # What broke (file names, paths) goes to the log; the person asking learns only that.
            log.warning("no passages from %s: %s", domain, exc)
            evidence.notes.append(f"no passages from {domain}: its index is unavailable (the server log says why)")
            return []
        settings = self.settings
        dense = index.search(query, settings.dense_candidates)
        lexical = index.search_lexical(question, settings.lexical_candidates)
        lexical_weight = settings.lexical_weight * (settings.lexical_cue_weight if has_lexical_cue(question) else 1.0)
        rankings = {"dense": (settings.dense_weight, dense), "lexical": (lexical_weight, lexical)}
        if settings.walk_weight <= 0:
            return fuse_rankings(rankings, settings.rrf_k, supported, settings.fact_support_boost)
        walked = self._walk(index, links, facts, rankings, evidence, fact_keys, walked_to)
        evidence.walk_passages += fuse_rankings({"walk": (1.0, walked)}, settings.rrf_k)
        if settings.passage_ranking == "walk" and walked:
            return walk_ranked(walked, rankings, settings.walk_weight, settings.rrf_k, supported,
                               settings.fact_support_boost)
        rankings["walk"] = (settings.walk_weight, walked)
        return fuse_rankings(rankings, settings.rrf_k, supported, settings.fact_support_boost)

    def _walk(self, index: DomainIndex, links: list[EntityLink], facts: list[RankedFact],
              rankings: Mapping[str, tuple[float, Sequence[Hit]]], evidence: Evidence,
              fact_keys: set[str] = frozenset(), walked_to: dict[tuple[str, str], float] | None = None) -> list[Hit]:
        """The graph walk's passages, best first (none for a version built without a graph)."""
        try:
            walk_graph = index.walk_graph
        except IndexUnavailable as exc:
            log.warning("no graph walk for %s: %s", index.domain, exc)
            return []
        if walk_graph is None:
            return []
        settings = self.settings
        entity_seeds: dict[str, float] = {}
        for link in links:
            entity_seeds[link.key] = max(entity_seeds.get(link.key, 0.0), link.score)
        for ranked in facts:  # the best facts' entities: the bridge a multi-hop question does not name
            for key in (ranked.fact.head_key, ranked.fact.tail_key):
                entity_seeds[key] = max(entity_seeds.get(key, 0.0), max(ranked.score, 0.0))
        passage_seeds: dict[int, float] = {}
        for weight, ranking in rankings.values():
            for hit, share in scaled_scores(ranking[:settings.walk_seed_passages]):
                position = index.position_of(hit.chunk_id)
                if position is not None:
                    passage_seeds[position] = passage_seeds.get(position, 0.0) + weight * share
        params = WalkParams(damping=settings.walk_damping, passage_seed_share=settings.walk_passage_seed_share)
        result = walk_graph.walk(entity_seeds, passage_seeds, params, top_entities=WALK_NODES_SHOWN,
                                 score_keys=fact_keys, top_passages=settings.walk_candidates)
        if walked_to is not None:
            walked_to.update({(index.domain, key): score for key, score in result.entity_scores.items()})
        hits = [index.hit_at(position, score) for position, score in result.chunk_scores]
        evidence.walk_nodes += result.top_entities
        evidence.walk_nodes += [WalkNode("passage", hit.chunk_id, hit.title, hit.score, hit.doc_id)
                                for hit in hits[:WALK_NODES_SHOWN]]
        return hits

    # --- facts -----------------------------------------------------------------------------------
    def _facts(self, domain: str, question: str, query: np.ndarray,
               evidence: Evidence) -> tuple[list[EntityLink], list[RankedFact]]:
        if self.graph is None or self.settings.facts_per_answer == 0:
            return [], []
        if time.monotonic() < self._graph_down_until:
            self._mark_degraded(evidence)
            return [], []
        try:
            links = self.graph.link_entities(domain, question, limit=5)
            evidence.linked_entities += [link.name for link in links]
            if not links:
                return [], []
            facts = self.graph.facts(domain, [link.key for link in links], hops=self.settings.fact_hops,
                                     limit=self.settings.fact_candidates)
            keep = self.settings.fact_candidates if self.settings.walk_fact_weight > 0 else self.settings.facts_per_answer
            ranked = rank_facts(facts, query, self._fact_vectors, keep)
            titles = self.graph.document_titles(domain, sorted({d for f, _ in ranked for d in f.doc_ids}))
        except GraphError as exc:
            log.warning("graph unavailable, answering from passages: %s", exc)
            with self._lock:
                self._graph_down_until = time.monotonic() + self.settings.graph_retry_after_s
            self._mark_degraded(evidence)
            return [], []
        return links, [RankedFact(fact, domain, score, tuple(titles.get(d, d) for d in fact.doc_ids))
                       for fact, score in ranked]

    def _mark_degraded(self, evidence: Evidence) -> None:
        if not evidence.graph_degraded:
            evidence.graph_degraded = True
            # The cause (a server address, a socket path) is in the log, not in answers anyone can read.
            evidence.notes.append("knowledge graph unavailable, answered from passages only")


def has_lexical_cue(question: str) -> bool:
    """A number or a code (HbA1c, eGFR, 10-K, GDPR): what word search finds and similarity misses."""
    return bool(_LEXICAL_CUE.search(question))


def scaled_scores(ranking: Sequence[Hit]) -> list[tuple[Hit, float]]:
    """Each hit's score scaled to 0-1 between the list's last and first (all 1 when they are
    equal), then divided by the list's sum: a list's hits share one unit of restart, so a list of
    cosine similarities and a list of BM25 scores weigh the same whatever their scales."""
    if not ranking:
        return []
    best, worst = max(hit.score for hit in ranking), min(hit.score for hit in ranking)
    scaled = [(hit.score - worst) / (best - worst) if best > worst else 1.0 for hit in ranking]
    total = sum(scaled)
    return [(hit, value / total) for hit, value in zip(ranking, scaled) if value > 0]


def walk_ranked(walked: Sequence[Hit], rankings: Mapping[str, tuple[float, Sequence[Hit]]], walk_weight: float,
                rrf_k: int, supported: set[str] = frozenset(), support_boost: float = 1.0) -> list[Passage]:
    """The walk's passages in the walk's order: the walk restarted from the dense and BM25 hits,
    so its ranking already holds their votes. The passage at walk rank r scores every ranking's
    weight / (rrf_k + r), the score it would fuse to if all of them had ranked it r-th, which keeps
    the one evidence list's facts on the scale ``merge_evidence`` expects. Each passage keeps its
    dense and BM25 ranks for the evidence panel."""
    ranks = {name: {hit.chunk_id: rank for rank, hit in enumerate(ranking, 1)} for name, (_, ranking) in rankings.items()}
    total_weight = walk_weight + sum(weight for weight, _ in rankings.values())
    passages = []
    for rank, hit in enumerate(walked, 1):
        score = total_weight / (rrf_k + rank) + (support_boost / (rrf_k + 1) if hit.chunk_id in supported else 0.0)
        passages.append(Passage(hit.chunk_id, hit.doc_id, hit.title, hit.text, hit.domain, round(score, 6),
                                ranks["dense"].get(hit.chunk_id), ranks["lexical"].get(hit.chunk_id),
                                hit.chunk_id in supported, rank))
    return sorted(passages, key=lambda p: (-p.score, p.walk_rank))


def fuse_rankings(rankings: Mapping[str, tuple[float, Sequence[Hit]]], rrf_k: int, supported: set[str] = frozenset(),
                  support_boost: float = 1.0) -> list[Passage]:
    """Weighted reciprocal rank fusion of rankings of one domain's chunks, ``{name: (weight,
    hits)}`` with names "dense", "lexical" and "walk": a chunk scores the sum of weight / (rrf_k
    + rank) over the lists it is in; one that supports a chosen fact gets ``support_boost`` of
    an extra first-place vote."""
    ranks: dict[str, dict[str, int]] = {}
    hits: dict[str, Hit] = {}
    for name, (_, ranking) in rankings.items():
        for rank, hit in enumerate(ranking, 1):
            ranks.setdefault(hit.chunk_id, {})[name] = rank
            hits.setdefault(hit.chunk_id, hit)
    passages = []
    for chunk_id, found in ranks.items():
        score = sum(rankings[name][0] / (rrf_k + rank) for name, rank in found.items())
        if chunk_id in supported:
            score += support_boost / (rrf_k + 1)
        hit = hits[chunk_id]
        passages.append(Passage(chunk_id, hit.doc_id, hit.title, hit.text, hit.domain, round(score, 6),
                                found.get("dense"), found.get("lexical"), chunk_id in supported, found.get("walk")))
    return sorted(passages, key=lambda p: (-p.score, p.chunk_id))


def merge_evidence(facts: Sequence[RankedFact], passages: Sequence[Passage], fact_weight: float, rrf_k: int,
                   budget: int) -> list[EvidenceEntry]:
    """Facts and passages as one list, cut at ``budget`` items. Each passage keeps its place in
    the (document-spread) passage order and takes the fused score of that place; the fact at
    rank r scores fact_weight / (rrf_k + r), a vote on the same scale. Ties go to passages."""
    place_scores = sorted((p.score for p in passages), reverse=True)
    entries = [(score, 0, i, passage) for i, (score, passage) in enumerate(zip(place_scores, passages))]
    entries += [(fact_weight / (rrf_k + r), 1, r, fact) for r, fact in enumerate(facts, 1)]
    entries.sort(key=lambda e: (-e[0], e[1], e[2]))
    return [entry for *_, entry in entries[:budget]]


def spread_documents(passages: Sequence[Passage], per_document: int) -> list[Passage]:
    """The same passages, but each document's chunks beyond its first ``per_document`` move
    behind every other document's, so a few long documents do not fill the whole prompt and a
    question that needs two documents gets both (0: no limit)."""
    if per_document <= 0:
        return list(passages)
    seen: dict[str, int] = {}
    leading, trailing = [], []
    for passage in passages:
        seen[passage.doc_id] = seen.get(passage.doc_id, 0) + 1
        (leading if seen[passage.doc_id] <= per_document else trailing).append(passage)
    return leading + trailing


def on_the_walks_path(facts: Sequence[RankedFact], walked_to: Mapping[tuple[str, str], float],
                      weight: float) -> list[RankedFact]:
    """The facts again, each score raised by ``weight`` x how far the question's walk reached both
    its ends: the smaller of its head's and tail's probability in its domain's walk (``walked_to``:
    (domain, entity key) -> probability), over the largest such value among the facts. A fact
    joining two entities the walk gathers at is on the path between the question's entities (the
    bridge of a multi-hop question); one whose far end the walk never reached is a neighbour of
    the first entity only."""
    reach = {id(f): min(walked_to.get((f.domain, f.fact.head_key), 0.0), walked_to.get((f.domain, f.fact.tail_key), 0.0))
             for f in facts}
    top = max(reach.values(), default=0.0)
    if top <= 0:
        return list(facts)
    rescored = [RankedFact(f.fact, f.domain, round(f.score + weight * reach[id(f)] / top, 6), f.titles) for f in facts]
    return sorted(rescored, key=lambda f: -f.score)


def rank_facts(facts: Sequence[Fact], query: np.ndarray, encode: Callable[[list[str]], np.ndarray],
               keep: int) -> list[tuple[Fact, float]]:
    """Facts ordered by 0.6 x cosine(question, fact text) + 0.2 x confidence + 0.1 x evidence
    (count, saturating at 5) + 0.1 for facts touching a linked entity directly."""
    if not facts:
        return []
    similarities = encode([f.text for f in facts]) @ query
    scored = [(fact, 0.6 * float(sim) + 0.2 * fact.confidence + 0.1 * min(fact.count, 5) / 5 + (0.1 if fact.hop == 1 else 0.0))
              for fact, sim in zip(facts, similarities)]
    return sorted(scored, key=lambda pair: -pair[1])[:keep]
