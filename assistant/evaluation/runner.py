"""One evaluation run: route, retrieve and (unless ``generate`` is off) answer every question,
with the product's own components, and score each stage.

Stage 1 needs no language model: every question is routed like a chat message and its
evidence retrieved seven ways in the same run, so the ratios are fair: BM25 alone, dense (FAISS)
alone, hybrid (their weighted fusion, no graph), the graph walk's own passage ranking, ``fused``
(the weighted fusion of dense, BM25 and the walk: the passage list before the walk became the
ranker, ``passage_ranking`` fusion), ``full``
(the product's passages plus as many graph facts again, up to 2k items: the old, generous
count) and ``answer``: the one evidence list the prompt gets, its first k items, each item's
documents; at equal k with the others. Each is searched in the routed domain (every domain when
the router abstains), so a misrouted question counts as a miss, as it would for a user.

Stage 2 answers from three configurations: the base model without retrieval (closed book), the
base model with the product's prompt of facts and passages, and the routed domain's adapter with
the same prompt (when that domain has one). Answers use the product's evidence budget
(``facts_per_answer``, ``passages_per_answer``), not ``k``.

A run of ``--train-adapters`` takes hours on a CPU, so the report is handed to ``save`` after
each stage (routing and retrieval, the domain adapters, the answers, the transfer rows), with
``complete`` false and the stages done so far: a run killed or failed half-way leaves what it
measured.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from tqdm import tqdm

from assistant.answering.answer_writer import opening
from assistant.answering.bridge import follow
from assistant.answering.retrieval import Passage, RankedFact, Retriever
from assistant.answering.router import Router
from assistant.evaluation import metrics
from assistant.evaluation.answering import answer_all
from assistant.evaluation.questions import (EvalQuestion, load_questions, split_for_training, spread_over_domains,
                                            write_questions)
from assistant.evaluation.run_records import METHOD_LABELS, METHODS, EvalOptions, QuestionRun
from assistant.evaluation.transfer_goals import goal_checks
from assistant.evaluation.workspace import Workspace, open_workspace
from assistant.settings import Settings
from indexing.embedding import CachedEncoder, get_embedder
from indexing.vector_store import IndexUnavailable, VectorStore


def run_evaluation(app: Settings, options: EvalOptions, save: Callable[[dict], object] | None = None) -> dict:
    """Everything the report holds, as one JSON-ready dict; ``save`` gets it after each stage."""
    questions = load_questions(options.questions)
    split: dict | None = None
    embedder = get_embedder(app.embedder, app.embed_batch_size)
    workspace = open_workspace(app, options.corpus, progress=options.progress, embedder=embedder)
    try:
        if options.train_share is not None:
            questions, split, options = _split(questions, workspace, options)
        questions = spread_over_domains(questions, options.limit)
        sentence_vectors = CachedEncoder(embedder)  # one cache for the bridge's openings and the answers
        runs = retrieve_all(workspace, questions, options, embedder, sentence_vectors)
        report = {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "corpus": str(workspace.corpus), "questions_file": str(Path(options.questions).resolve()),
            "workspace": str(workspace.settings.data_dir), "reused_index": workspace.reused,
            "k": options.k, "n_questions": len(runs), "domains": workspace.describe(),
            "routing": routing_section(runs),
            "retrieval": retrieval_section(runs, options.k),
            "complete": False, "stages_done": [],
        }
        if split is not None:
            report["split"] = split

        def checkpoint(stage: str, section: dict) -> None:
            report.update(section)
            report["stages_done"].append(stage)
            _add_run_tables(report, runs, options.k)
            if save:
                save(report)

        checkpoint("routing and retrieval", {})
        if options.generate:
            answer_all(workspace, runs, options, app, sentence_vectors, checkpoint)
        report["complete"] = True
        _add_run_tables(report, runs, options.k)
        return report
    finally:
        workspace.close()


def _split(questions: list[EvalQuestion], workspace: Workspace,
           options: EvalOptions) -> tuple[list[EvalQuestion], dict, EvalOptions]:
    """The held-out questions to answer, the split's record, and the options naming the file of
    the training share (labelled questions the adapters train on)."""
    train, held_out = split_for_training(questions, options.train_share, options.split_seed)
    path = workspace.settings.data_dir / "splits" / \
        f"{Path(options.questions).stem}-train{options.train_share:g}-seed{options.split_seed}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_questions(train, path)
    record = {"train_share": options.train_share, "seed": options.split_seed, "train": len(train),
              "held_out": len(held_out), "train_file": str(path)}
    return held_out, record, dataclasses.replace(options, train_questions=path)


def _add_run_tables(report: dict, runs: Sequence[QuestionRun], k: int) -> None:
    """What is read off the questions' runs as they stand: the goals (once answers exist), the
    latencies and the per-question rows."""
    if "training" in report and "adapter_vs_base" in report:
        report["goals"] = goal_checks(report)
    report["latency"] = latency_section(runs)
    report["per_question"] = [question_row(run, k) for run in runs]


# --- stage 1: routing and retrieval -------------------------------------------------------------

def retrieve_all(workspace: Workspace, questions: Sequence[EvalQuestion], options: EvalOptions,
                 embedder, sentence_vectors: CachedEncoder) -> list[QuestionRun]:
    settings = workspace.settings
    depth = max(options.k, settings.passages_per_answer, settings.facts_per_answer)
    deep = settings.model_copy(update={"passages_per_answer": depth, "facts_per_answer": depth,
                                       "evidence_per_answer": 2 * depth})
    vectors = VectorStore(settings.domains_dir, settings.hnsw_ef_search)
    router = Router(settings, vectors, embedder)
    retrievers = {"answer": Retriever(settings, vectors, embedder, workspace.graph),
                  "full": Retriever(deep, vectors, embedder, workspace.graph),
                  "hybrid": Retriever(deep.model_copy(update={"walk_weight": 0.0}), vectors, embedder, None),
                  "fused": Retriever(deep.model_copy(update={"passage_ranking": "fusion"}), vectors, embedder,
                                     workspace.graph)}
    domains = router.domains()
    runs = []
    lead = functools.partial(opening, settings, sentence_vectors)
    for question in tqdm(questions, desc="route + retrieve", unit="q", disable=not options.progress):
        runs.append(_retrieve_one(question, router, retrievers, vectors, domains, depth, lead))
    return runs


def _retrieve_one(question: EvalQuestion, router: Router, retrievers: dict[str, Retriever], vectors: VectorStore,
                  domains: list[str], depth: int, lead) -> QuestionRun:
    clock = time.perf_counter()
    query = router.query_vector(question.question, [])
    route = router.route(question.question, [], domains, query)
    route_s = time.perf_counter() - clock
    searched = [route.domain] if route.domain else list(domains)
    run = QuestionRun(question, route.domain, route.confidence, searched, timings={"route": route_s})
    run.ranked["bm25"] = _single_list(vectors, searched, depth, lambda index: index.search_lexical(question.question, depth))
    run.ranked["dense"] = _single_list(vectors, searched, depth, lambda index: index.search(query, depth))
    run.ranked["hybrid"] = [(p.doc_id,) for p in retrievers["hybrid"].retrieve(question.question, searched, query).passages]
    full = retrievers["full"].retrieve(question.question, searched, query)
    run.ranked["full"] = [(p.doc_id,) for p in full.passages]
    run.full_facts = [tuple(f.fact.doc_ids) for f in full.facts]
    walked = sorted(full.walk_passages, key=lambda p: -p.score)
    run.ranked["graph_walk"] = [(p.doc_id,) for p in walked[:depth]]
    run.ranked["fused"] = [(p.doc_id,) for p in retrievers["fused"].retrieve(question.question, searched, query).passages]
    clock = time.perf_counter()
    answering = retrievers["answer"]
    evidence = answering.retrieve(question.question, searched, query)
    run.answer_evidence = evidence.ranked
    run.ranked["answer"] = [entry_documents(entry) for entry in evidence.ranked]
    run.degraded = evidence.graph_degraded
    run.prompt_facts, run.prompt_passages = evidence.facts, evidence.passages
    if answering.settings.follow_bridges:  # the product's second search for a multi-hop question
        bridged = follow(question.question, evidence.facts, evidence.passages, lead,
                         lambda asked: answering.retrieve(asked, searched))
        if bridged is not None:
            run.prompt_facts, run.prompt_passages, run.bridge = bridged.facts, bridged.passages, bridged.bridge
    run.timings["retrieve"] = time.perf_counter() - clock
    return run


def entry_documents(entry: RankedFact | Passage) -> tuple[str, ...]:
    """The documents one evidence item comes from: a passage's, or every document a fact was read in."""
    return tuple(entry.fact.doc_ids) if isinstance(entry, RankedFact) else (entry.doc_id,)


def _single_list(vectors: VectorStore, domains: list[str], depth: int, search) -> list[tuple[str, ...]]:
    """One method's hits over the searched domains, best score first (one domain: its order)."""
    hits = []
    for domain in domains:
        try:
            hits += search(vectors.get(domain))
        except IndexUnavailable:
            continue
    return [(hit.doc_id,) for hit in sorted(hits, key=lambda h: -h.score)[:depth]]


# --- scoring ---------------------------------------------------------------------------------------

def routing_section(runs: Sequence[QuestionRun]) -> dict:
    gold = [run.question.domain for run in runs]
    routed = [run.routed for run in runs]
    section = metrics.routing_scores(gold, routed)
    section["by_domain"] = {
        domain: metrics.routing_scores([g for g in gold if g == domain],
                                       [r for g, r in zip(gold, routed) if g == domain])["accuracy"]
        for domain in sorted(set(gold))}
    return section


def question_groups(runs: Sequence[QuestionRun]) -> dict[str, list[QuestionRun]]:
    """All, single-document, multi-hop, and multi-hop by its number of documents."""
    return {"all": list(runs), "single_document": [r for r in runs if not r.question.multi_hop],
            "multi_hop": [r for r in runs if r.question.multi_hop],
            "two_hop": [r for r in runs if len(r.question.evidence_doc_ids) == 2],
            "three_hop": [r for r in runs if len(r.question.evidence_doc_ids) >= 3]}


def retrieval_section(runs: Sequence[QuestionRun], k: int) -> dict:
    groups = question_groups(runs)
    single_by_domain = {domain: [r for r in groups["single_document"] if r.question.domain == domain]
                        for domain in sorted({r.question.domain for r in runs})}
    section: dict = {"k": k, "methods": {}, "graph_degraded_questions": sum(r.degraded for r in runs),
                     "counts": {name: len(group) for name, group in groups.items()}}
    for method in METHODS:
        entry = {"label": METHOD_LABELS[method]}
        for name, group in groups.items():
            entry[name] = {"recall_at": _at_each_k(group, method, k, metrics.evidence_recall),
                           "all_evidence_at": _at_each_k(group, method, k, metrics.all_evidence)}
        entry["single_document_by_domain"] = {domain: _at_each_k(group, method, k, metrics.evidence_recall)[-1]
                                              for domain, group in single_by_domain.items()}
        entry["by_domain"] = {domain: _at_each_k([r for r in runs if r.question.domain == domain], method, k,
                                                 metrics.evidence_recall)[-1] for domain in single_by_domain}
        section["methods"][method] = entry
    return section


def _at_each_k(group: Sequence[QuestionRun], method: str, k: int, score) -> list[float | None]:
    return [metrics.mean(score(r.found(method, i), r.question.evidence_doc_ids) for r in group) for i in range(1, k + 1)]


def latency_section(runs: Sequence[QuestionRun]) -> dict:
    section = {stage: metrics.percentiles([r.timings[stage] for r in runs if stage in r.timings])
               for stage in ("route", "retrieve")}
    configs = sorted({config for r in runs for config in r.answers})
    section["generate"] = {config: metrics.percentiles([r.answers[config]["seconds"] for r in runs
                                                        if config in r.answers]) for config in configs}
    return section


def question_row(run: QuestionRun, k: int) -> dict:
    """One line of the per-question table in report.json (for reading failures)."""
    return {"id": run.question.id, "domain": run.question.domain, "routed": run.routed,
            "confidence": round(run.confidence, 3), "multi_hop": run.question.multi_hop,
            "evidence_doc_ids": list(run.question.evidence_doc_ids),
            "recall_at_k": {m: metrics.evidence_recall(run.found(m, k), run.question.evidence_doc_ids) for m in METHODS},
            "answer_items": [{"kind": "fact" if isinstance(entry, RankedFact) else "passage",
                              "documents": list(entry_documents(entry))}
                             for entry in run.answer_evidence],
            "evidence": run.evidence_given,
            "bridge": {"entity": run.bridge.entity, "query": run.bridge.query} if run.bridge else None,
            "answers": {config: {key: value for key, value in answer.items() if key != "seconds"}
                        for config, answer in run.answers.items()}}
