"""Which domain a question belongs to: a k-nearest-neighbour vote over every domain's chunk
embeddings, blended with the question's similarity to each domain's centroid and with a
lexical vote (which domain's chunks hold the question's rare words).

Nothing is trained: the vote reads the serving FAISS indexes, so a domain becomes routable the
moment its first index version exists, and follows re-indexes. The router **abstains** (answer
with the base model over all domains) when the best domain's share of the score is below
``router_min_confidence`` or when no chunk anywhere is close to the question
(``router_min_similarity``): an off-topic question.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from assistant.settings import Settings
from indexing.embedding import Embedder
from indexing.lexical import tokenize
from indexing.vector_store import IndexUnavailable, VectorStore
from indexing.versions import list_domains

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    domain: str | None  # None when the router abstained
    confidence: float  # the chosen (or best) domain's share of the score, 0..1
    scores: dict[str, float] = field(default_factory=dict)  # every routable domain, summing to 1
    best_similarity: float = 0.0  # cosine of the closest chunk in any domain
    reason: str = ""

    @property
    def abstained(self) -> bool:
        return self.domain is None

    @property
    def best_domain(self) -> str | None:
        return max(self.scores, key=self.scores.get) if self.scores else None


class Router:
    def __init__(self, settings: Settings, vectors: VectorStore, embedder: Embedder):
        self.settings, self.vectors, self.embedder = settings, vectors, embedder
        self._centroids: dict[str, tuple[str, np.ndarray]] = {}  # domain -> (version, unit centroid)
        self._lock = threading.Lock()

    def domains(self) -> list[str]:
        """Domains with a loadable serving index (a damaged one is left out and logged)."""
        usable = []
        for domain in list_domains(self.settings.domains_dir):
            try:
                self.vectors.get(domain)
                usable.append(domain)
            except IndexUnavailable as exc:
                log.warning("not routing to %s: %s", domain, exc)
        return usable

    def query_vector(self, question: str, history: Sequence[dict] = ()) -> np.ndarray:
        """The question's embedding, nudged toward the previous user turn so a follow-up such as
        "and what reverses it?" stays in the conversation's domain."""
        previous = [m["content"] for m in history if m.get("role") == "user" and m.get("content")]
        texts = [question] + previous[-1:]
        vectors = self.embedder.encode(texts)
        vector = vectors[0] + self.settings.router_history_weight * vectors[1] if len(vectors) > 1 else vectors[0]
        return vector / max(float(np.linalg.norm(vector)), 1e-12)

    def route(self, question: str, history: Sequence[dict] = (), domains: Sequence[str] | None = None,
              query: np.ndarray | None = None) -> Route:
        """``query``: the question's :meth:`query_vector` when the caller already has it."""
        domains = list(domains) if domains is not None else self.domains()
        if not domains:
            return Route(None, 0.0, {}, 0.0, "no domain has been indexed yet")
        query = query if query is not None else self.query_vector(question, history)
        knn = self._knn_shares(query, domains)
        centroid = self._centroid_shares(query, domains)
        weight = self.settings.router_knn_weight
        scores = {d: weight * knn[d][0] + (1 - weight) * centroid[d] for d in domains}
        lexical = self._lexical_shares(question, domains)
        if lexical is not None:
            share = self.settings.router_lexical_weight
            scores = {d: (1 - share) * scores[d] + share * lexical[d] for d in domains}
        scores = {d: round(score, 4) for d, score in scores.items()}
        best_similarity = max((knn[d][1] for d in domains), default=0.0)
        best = max(scores, key=scores.get)
        if best_similarity < self.settings.router_min_similarity:
            return Route(None, scores[best], scores, best_similarity,
                         f"nothing in any domain is close to the question (best similarity {best_similarity:.2f})")
        if scores[best] < self.settings.router_min_confidence:
            return Route(None, scores[best], scores, best_similarity,
                         f"no domain is clearly best ({best} {scores[best]:.2f})")
        return Route(best, scores[best], scores, best_similarity, f"{best}: {scores[best]:.2f} of the vote")

    def _knn_shares(self, query: np.ndarray, domains: list[str]) -> dict[str, tuple[float, float]]:
        """Each domain's share of the similarity mass among the k nearest chunks over all domains,
        and its best similarity."""
        k = self.settings.router_neighbours
        hits = []
        for domain in domains:
            hits += [(hit.score, domain) for hit in self.vectors.search(domain, query, k)]
        nearest = sorted(hits, reverse=True)[:k]
        mass = {d: 0.0 for d in domains}
        for score, domain in nearest:
            mass[domain] += max(score, 0.0)
        total = sum(mass.values()) or 1.0
        best = {d: max((s for s, dd in hits if dd == d), default=0.0) for d in domains}
        return {d: (mass[d] / total, best[d]) for d in domains}

    def _lexical_shares(self, question: str, domains: list[str]) -> dict[str, float] | None:
        """A softmax over how much of the question's rare vocabulary each domain holds. Only
        names and codes count: words the embedder's own vocabulary lacks (it splits them into
        pieces: "Steagall", "GDPR", "warfarin"), which are what similarity blurs; a common word
        ("return", "match") rare in a small corpus must not outvote a drug name. Each such word
        a domain's chunks contain adds its IDF over *all* domains' chunks, so a name only one
        domain holds weighs most, and domains of very different sizes compare fairly (BM25
        scores would not). None when no domain holds more of it than another."""
        if self.settings.router_lexical_weight == 0:
            return None
        words = sorted(w for w in set(tokenize([question])[0]) if self.embedder.count_tokens(w) >= 2)
        if not words:
            return None
        frequencies, rows = {}, 0
        for domain in domains:
            lexical = self.vectors.get(domain).lexical
            frequencies[domain] = lexical.document_frequencies(words)
            rows += lexical.rows
        overall = [sum(frequencies[d][i] for d in domains) for i in range(len(words))]
        rarity = [math.log(1 + rows / (1 + count)) for count in overall]
        held = {d: sum(r for r, count in zip(rarity, frequencies[d]) if count) for d in domains}
        top = max(held.values())
        if top == min(held.values()):
            return None
        weights = {d: math.exp((score - top) / self.settings.router_lexical_temperature) for d, score in held.items()}
        total = sum(weights.values())
        return {d: w / total for d, w in weights.items()}

    def _centroid_shares(self, query: np.ndarray, domains: list[str]) -> dict[str, float]:
        similarities = np.array([float(self._centroid(d) @ query) for d in domains])
        weights = np.exp((similarities - similarities.max()) / self.settings.router_centroid_temperature)
        return dict(zip(domains, (weights / weights.sum()).tolist()))

    def _centroid(self, domain: str) -> np.ndarray:
        index = self.vectors.get(domain)
        cached = self._centroids.get(domain)
        if cached and cached[0] == index.version:
            return cached[1]
        vectors = index.vectors()
        centroid = vectors.mean(axis=0) if len(vectors) else np.zeros(self.embedder.dimension, dtype=np.float32)
        centroid = centroid / max(float(np.linalg.norm(centroid)), 1e-12)
        with self._lock:
            self._centroids[domain] = (index.version, centroid)
        return centroid
