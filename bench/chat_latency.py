"""Chat latency per stage, retrieval hit rates and routing accuracy on the demo corpora. Prints
tables; asserts nothing.

Run from the repository root (``make bench`` does)::

    .venv/bin/python bench/chat_latency.py [--questions N] [--max-new-tokens N] [--k N]

The three demo domains (medicine, finance, law) are indexed with their knowledge graph into a
temporary data dir, on an embedded FalkorDB server started there (./data is never touched; the
server is stopped at the end). The chat pipeline is the app's own: ``ChatPipeline.create`` with
the default base model on CPU and no adapters.

* Table 1 answers ``--questions`` demo questions (spread evenly over the domains) with
  ``pipeline.respond`` and reports p50/p95 of each stage from ``Answer.timings``: route,
  retrieve, prompt, time to first token (from the start of generation, and from the start of the
  request), generate, and tokens/s. One untimed question and one retrieval per domain warm the
  caches first (centroids, BM25 indexes, entity catalogs, the model's first forward pass).
  Table 1b replays the pipeline's submissions on the same engine alone and compares decode speed
  and the whole answer's time with it (bench/decode_in_pipeline.py: issue 38's single-user goals).
* Table 2 reports, over every demo question, whether any of the top ``--k`` passages comes from
  one of the question's ``evidence_doc_ids``: for the dense (FAISS) list, the BM25 list and their
  reciprocal rank fusion (``assistant.answering.retrieval.fuse_rankings``), with the candidate counts and
  RRF constant of the settings. Each question is searched in the domain the router picks, or in
  its own domain when the router abstains (the pipeline would search every domain then).
* Table 3 is the router's accuracy on every demo question.
* Table 4 times ``Retriever.retrieve`` on every demo question (the router's query vector given, so
  only retrieval is timed) two ways, alternating question by question on the same index: the
  product's ranking (the graph walk ranks the passages, seeded by 20 dense and 20 BM25
  candidates) and the fused list before issue 35 (``passage_ranking`` fusion, 5 seed passages per
  list, half the restart on them). The headline is the ratio of their p50s.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402

from adapters.round_robin import round_robin  # noqa: E402
from assistant.settings import DEMO_CORPORA_DIR  # noqa: E402
from bench import decode_in_pipeline  # noqa: E402
from bench.results import print_table, record  # noqa: E402

DOMAINS = ("medicine", "finance", "law")
EVAL_DIR = DEMO_CORPORA_DIR.parent / "eval"
DEFAULT_QUESTIONS = 12
DEFAULT_MAX_NEW_TOKENS = 48
DEFAULT_K = 4
WARM_UP_QUESTION = "What is the role of the liver?"


# --- output -----------------------------------------------------------------------------------


def percentile_cells(values: list[float], scale: float = 1.0, digits: int = 1) -> list[str]:
    a = np.asarray(values, dtype=float) * scale
    return [str(len(a)), f"{np.percentile(a, 50):.{digits}f}", f"{np.percentile(a, 95):.{digits}f}",
            f"{a.mean():.{digits}f}"]


def share(hits: int, total: int) -> str:
    return f"{hits / total:.2f} ({hits}/{total})" if total else "-"


# --- demo questions ---------------------------------------------------------------------------

def demo_questions() -> list[dict]:
    return [json.loads(line) for domain in DOMAINS
            for line in (EVAL_DIR / f"{domain}.questions.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]


def spread_over_domains(questions: list[dict], count: int) -> list[dict]:
    """``count`` questions taken round-robin from each domain's list, in file order."""
    return round_robin(([q for q in questions if q["domain"] == domain] for domain in DOMAINS), count)


# --- the indexed demo -------------------------------------------------------------------------

@dataclass
class Demo:
    settings: object
    connection: object
    graph: object
    embedder: object
    index_s: float


def index_demo(data_dir: Path, max_new_tokens: int) -> Demo:
    """The demo domains indexed with their graph; the caller closes ``demo.connection``."""
    from assistant.settings import load_settings
    from indexing.embedding import get_embedder
    from indexing.graph_connection import GraphConnection
    from indexing.graph_store import GraphStore
    from indexing.pipeline import index_source

    # neo4j_uri=None: always the embedded server, whatever NEO4J_URI the environment has
    settings = load_settings(data_dir=data_dir, _env_file=None, neo4j_uri=None, max_new_tokens=max_new_tokens)
    embedder = get_embedder(settings.embedder, settings.embed_batch_size)
    connection = GraphConnection.open(settings.graph_params)
    try:
        graph = GraphStore(connection, settings.domains_dir)
        graph.ensure_indexes()
        started = time.perf_counter()
        for domain in DOMAINS:
            report = index_source(settings.indexing_params, DEMO_CORPORA_DIR / domain, domain, progress=False, graph=graph,
                                  embedder=embedder)
            print(f"  indexed {domain} in {report.seconds:.1f}s{'' if report.ok else ': ' + report.format()}",
                  flush=True)
        return Demo(settings, connection, graph, embedder, time.perf_counter() - started)
    except BaseException:
        connection.close()
        raise


def build_pipeline(demo: Demo):
    from assistant.serving.engine import Engine
    from assistant.answering.pipeline import ChatPipeline

    engine = Engine(demo.settings, load_registered=False)
    return ChatPipeline.create(demo.settings, demo.graph, embedder=demo.embedder, engine=engine)


def warm_up(pipeline) -> float:
    started = time.perf_counter()
    for domain in DOMAINS:
        pipeline.retriever.retrieve(WARM_UP_QUESTION, [domain])
    pipeline.respond(WARM_UP_QUESTION)
    return time.perf_counter() - started


# --- table 1: latency per stage ---------------------------------------------------------------

def answer_questions(pipeline, questions: list[dict], log) -> tuple[list, list]:
    """The answers, and what each submitted to the engine (``log``: a decode_in_pipeline.SubmissionLog)."""
    answers, submissions = [], []
    log.taken()
    for question in questions:
        answer = pipeline.respond(question["question"])
        answers.append(answer)
        submissions.append(log.taken())
        t = answer.timings
        print(f"  {question['id']}: routed to {answer.domain}, {answer.new_tokens} tokens, "
              f"retrieve {t.get('retrieve', 0):.2f}s, generate {t.get('generate', 0):.2f}s"
              f"{', ERROR ' + answer.error if answer.error else ''}", flush=True)
    return answers, submissions


def time_to_first_token(answer) -> float | None:
    """Answer.timings["first_token"] counts from the request, as the user waits."""
    return answer.timings.get("first_token")


def decode_tokens_per_s(answer) -> float | None:
    """Tokens after the first one over the generation's time after the first piece the caller was
    shown. The first piece is the written opening or the first attributed sentence, so this mixes
    prefill, decode and attribution; the engine's own decode speed is Table 1b's."""
    t = answer.timings
    if "first_token" not in t or "generate" not in t or answer.new_tokens < 2:
        return None
    after_first = t["generate"] - (t["first_token"] - t["route"] - t["retrieve"] - t["prompt"])
    return (answer.new_tokens - 1) / after_first if after_first > 0 else None


def stage_rows(answers: list) -> list[list[str]]:
    def seconds(name: str) -> list[float]:
        return [a.timings[name] for a in answers if name in a.timings]

    stages = (("route (embed + k-NN vote + centroids), ms", seconds("route")),
              ("retrieve (graph facts + FAISS + BM25 + RRF), ms", seconds("retrieve")),
              ("prompt (token budget), ms", seconds("prompt")),
              ("time to first token, from the request, ms",
               [s for s in map(time_to_first_token, answers) if s is not None]),
              ("generate (prefill + decode), ms", seconds("generate")),
              ("whole answer, ms", [whole_answer_s(a) for a in answers]))
    rows = [[label, *percentile_cells(values, 1000.0)] for label, values in stages if values]
    rates = (("tokens/s (new tokens / generate)",
              [a.new_tokens / a.timings["generate"] for a in answers if a.timings.get("generate", 0) > 0]),
             ("tokens/s after the first piece shown (prefill and attribution included)",
              [s for s in map(decode_tokens_per_s, answers) if s is not None]),
             ("decode tokens/s (the engine's steps for the answer)",
              [decode_in_pipeline.decode_tps(a.new_tokens, a.timings["decode"]) for a in answers
               if a.new_tokens >= 2 and a.timings.get("decode", 0) > 0]))
    return rows + [[label, *percentile_cells(values)] for label, values in rates if values]


def whole_answer_s(answer) -> float:
    """Route to the last token; an answer the evidence wrote alone (no model call) has no generate time."""
    return sum(answer.timings.get(name, 0.0) for name in ("route", "retrieve", "prompt", "generate"))


def answer_notes(answers: list, questions: list[dict], timed: list, settings, warm_up_s: float) -> list[str]:
    new_tokens = [a.new_tokens for a in timed]
    prompt_tokens = [a.prompt_tokens for a in timed]
    stopped = Counter(a.stopped for a in timed)
    evidence_hits = sum(any(p.doc_id in q["evidence_doc_ids"] for p in a.passages) for q, a in zip(questions, answers))
    notes = [f"new tokens per answer: mean {np.mean(new_tokens):.1f}, max {max(new_tokens)}; prompt tokens: "
             f"mean {np.mean(prompt_tokens):.0f}, max {max(prompt_tokens)} (budget {settings.context_tokens})",
             f"stopped: {', '.join(f'{why} {n}' for why, n in sorted(stopped.items()))}; graph facts per answer: "
             f"mean {np.mean([len(a.facts) for a in timed]):.1f}; degraded answers: {sum(a.degraded for a in timed)}",
             f"answers whose prompt passages include an evidence document: {share(evidence_hits, len(answers))}",
             f"answered from the evidence alone, without the model: {sum('generate' not in a.timings for a in timed)}",
             f"warm-up (one retrieval per domain + one untimed answer): {warm_up_s:.1f}s"]
    return notes + [f"ERROR {q['id']}: {a.error}" for q, a in zip(questions, answers) if a.error]


def latency_table(answers: list, questions: list[dict], settings, warm_up_s: float) -> None:
    timed = [a for a in answers if not a.error]  # an answer the evidence wrote alone counts too (no generate time)
    title = (f"Table 1: chat latency per stage - pipeline.respond on {len(timed)} demo questions (spread over "
             f"{', '.join(DOMAINS)}), max_new_tokens={settings.max_new_tokens}, greedy, base model "
             f"{settings.base_model} (serve_quantization={settings.serve_quantization}) on CPU, no adapters, "
             f"{os.cpu_count()} cores, torch threads {torch_threads()}")
    if not timed:
        print_table(title, ["stage", "n", "p50", "p95", "mean"], [],
                    [f"ERROR {q['id']}: {a.error}" for q, a in zip(questions, answers) if a.error])
        return
    print_table(title, ["stage", "n", "p50", "p95", "mean"], stage_rows(timed),
                answer_notes(answers, questions, timed, settings, warm_up_s))
    record_latency(timed)


def record_latency(answers: list) -> None:
    """For make bench: the first token against the whole answer (how much of the wait streaming
    saves) and decode speed against the overall tokens/s (what the prefill costs)."""
    def p50(values: list[float]) -> float:
        return float(np.median(values)) if values else float("nan")

    group, whole, overall = "chat, base model on CPU", "whole answer, p50", "tokens/s (new tokens / generate), p50"
    record(group, whole, p50([1000 * whole_answer_s(a) for a in answers]), "ms", better="lower")
    record(group, "time to first token (from the request), p50",
           p50([1000 * s for s in map(time_to_first_token, answers) if s is not None]), "ms", whole, "lower")
    record(group, overall, p50([a.new_tokens / a.timings["generate"] for a in answers if a.timings.get("generate", 0) > 0]),
           "tokens/s", better="higher")
    record(group, "tokens/s after the first piece shown, p50",
           p50([s for s in map(decode_tokens_per_s, answers) if s is not None]), "tokens/s", overall, "higher")


def torch_threads() -> str:
    import torch

    return str(torch.get_num_threads())


# --- tables 2 and 3: retrieval hit rates and routing ------------------------------------------

METHODS = {"dense": "dense", "lexical": "BM25", "fused": "fused RRF"}


@dataclass
class RetrievalOutcome:
    question: dict
    routed_to: str | None  # None: the router abstained
    evidence_rank: dict[str, int | None]  # method -> 1-based rank of the first evidence passage, None: absent

    def hit(self, method: str, k: int) -> bool:
        rank = self.evidence_rank[method]
        return rank is not None and rank <= k


def first_evidence_rank(ranking, evidence: set[str]) -> int | None:
    return next((rank for rank, item in enumerate(ranking, 1) if item.doc_id in evidence), None)


def retrieve_all(pipeline, questions: list[dict]) -> list[RetrievalOutcome]:
    from assistant.answering.retrieval import fuse_rankings

    settings, router = pipeline.settings, pipeline.router
    outcomes = []
    for question in questions:
        text, evidence = question["question"], set(question["evidence_doc_ids"])
        route = router.route(text)
        index = pipeline.retriever.vectors.get(route.domain or question["domain"])
        dense = index.search(router.query_vector(text), settings.dense_candidates)
        lexical = index.search_lexical(text, settings.lexical_candidates)
        fused = fuse_rankings({"dense": (settings.dense_weight, dense), "lexical": (settings.lexical_weight, lexical)},
                              settings.rrf_k)
        ranks = {method: first_evidence_rank(ranking, evidence)
                 for method, ranking in (("dense", dense), ("lexical", lexical), ("fused", fused))}
        outcomes.append(RetrievalOutcome(question, route.domain, ranks))
    return outcomes


def by_domain_and_all(outcomes: list[RetrievalOutcome]) -> list[tuple[str, list[RetrievalOutcome]]]:
    return [*((d, [o for o in outcomes if o.question["domain"] == d]) for d in DOMAINS), ("all", outcomes)]


def hit_counts(outcomes: list[RetrievalOutcome], k: int) -> str:
    return ", ".join(f"{label} {sum(o.hit(m, k) for o in outcomes)}" for m, label in METHODS.items())


def hit_rate_table(outcomes: list[RetrievalOutcome], settings, k: int) -> None:
    rows = [[label, str(len(group)), *(share(sum(o.hit(m, k) for o in group), len(group)) for m in METHODS)]
            for label, group in by_domain_and_all(outcomes)]
    abstained = sum(o.routed_to is None for o in outcomes)
    misrouted = [o for o in outcomes if o.routed_to is not None and o.routed_to != o.question["domain"]]
    routed_well = [o for o in outcomes if o.routed_to == o.question["domain"]]
    notes = [f"{len(misrouted)} questions were searched in a wrong domain (misrouted; hits among them: "
             f"{hit_counts(misrouted, k)}), {abstained} in their own domain after the router abstained",
             f"hit@{k} among the {len(routed_well)} correctly routed questions: "
             + ", ".join(f"{label} {share(sum(o.hit(m, k) for o in routed_well), len(routed_well))}"
                         for m, label in METHODS.items())]
    if k != 1:
        notes.append("hit@1 over all questions: " + ", ".join(
            f"{label} {share(sum(o.hit(m, 1) for o in outcomes), len(outcomes))}" for m, label in METHODS.items()))
    for top in sorted({1, k}):  # hit@1 tells the methods apart where hit@k often ties
        for method, label in METHODS.items():
            record(f"retrieval hit@{top}, {len(outcomes)} demo questions", label,
                   sum(o.hit(method, top) for o in outcomes) / len(outcomes), "share of questions",
                   None if method == "dense" else METHODS["dense"], "higher")
    print_table(f"Table 2: retrieval hit rate at k={k} - share of demo questions with a top-{k} passage from one of "
                f"their evidence documents; searched in the router's chosen domain, or the question's own domain "
                f"when the router abstains (dense: FAISS top {settings.dense_candidates}, BM25: top "
                f"{settings.lexical_candidates}, fused: RRF k={settings.rrf_k}, no graph-fact boost)",
                ["questions of", "n", *(f"{label} hit@{k}" for label in METHODS.values())], rows, notes)


def routing_table(outcomes: list[RetrievalOutcome], settings) -> None:
    rows = []
    for label, group in by_domain_and_all(outcomes):
        correct = sum(o.routed_to == o.question["domain"] for o in group)
        abstained = sum(o.routed_to is None for o in group)
        rows.append([label, str(len(group)), str(correct), str(len(group) - correct - abstained), str(abstained),
                     f"{correct / len(group):.3f}"])
    wrong = [f"{o.question['id']} -> {o.routed_to or 'abstained'}" for o in outcomes
             if o.routed_to != o.question["domain"]]
    record("routing", f"accuracy, {len(outcomes)} demo questions",
           sum(o.routed_to == o.question["domain"] for o in outcomes) / len(outcomes), "share of questions",
           better="higher")
    print_table(f"Table 3: routing accuracy on every demo question (k-NN weight {settings.router_knn_weight}, "
                f"{settings.router_neighbours} neighbours, min confidence {settings.router_min_confidence}, "
                f"min similarity {settings.router_min_similarity})",
                ["questions of", "n", "correct", "wrong", "abstained", "accuracy"], rows,
                [f"not routed to their own domain: {', '.join(wrong)}"] if wrong else [])


# --- table 4: retrieval time, the walk as the ranker vs the fused list ------------------------------

FUSED_BEFORE = {"passage_ranking": "fusion", "walk_seed_passages": 5, "walk_passage_seed_share": 0.5}


def retrieval_time_table(pipeline, questions: list[dict]) -> None:
    from assistant.answering.retrieval import Retriever

    settings, router = pipeline.settings, pipeline.router
    retrievers = {"walk ranks (the product)": pipeline.retriever,
                  "fused list before issue 35": Retriever(settings.model_copy(update=FUSED_BEFORE),
                                                          pipeline.retriever.vectors, pipeline.retriever.embedder,
                                                          pipeline.retriever.graph)}
    seconds: dict[str, list[float]] = {name: [] for name in retrievers}
    for number, question in enumerate(questions):
        text = question["question"]
        query = router.query_vector(text)
        domains = [router.route(text, query=query).domain or question["domain"]]
        names = list(retrievers) if number % 2 == 0 else list(reversed(retrievers))  # alternate who goes first
        for name in names:
            started = time.perf_counter()
            retrievers[name].retrieve(text, domains, query)
            seconds[name].append(time.perf_counter() - started)
    rows = [[name, *percentile_cells(times, scale=1000)] for name, times in seconds.items()]
    product, before = (float(np.percentile(times, 50)) for times in seconds.values())
    group = f"retrieval time per question, {len(questions)} demo questions"
    record(group, "fused list before issue 35, p50", 1000 * before, "ms", better="lower")
    record(group, "walk ranks (the product), p50", 1000 * product, "ms", "fused list before issue 35, p50", "lower")
    print_table(f"Table 4: retrieval time per question (Retriever.retrieve, facts and the walk included; "
                f"{settings.dense_candidates} dense and {settings.lexical_candidates} BM25 candidates)",
                ["ranking", "n", "p50 ms", "p95 ms", "mean ms"], rows, [f"p50 ratio, the product / before: {product / before:.2f}"])


# --- main ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=DEFAULT_QUESTIONS,
                        help=f"demo questions answered for table 1 (default {DEFAULT_QUESTIONS})")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS,
                        help=f"the max_new_tokens setting for table 1 (default {DEFAULT_MAX_NEW_TOKENS})")
    parser.add_argument("--k", type=int, default=DEFAULT_K,
                        help=f"top passages counted for the hit rates (default {DEFAULT_K})")
    parser.add_argument("--all-threads", action="store_true",
                        help="do not hold the threads other than the engine's to one OpenMP thread (as before issue 38)")
    args = parser.parse_args(argv)
    if args.questions < 1 or args.max_new_tokens < 1 or args.k < 1:
        parser.error("--questions, --max-new-tokens and --k must be >= 1")

    started = time.perf_counter()
    questions = demo_questions()
    print(f"chat_latency: {os.cpu_count()} CPUs, {len(questions)} demo questions, --questions {args.questions}, "
          f"--max-new-tokens {args.max_new_tokens}, --k {args.k}", flush=True)
    if args.all_threads:
        print("  every thread may use all cores (share_cores_with_engine not called)", flush=True)
    else:  # as make run does, before any torch work
        from assistant.serving.engine_base import share_cores_with_engine
        from assistant.settings import load_settings

        print(f"  threads other than the engine's held to one OpenMP thread: "
              f"{share_cores_with_engine(load_settings(_env_file=None))}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-chat-") as scratch:
        demo = index_demo(Path(scratch) / "data", args.max_new_tokens)
        try:
            print(f"  indexed the demo domains with their graph in {demo.index_s:.1f}s; loading the base model ...",
                  flush=True)
            pipeline = build_pipeline(demo)
            warm_up_s = warm_up(pipeline)
            timed_questions = spread_over_domains(questions, args.questions)
            log = decode_in_pipeline.SubmissionLog(pipeline.engine)
            answers, submissions = answer_questions(pipeline, timed_questions, log)
            outcomes = retrieve_all(pipeline, questions)
            latency_table(answers, timed_questions, demo.settings, warm_up_s)
            decode_in_pipeline.report(decode_in_pipeline.pair_with_engine_alone(log, answers, submissions))
            hit_rate_table(outcomes, demo.settings, args.k)
            routing_table(outcomes, demo.settings)
            retrieval_time_table(pipeline, questions)
        finally:
            demo.connection.close()  # also stops the embedded server
    print(f"\ntotal wall time {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
