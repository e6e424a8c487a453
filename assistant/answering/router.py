"""Which domain a question belongs to: a k-nearest-neighbour vote over every domain's chunk
embeddings, blended with the question's similarity to each domain's centroid and with a
lexical vote (which domain's chunks hold the question's rare words, which domain's graph holds
the multi-word names it contains).

Nothing is trained: the vote reads the serving FAISS indexes, so a domain becomes routable the
moment its first index version exists, and follows re-indexes. The router **abstains** (answer
with the base model over all domains) when the best domain's share of the score is below
``router_min_confidence`` or when no chunk anywhere is close to the question
(``router_min_similarity``): an off-topic question. Neither gate abstains on a question that
names an entity only the best domain's graph holds.
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
from indexing.entity_keys import name_spans
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


@dataclass(frozen=True)
class _LexicalVote:
    shares: dict[str, float] | None  # per domain, summing to 1; None: the words do not tell domains apart
    named_only_in: set[str]  # domains whose graph alone has a multi-word name the question contains


class Router:
    def __init__(self, settings: Settings, vectors: VectorStore, embedder: Embedder):
        self.settings, self.vectors, self.embedder = settings, vectors, embedder
        self._centroids: dict[str, tuple[str, np.ndarray]] = {}  # domain -> (version, unit centroid)
        self._names: dict[str, tuple[str, dict[str, int]]] = {}  # domain -> (version, name key -> chunks)
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
        vote = self._lexical_vote(question, domains)
        if vote.shares is not None:
            share = self.settings.router_lexical_weight
            scores = {d: (1 - share) * scores[d] + share * vote.shares[d] for d in domains}
        scores = {d: round(score, 4) for d, score in scores.items()}
        best_similarity = max((knn[d][1] for d in domains), default=0.0)
        best = max(scores, key=scores.get)
        # A question naming something only the best domain's graph holds ("the Mount Washington
        # Hotel") is about that domain, however far its wording is from the passages and however
        # close the vote: neither gate abstains on it. With one domain a name tells nothing apart,
        # and the off-topic gate stays.
        named_here = len(domains) > 1 and vote.named_only_in == {best}
        if best_similarity < self.settings.router_min_similarity and not named_here:
            return Route(None, scores[best], scores, best_similarity,
                         f"nothing in any domain is close to the question (best similarity {best_similarity:.2f})")
        if scores[best] < self.settings.router_min_confidence and not named_here:
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

    def _lexical_vote(self, question: str, domains: list[str]) -> "_LexicalVote":
        """A softmax over how much of the question's rare vocabulary each domain holds. Two kinds
        of term count, both what similarity blurs:

        - names and codes: words the embedder's own vocabulary lacks (it splits them into pieces:
          "Steagall", "GDPR", "warfarin"); a common word ("return", "match") rare in a small
          corpus must not outvote a drug name. A domain holds one when its chunks contain it.
        - multi-word entity names of a domain's graph found in the question ("special drawing
          right"), whatever its words; a domain holds one when its graph has that entity.

        Each term a domain holds adds its IDF over *all* domains' chunks, so a name only one
        domain holds weighs most, and domains of very different sizes compare fairly (BM25
        scores would not). No shares when no domain holds more of it than another."""
        if self.settings.router_lexical_weight == 0:
            return _LexicalVote(None, set())
        frequencies = self._word_frequencies(question, domains)
        names = self._name_frequencies(question, domains)
        for domain in domains:
            frequencies[domain] += names[domain]
        rows = sum(self.vectors.get(d).lexical.rows for d in domains)
        terms = len(frequencies[domains[0]])
        overall = [sum(frequencies[d][i] for d in domains) for i in range(terms)]
        rarity = [math.log(1 + rows / (1 + count)) for count in overall]
        held = {d: sum(r for r, count in zip(rarity, frequencies[d]) if count) for d in domains}
        named_only_in = {d for d in domains for i, count in enumerate(names[d])
                         if count and all(not names[other][i] for other in domains if other != d)}
        top = max(held.values())
        if not terms or top == min(held.values()):
            return _LexicalVote(None, named_only_in)
        weights = {d: math.exp((score - top) / self.settings.router_lexical_temperature) for d, score in held.items()}
        total = sum(weights.values())
        return _LexicalVote({d: w / total for d, w in weights.items()}, named_only_in)

    def _word_frequencies(self, question: str, domains: list[str]) -> dict[str, list[int]]:
        """Per domain, how many chunks hold each of the question's name-like words."""
        words = sorted(w for w in set(tokenize([question])[0]) if self.embedder.count_tokens(w) >= 2)
        if not words:
            return {d: [] for d in domains}
        return {d: list(self.vectors.get(d).lexical.document_frequencies(words)) for d in domains}

    def _name_frequencies(self, question: str, domains: list[str]) -> dict[str, list[int]]:
        """Per domain, how many chunks mention each multi-word entity name the question contains
        (0 where that domain's graph lacks it, or the version has no graph walk file)."""
        tables = {d: self._named_chunks(d) for d in domains}
        keys = sorted({key for _, _, _, key, _ in name_spans(question)
                       if len(key.split()) >= 2 and any(key in table for table in tables.values())})
        return {d: [tables[d].get(key, 0) for key in keys] for d in domains}

    def _named_chunks(self, domain: str) -> dict[str, int]:
        return self._for_version(self._names, domain, self._read_named_chunks)

    def _read_named_chunks(self, index) -> dict[str, int]:
        try:
            walk_graph = index.walk_graph
        except IndexUnavailable as exc:  # retrieval says so too; routing goes on without the names
            log.warning("routing %s without its entity names: %s", index.domain, exc)
            return {}
        return walk_graph.named_chunks() if walk_graph is not None else {}

    def _centroid_shares(self, query: np.ndarray, domains: list[str]) -> dict[str, float]:
        similarities = np.array([float(self._centroid(d) @ query) for d in domains])
        weights = np.exp((similarities - similarities.max()) / self.settings.router_centroid_temperature)
        return dict(zip(domains, (weights / weights.sum()).tolist()))

    def _centroid(self, domain: str) -> np.ndarray:
        return self._for_version(self._centroids, domain, self._unit_centroid)

    def _unit_centroid(self, index) -> np.ndarray:
        vectors = index.vectors()
        centroid = vectors.mean(axis=0) if len(vectors) else np.zeros(self.embedder.dimension, dtype=np.float32)
        return centroid / max(float(np.linalg.norm(centroid)), 1e-12)

    def _for_version(self, cache: dict, domain: str, compute):
        """``compute(index)`` of the domain's serving version, kept until a re-index switches it."""
        index = self.vectors.get(domain)
        cached = cache.get(domain)
        if cached and cached[0] == index.version:
            return cached[1]
        value = compute(index)
        with self._lock:
            cache[domain] = (index.version, value)
        return value
