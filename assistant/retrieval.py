"""Evidence for one question: graph facts and passages from the routed domain(s).

Passages: FAISS (dense) and BM25 (lexical) rankings over the same chunks, fused by reciprocal
rank fusion, because numbers, codes and rare names are often found only lexically. Facts: the
question's mentions linked to graph entities, their 1-2 hop facts, ranked by how similar the
fact's text is to the question, its confidence and its evidence count. Passages that support a
chosen fact are boosted. Everything keeps its chunk id, document id and title for citations.

A graph failure never fails the answer: the evidence is passages only, marked ``degraded``, and
the graph is left alone for ``graph_retry_after_s`` so every question does not wait on a dead
server's timeouts.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from assistant.settings import Settings
from indexing.embedding import Embedder
from indexing.graph_connection import GraphError
from indexing.graph_store import Fact, GraphStore
from indexing.vector_store import Hit, IndexUnavailable, VectorStore

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class RankedFact:
    fact: Fact
    domain: str
    score: float
    titles: tuple[str, ...] = ()  # titles of fact.doc_ids, same order

    @property
    def text(self) -> str:
        return self.fact.text


@dataclass
class Evidence:
    facts: list[RankedFact] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    linked_entities: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what went wrong, in words for the user
    graph_degraded: bool = False


class Retriever:
    def __init__(self, settings: Settings, vectors: VectorStore, embedder: Embedder, graph: GraphStore | None):
        self.settings, self.vectors, self.embedder, self.graph = settings, vectors, embedder, graph
        self._graph_down_until = 0.0
        self._lock = threading.Lock()

    def retrieve(self, question: str, domains: Sequence[str], query_vector: np.ndarray | None = None) -> Evidence:
        evidence = Evidence()
        query = query_vector if query_vector is not None else self.embedder.encode([question])[0]
        facts: list[RankedFact] = []
        for domain in domains:
            facts += self._facts(domain, question, query, evidence)
        evidence.facts = sorted(facts, key=lambda f: -f.score)[:self.settings.facts_per_answer]
        supported = {c for f in evidence.facts for c in f.fact.chunk_ids}
        passages: list[Passage] = []
        for domain in domains:
            passages += self._passages(domain, question, query, supported, evidence)
        ranked = spread_documents(sorted(passages, key=lambda p: -p.score), self.settings.passages_per_document)
        evidence.passages = ranked[:self.settings.passages_per_answer]
        return evidence

    # --- passages ------------------------------------------------------------------------------
    def _passages(self, domain: str, question: str, query: np.ndarray, supported: set[str],
                  evidence: Evidence) -> list[Passage]:
        try:
            index = self.vectors.get(domain)
        except IndexUnavailable as exc:
            # What broke (file names, paths) goes to the log; the person asking learns only that.
            log.warning("no passages from %s: %s", domain, exc)
            evidence.notes.append(f"no passages from {domain}: its index is unavailable (the server log says why)")
            return []
        dense = index.search(query, self.settings.dense_candidates)
        lexical = index.search_lexical(question, self.settings.lexical_candidates)
        return fuse_rankings(dense, lexical, self.settings.rrf_k, supported, self.settings.fact_support_boost)

    # --- facts -----------------------------------------------------------------------------------
    def _facts(self, domain: str, question: str, query: np.ndarray, evidence: Evidence) -> list[RankedFact]:
        if self.graph is None or self.settings.facts_per_answer == 0:
            return []
        if time.monotonic() < self._graph_down_until:
            self._mark_degraded(evidence)
            return []
        try:
            links = self.graph.link_entities(domain, question, limit=5)
            evidence.linked_entities += [link.name for link in links]
            if not links:
                return []
            facts = self.graph.facts(domain, [link.key for link in links], hops=self.settings.fact_hops,
                                     limit=self.settings.fact_candidates)
            ranked = rank_facts(facts, query, self.embedder, self.settings.facts_per_answer)
            titles = self.graph.document_titles(domain, sorted({d for f, _ in ranked for d in f.doc_ids}))
        except GraphError as exc:
            log.warning("graph unavailable, answering from passages: %s", exc)
            with self._lock:
                self._graph_down_until = time.monotonic() + self.settings.graph_retry_after_s
            self._mark_degraded(evidence)
            return []
        return [RankedFact(fact, domain, score, tuple(titles.get(d, d) for d in fact.doc_ids)) for fact, score in ranked]

    def _mark_degraded(self, evidence: Evidence) -> None:
        if not evidence.graph_degraded:
            evidence.graph_degraded = True
            # The cause (a server address, a socket path) is in the log, not in answers anyone can read.
            evidence.notes.append("knowledge graph unavailable, answered from passages only")


def fuse_rankings(dense: Sequence[Hit], lexical: Sequence[Hit], rrf_k: int, supported: set[str] = frozenset(),
                  support_boost: float = 1.0) -> list[Passage]:
    """Reciprocal rank fusion of two rankings of one domain's chunks; a chunk that supports a
    chosen fact gets ``support_boost`` of an extra first-place vote."""
    ranks: dict[str, dict[str, int]] = {}
    hits: dict[str, Hit] = {}
    for name, ranking in (("dense", dense), ("lexical", lexical)):
        for rank, hit in enumerate(ranking, 1):
            ranks.setdefault(hit.chunk_id, {})[name] = rank
            hits.setdefault(hit.chunk_id, hit)
    passages = []
    for chunk_id, found in ranks.items():
        score = sum(1.0 / (rrf_k + rank) for rank in found.values())
        if chunk_id in supported:
            score += support_boost / (rrf_k + 1)
        hit = hits[chunk_id]
        passages.append(Passage(chunk_id, hit.doc_id, hit.title, hit.text, hit.domain, round(score, 6),
                                found.get("dense"), found.get("lexical"), chunk_id in supported))
    return sorted(passages, key=lambda p: (-p.score, p.chunk_id))


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


def rank_facts(facts: Sequence[Fact], query: np.ndarray, embedder: Embedder, keep: int) -> list[tuple[Fact, float]]:
    """Facts ordered by 0.6 x cosine(question, fact text) + 0.2 x confidence + 0.1 x evidence
    (count, saturating at 5) + 0.1 for facts touching a linked entity directly."""
    if not facts:
        return []
    similarities = embedder.encode([f.text for f in facts]) @ query
    scored = [(fact, 0.6 * float(sim) + 0.2 * fact.confidence + 0.1 * min(fact.count, 5) / 5 + (0.1 if fact.hop == 1 else 0.0))
              for fact, sim in zip(facts, similarities)]
    return sorted(scored, key=lambda pair: -pair[1])[:keep]
