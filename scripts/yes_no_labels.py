"""The yes/no label the retrieved evidence gives each question, for several ``best_document_chunks``.

No model is loaded: the label is what assistant/answering/yes_no.py reads from the prompt's
evidence (the retrieval the chat uses, in the corpus's evaluation workspace), which is what opens
nearly every PubMedQA answer. So a whole question set is scored in minutes, where `assistant eval`
would generate. Example (issue 36; the README's retrieval section):

    .venv/bin/python scripts/yes_no_labels.py --corpus ../shared/devdata/pubmedqa/corpus.jsonl \\
        --questions ../shared/devdata/pubmedqa/questions.jsonl --chunks 1,3

prints, per setting, the accuracy against the gold label (yes, no or maybe; "maybe" is never
given, so those count as wrong, as in `assistant eval`) and the labels given, then how many
questions the last setting gained and lost against the first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--chunks", default="1,3", help="best_document_chunks values, comma-separated (default 1,3)")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)

    from adapters import prompts
    from assistant.answering.retrieval import Retriever
    from assistant.answering.yes_no import decide
    from assistant.evaluation.metrics import gold_label
    from assistant.evaluation.questions import load_questions, spread_over_domains
    from assistant.evaluation.workspace import open_workspace
    from assistant.settings import load_settings
    from indexing.embedding import get_embedder
    from indexing.vector_store import VectorStore

    embedder = get_embedder()
    workspace = open_workspace(load_settings(), args.corpus, progress=False, embedder=embedder)
    try:
        questions = [q for q in spread_over_domains(load_questions(args.questions), args.limit)
                     if gold_label(q.answers) is not None]
        vectors = VectorStore(workspace.settings.domains_dir)
        labels: dict[int, list[str]] = {}
        for chunks in (int(value) for value in args.chunks.split(",")):
            retriever = Retriever(workspace.settings.model_copy(update={"best_document_chunks": chunks}), vectors,
                                  embedder, workspace.graph)
            labels[chunks] = [_label(retriever, prompts, decide, q) for q in questions]
    finally:
        workspace.close()
    gold = [gold_label(q.answers) for q in questions]
    for chunks, given in labels.items():
        accuracy = sum(g == p for g, p in zip(gold, given)) / max(len(gold), 1)
        spread = {label: given.count(label) for label in sorted(set(given))}
        print(f"best_document_chunks {chunks}: accuracy {accuracy:.3f} over {len(gold)} questions; labels {spread}")
    first, last = labels[next(iter(labels))], labels[list(labels)[-1]]
    gained = sum(a != g and b == g for a, b, g in zip(first, last, gold))
    lost = sum(a == g and b != g for a, b, g in zip(first, last, gold))
    print(f"last against first: {gained} gained, {lost} lost")
    return 0


def _label(retriever, prompts, decide, question) -> str:
    evidence = retriever.retrieve(question.question, [question.domain])
    items = prompts.number_evidence([f.text for f in evidence.facts], [(p.title, p.text) for p in evidence.passages])
    decision = decide(question.question, items)
    return decision.label.lower() if decision else "none"


if __name__ == "__main__":
    sys.exit(main())
