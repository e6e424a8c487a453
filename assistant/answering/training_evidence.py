"""The product's retrieval lent to the adapters' dataset builder (adapters/evidence_reading.py),
so an adapter is trained on the very evidence lists the chat's prompts hold.

Only the first search: a multi-hop question's bridge (assistant/answering/bridge.py) needs the
answer writer's opening, which reads the evidence an adapter is being taught to read.
"""

from __future__ import annotations

from typing import Sequence

from adapters.base_model import load_tokenizer, resolve_base_model
from adapters.evidence_reading import EvidenceReader, FoundEvidence
from adapters.prompts import EvidenceItem
from assistant.answering.retrieval import Retriever
from assistant.answering.yes_no import findings_backing
from assistant.settings import Settings
from indexing.embedding import Embedder, get_embedder
from indexing.graph_store import GraphStore
from indexing.vector_store import ChunkRow, VectorStore

# Room kept in the training window for the target (a quoted sentence and the short answer).
READING_ANSWER_TOKENS = 128


def evidence_reader(settings: Settings, domain: str, graph: GraphStore | None,
                    embedder: Embedder | None = None) -> EvidenceReader:
    """Retrieval in ``domain`` as the chat does it (``graph``: None for passages only), the base
    model's tokenizer, and a prompt budget that leaves the answer inside ``train_max_tokens``."""
    embedder = embedder or get_embedder(settings.embedder, settings.embed_batch_size)
    retriever = Retriever(settings, VectorStore(settings.domains_dir, settings.hnsw_ef_search), embedder, graph)
    tokenizer = load_tokenizer(resolve_base_model(settings.base_model, settings.models_dir))

    def find(question: str) -> FoundEvidence:
        evidence = retriever.retrieve(question, [domain])
        return FoundEvidence([(f.text, tuple(f.fact.doc_ids)) for f in evidence.facts],
                             [ChunkRow(p.chunk_id, p.doc_id, p.title, p.text) for p in evidence.passages])

    def count_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    budget = min(settings.context_tokens, settings.train_max_tokens - READING_ANSWER_TOKENS)
    return EvidenceReader(find, count_tokens, budget, settings.dataset_reading_no_gold_percent, label_reason)


def label_reason(question: str, label: str, items: Sequence[EvidenceItem]) -> tuple[str, int] | None:
    """The strongest finding of the gold evidence that backs the gold label, as the product's
    own yes/no lead would quote it, so the trained answer passes the label check."""
    backing = findings_backing(question, items, label)
    if not backing:
        return None
    sentence = backing[0].sentence.strip()
    return sentence[:1].upper() + sentence[1:], backing[0].number
