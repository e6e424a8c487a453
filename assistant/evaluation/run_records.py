"""What an evaluation run is asked to do (``EvalOptions``) and what each question produced
(``QuestionRun``), with the names of the retrieval methods and answer configurations it scores.
Every stage of the run (runner, answering, transfer, report) reads these."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from assistant.answering.bridge import Bridge
from assistant.answering.retrieval import Passage, RankedFact
from assistant.evaluation import metrics
from assistant.evaluation.questions import EvalQuestion

METHODS = ("bm25", "dense", "hybrid", "graph_walk", "fused", "full", "answer")
METHOD_LABELS = {"bm25": "BM25 only", "dense": "dense (FAISS) only", "hybrid": "hybrid (BM25 + dense), no graph",
                 "graph_walk": "graph walk alone",
                 "fused": "fused (weighted RRF of dense, BM25 and the walk)", "full": "full (passages + as many facts, up to 2k items)",
                 "answer": "answer (the prompt's evidence list)"}
CLOSED_BOOK, BASE_RAG, ADAPTER_RAG = "base_closed_book", "base_rag", "adapter_rag"
ADAPTER_CLOSED = "adapter_closed_book"
CONFIG_LABELS = {CLOSED_BOOK: "base model, no retrieval", BASE_RAG: "base model + retrieval",
                 ADAPTER_RAG: "adapter + retrieval", ADAPTER_CLOSED: "adapter, no retrieval"}
# Paired comparisons on the same questions: (treated, control).
PAIRS = ((ADAPTER_RAG, BASE_RAG), (ADAPTER_CLOSED, CLOSED_BOOK), (ADAPTER_RAG, ADAPTER_CLOSED))


@dataclass
class EvalOptions:
    corpus: Path
    questions: Path
    k: int = 5
    limit: int | None = None
    out: Path | None = None
    generate: bool = True
    train_adapters: bool = False
    train_steps: int | None = None  # None: the train_max_steps setting
    use_served_adapters: bool = True  # copy the app's active adapter of a same-named domain
    max_new_tokens: int | None = None  # None: the product's max_new_tokens (answers end at their sentence limit)
    progress: bool = True
    # With ``train_share``, a seeded share of each domain's questions (split_seed) trains the adapters as
    # labelled evidence-reading examples and only the rest is answered and scored.
    train_share: float | None = None
    split_seed: int = 0
    train_questions: Path | None = None  # the training share, written by the run


@dataclass
class QuestionRun:
    """What one question produced; ``ranked`` holds, per method, the document ids of each
    retrieved item in rank order (passages; a fact has its own documents; ``full_facts`` the
    facts ``full`` adds to its passages)."""
    question: EvalQuestion
    routed: str | None
    confidence: float
    searched: list[str]
    ranked: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    full_facts: list[tuple[str, ...]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    degraded: bool = False
    answer_evidence: list[RankedFact | Passage] = field(default_factory=list)  # the prompt's one ranked list
    prompt_facts: list[RankedFact] = field(default_factory=list)  # the same items by kind: what stage 2 answers from
    prompt_passages: list[Passage] = field(default_factory=list)
    evidence_given: list[dict] = field(default_factory=list)  # the numbered evidence texts the model was given
    bridge: Bridge | None = None  # the second search a multi-hop question got (assistant/answering/bridge.py)
    answers: dict[str, dict] = field(default_factory=dict)  # config -> {adapter, text, em, f1, label_ok, seconds, ...}

    def found(self, method: str, k: int) -> set[str]:
        found = metrics.documents_at_k(self.ranked[method], k)
        if method == "full":
            found |= metrics.documents_at_k(self.full_facts, k)
        return found
