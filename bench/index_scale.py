"""Indexing at scale on real text: seconds per stage at 1x, 2x and 4x of a corpus. Prints tables;
asserts nothing.

Run from the repository root (``make bench`` does)::

    .venv/bin/python bench/index_scale.py [--sizes 1,2,4]

The text is real prose that ships with the project and with Python, never repeated: the demo
corpora (84 documents on finance, law and medicine) and the Python language reference of the
standard library's ``pydoc_data.topics`` (79 topics, 78 distinct, cut at paragraphs into sections of about the
demo documents' size). The documents are shuffled once (seeded) and dealt into four quarters of
about equal length; 1x is the first quarter, 2x the first two, 4x all of them, indexed as one
domain, so a larger size holds more distinct names, as a larger corpus would.

Each size is indexed from scratch (``indexing.pipeline.index_source`` with the knowledge graph on
an embedded graph server of its own, started before the clock) in a fresh data dir. The table
shows the pipeline's own stage times (``IndexReport.stage_seconds``): read, clean, chunk, embed,
FAISS, BM25, extract (in a thread beside embed, so the stages add up to more than the whole),
extract wait (what was left of it after BM25), fuse, graph write, walk. Then, at each size:

- embedding alone: ``embedder.encode`` on the same chunks, the baseline of indexing speed;
- fusion's peak memory: ``entity_resolution.fuse`` run again on the version's saved extractions
  under ``tracemalloc`` (Python and NumPy allocations; timed by the pipeline, not here, because tracing
  slows Python code down).

The largest size is then re-indexed with one sentence added to one document: what an admin's
re-index costs when the extractions, chunk vectors and name vectors of the rest are reused.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402

from bench.results import print_table, record  # noqa: E402

DEFAULT_SIZES = (1, 2, 4)
SEED = 18
QUARTERS = 4
CHANGE = "\n\nThis paragraph was added for the re-index: the Bank of Lisbon lent to the Porto Wine Company in 1761."
WALK_QUESTIONS = 24  # questions whose graph walks are timed at each size
SECTION_CHARS = 4000  # a pydoc topic is cut at paragraphs into sections of about this length
DOMAIN = "scale"
GROUP = "indexing scale"
SPEED_GROUP = "indexing speed, real text with the graph"
MB = 1024 * 1024


# --- the corpus -----------------------------------------------------------------------------------

def demo_documents() -> list[dict]:
    from assistant.settings import DEMO_CORPORA_DIR
    from indexing.corpus import read_corpus

    documents = []
    for folder in sorted(p for p in Path(DEMO_CORPORA_DIR).iterdir() if p.is_dir()):
        for document in read_corpus(folder, folder.name).documents:
            documents.append({"id": f"{folder.name}/{document.id}", "title": document.title, "text": document.text})
    return documents


def python_reference_documents() -> list[dict]:
    """The Python language reference topics, cut at blank lines into sections of about
    SECTION_CHARS characters (a few topics are 50 KB; most demo documents are 3-4 KB)."""
    from pydoc_data.topics import topics

    documents, seen = [], set()
    for name in sorted(topics):
        if topics[name] in seen:  # "if" and "else" share one text
            continue
        seen.add(topics[name])
        paragraphs = [p.strip() for p in topics[name].split("\n\n") if p.strip()]
        sections, current = [], []
        for paragraph in paragraphs:
            current.append(paragraph)
            if sum(len(p) for p in current) >= SECTION_CHARS:
                sections.append(current)
                current = []
        if current:
            sections.append(current)
        for number, section in enumerate(sections):
            documents.append({"id": f"python/{name}-{number}", "title": f"Python: {name} ({number + 1})",
                              "text": "\n\n".join(section)})
    return documents


def quarters(documents: list[dict]) -> list[list[dict]]:
    """Shuffled once, then each document to the quarter with the fewest characters so far."""
    shuffled = list(documents)
    random.Random(SEED).shuffle(shuffled)
    parts: list[list[dict]] = [[] for _ in range(QUARTERS)]
    lengths = [0] * QUARTERS
    for document in shuffled:
        smallest = lengths.index(min(lengths))
        parts[smallest].append(document)
        lengths[smallest] += len(document["text"])
    return parts


def corpus_of_size(parts: list[list[dict]], size: int) -> list[dict]:
    return [document for part in parts[:size] for document in part]


# --- one size -------------------------------------------------------------------------------------

@dataclass
class SizeRun:
    size: int
    documents: int
    characters: int
    chunks: int = 0
    entity_keys: int = 0  # distinct mention keys fusion resolved
    entities: int = 0
    facts: int = 0
    seconds: float = 0.0  # index_source, end to end
    stages: dict[str, float] = field(default_factory=dict)
    embed_alone_s: float = 0.0
    fusion_peak_mb: float = 0.0
    reindex_seconds: float = 0.0  # the same corpus again with one document changed (largest size only)
    reindex_stages: dict[str, float] = field(default_factory=dict)
    reindex_names_embedded: int = 0
    names_embedded: int = 0
    walk_nodes: int = 0
    walk_edges: int = 0
    walk_ms: float = 0.0  # one question's graph walk (Personalized PageRank), median over WALK_QUESTIONS
    walk_edges_pushed: int = 0  # the walk's work: edges it pushed probability along, median
    power_ms: float = 0.0  # the baseline: power iteration over the whole graph, on the same seeds
    power_edges: int = 0  # its work: edges read (every edge, once per product), median
    walk_same_top5: int = 0  # questions whose five best passages the two agree on
    error: str | None = None


def write_corpus(path: Path, documents: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for document in documents:
            f.write(json.dumps({**document, "domain": DOMAIN}, ensure_ascii=False) + "\n")


def index_size(work: Path, documents: list[dict], size: int, embedder, reindex: bool = False) -> SizeRun:
    from assistant.settings import load_settings
    from indexing.graph_connection import GraphConnection
    from indexing.graph_store import GraphStore
    from indexing.pipeline import index_source

    run = SizeRun(size, len(documents), sum(len(d["text"]) for d in documents))
    folder = work / f"{size}x"
    folder.mkdir()
    corpus = folder / "corpus.jsonl"
    write_corpus(corpus, documents)
    settings = load_settings(data_dir=folder / "data", neo4j_uri=None)
    connection = GraphConnection.open(settings.graph_params)  # the embedded server starts here, before the clock
    try:
        graph = GraphStore(connection, settings.domains_dir)
        report = index_source(settings.indexing_params, corpus, DOMAIN, progress=False, embedder=embedder, graph=graph)
        if reindex and report.ok:
            changed = documents[:-1] + [{**documents[-1], "text": documents[-1]["text"] + CHANGE}]
            write_corpus(corpus, changed)
            again = index_source(settings.indexing_params, corpus, DOMAIN, progress=False, embedder=embedder, graph=graph)
            run.reindex_seconds, run.reindex_stages = again.seconds, dict(again.stage_seconds())
            run.reindex_names_embedded = again.domains[0].names_embedded if again.domains else 0
    finally:
        connection.close()
    domain = report.domains[0] if report.domains else None
    if domain is None or domain.error:
        run.error = domain.error if domain else "nothing indexed"
        return run
    run.seconds, run.stages = report.seconds, dict(report.stage_seconds())
    run.chunks, run.entities, run.facts = domain.chunks_total, domain.entities_total, domain.relations_total
    run.names_embedded = domain.names_embedded
    version_dir = settings.domains_dir / DOMAIN / "versions" / domain.version
    texts, extractions = saved_chunks_and_extractions(version_dir)
    started = time.perf_counter()
    embedder.encode(texts)
    run.embed_alone_s = time.perf_counter() - started
    run.entity_keys, run.fusion_peak_mb = fusion_memory(extractions, embedder, settings)
    walk_cost(settings, embedder, run)
    return run


def walk_cost(settings, embedder, run: SizeRun) -> None:
    """The retriever's graph walk on the version's walk graph, seeded as retrieval seeds it: the
    dense and BM25 candidates of each of the demo's first questions, scaled within their lists
    (assistant/answering/retrieval.py). Only the walk is timed, and beside it the baseline on the
    same seeds: the walk before it pushed (power iteration over the whole graph)."""
    from assistant.answering.retrieval import scaled_scores
    from indexing.graph_walk import WalkParams
    from indexing.vector_store import VectorStore

    index = VectorStore(settings.domains_dir).get(DOMAIN)
    walk_graph = index.walk_graph
    params = WalkParams(damping=settings.walk_damping, passage_seed_share=settings.walk_passage_seed_share)
    timings, baseline, pushed, products, same = [], [], [], [], 0
    for question in demo_questions()[:WALK_QUESTIONS]:
        seeds: dict[int, float] = {}
        for ranking in (index.search(embedder.encode([question])[0], settings.dense_candidates),
                        index.search_lexical(question, settings.lexical_candidates)):
            for hit, share in scaled_scores(ranking[:settings.walk_seed_passages]):
                position = index.position_of(hit.chunk_id)
                seeds[position] = seeds.get(position, 0.0) + share
        started = time.perf_counter()
        walked = walk_graph.walk({}, seeds, params, top_passages=settings.walk_candidates)
        timings.append(time.perf_counter() - started)
        pushed.append(walked.edges_pushed)
        started = time.perf_counter()
        ranked, rounds = power_iteration(walk_graph, seeds, params)
        baseline.append(time.perf_counter() - started)
        products.append(rounds * walk_graph.adjacency.nnz)
        same += [p for p, _ in walked.chunk_scores[:5]] == [p for p, _ in ranked[:5]]
    run.walk_nodes, run.walk_edges = walk_graph.size, walk_graph.adjacency.nnz // 2
    run.walk_ms, run.power_ms = 1000 * statistics.median(timings), 1000 * statistics.median(baseline)
    run.walk_edges_pushed, run.power_edges = int(statistics.median(pushed)), int(statistics.median(products))
    run.walk_same_top5 = same


def power_iteration(walk_graph, passage_seeds: dict[int, float], params, iterations: int = 50,
                    tolerance: float = 1e-7):
    """The walk as it was before it pushed: (1 - d) reset + d P x over the whole graph until the L1
    change is below ``tolerance``, then every passage ranked. Returns ((passage, probability)
    best first, products)."""
    nodes, weights = walk_graph._reset({}, passage_seeds, params.passage_seed_share)
    reset = np.zeros(walk_graph.size)
    reset[nodes] = weights
    dangling = walk_graph.degree == 0
    scores, d = reset.copy(), params.damping
    for rounds in range(1, iterations + 1):
        updated = (1 - d) * reset + d * (walk_graph.transition @ scores + scores[dangling].sum() * reset)
        change = np.abs(updated - scores).sum()
        scores = updated
        if change < tolerance:
            break
    order = np.argsort(-scores[:len(walk_graph.chunk_ids)], kind="stable")
    return [(int(i), float(scores[i])) for i in order if scores[i] > 0], rounds


def demo_questions() -> list[str]:
    """The demo evaluation set's questions, each domain's in turn."""
    from assistant.settings import DEMO_CORPORA_DIR

    questions = []
    for path in sorted((Path(DEMO_CORPORA_DIR).parent / "eval").glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            questions += [json.loads(line)["question"] for line in f if line.strip()]
    return questions


def saved_chunks_and_extractions(version_dir: Path):
    from indexing.version_reuse import EXTRACTIONS_FILE, load_extractions
    from indexing.vector_store import CHUNKS_FILE

    with open(version_dir / CHUNKS_FILE, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    extractions = load_extractions(version_dir / EXTRACTIONS_FILE)
    return [row["text"] for row in rows], [extractions[row["chunk_id"]] for row in rows]


def fusion_memory(extractions, embedder, settings) -> tuple[int, float]:
    """(distinct mention keys, peak traced MB) of fusing the saved extractions as the pipeline does."""
    from indexing.cooccurrence import cooccurrence_relations
    from indexing.entity_resolution import FusionParams, fuse

    keys = {m.key for e in extractions for m in e.entities if m.key}
    params = FusionParams(settings.fusion_fuzzy_min_ratio, settings.fusion_embedding_min_cosine)
    tracemalloc.start()
    try:
        fuse(extractions, derived=cooccurrence_relations(extractions), encode=embedder.encode, params=params)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return len(keys), peak / MB


# --- output ---------------------------------------------------------------------------------------

def print_tables(runs: list[SizeRun]) -> None:
    from indexing.stage_times import STAGES

    done = [r for r in runs if r.error is None]
    headers = ["stage"] + [f"{r.size}x s" for r in done] + [f"{r.size}x chunks/s" for r in done]
    rows = []
    for stage in STAGES:
        if not any(stage in r.stages for r in done):
            continue
        seconds = [r.stages.get(stage, 0.0) for r in done]
        rows.append([stage] + [f"{s:.2f}" for s in seconds]
                    + [f"{r.chunks / s:.0f}" if s else "-" for r, s in zip(done, seconds)])
    rows.append(["whole index (index_source)"] + [f"{r.seconds:.1f}" for r in done]
                + [f"{r.chunks / r.seconds:.1f}" for r in done])
    rows.append(["embedding alone (encode, same chunks)"] + [f"{r.embed_alone_s:.1f}" for r in done]
                + [f"{r.chunks / r.embed_alone_s:.1f}" for r in done])
    notes = []
    for r in done:
        if r.reindex_seconds:
            stages = ", ".join(f"{name} {seconds:.2f}" for name, seconds in r.reindex_stages.items() if seconds >= 0.05)
            notes.append(f"re-index of {r.size}x with one document changed: {r.reindex_seconds:.1f} s ({stages}); "
                         f"{r.reindex_names_embedded} of {r.names_embedded} entity names embedded again")
    sizes = ", ".join(f"{r.size}x: {r.documents} documents, {r.characters / 1e6:.2f} MB, {r.chunks} chunks, "
                      f"{r.entity_keys} entity keys -> {r.entities} entities, {r.facts} facts" for r in done)
    print_table(f"Indexing at scale, seconds per stage ({sizes}; {os.cpu_count()} CPUs)", headers, rows, notes)

    first, last = done[0], done[-1]
    factor = last.size / first.size
    notes = [f"{r.size}x: error {r.error}" for r in runs if r.error]
    growth = [["whole index", f"{last.seconds / first.seconds:.2f}"],
              ["fuse", f"{last.stages.get('fuse', 0) / max(first.stages.get('fuse', 0), 1e-9):.2f}"],
              ["corpus (characters)", f"{last.characters / first.characters:.2f}"],
              ["entity keys", f"{last.entity_keys / max(first.entity_keys, 1):.2f}"]]
    growth += [[f"{r.size}x: indexing / embedding-alone speed", f"{r.embed_alone_s / r.seconds:.2f}"] for r in done]
    growth += [[f"{r.size}x: fusion peak traced memory, MB", f"{r.fusion_peak_mb:.1f}"] for r in done]
    growth.append(["graph walk, ms per question", f"{last.walk_ms / max(first.walk_ms, 1e-9):.2f}"])
    growth.append(["graph walk, edges pushed per question", f"{last.walk_edges_pushed / max(first.walk_edges_pushed, 1):.2f}"])
    growth.append(["graph edges", f"{last.walk_edges / max(first.walk_edges, 1):.2f}"])
    for r in done:
        growth += [[f"{r.size}x: graph walk, ms per question ({r.walk_nodes} nodes, {r.walk_edges} edges)",
                    f"{r.walk_ms:.2f}"],
                   [f"{r.size}x: baseline, power iteration over the whole graph, ms", f"{r.power_ms:.2f}"],
                   [f"{r.size}x: edges pushed / baseline's edges read", f"{r.walk_edges_pushed} / {r.power_edges}"],
                   [f"{r.size}x: questions whose top 5 passages agree", f"{r.walk_same_top5} of {WALK_QUESTIONS}"]]
    print_table(f"Growth from {first.size}x to {last.size}x ({factor:.0f} times the text; linear is {factor:.1f})",
                ["measure", "value"], growth, notes)


def record_runs(runs: list[SizeRun]) -> None:
    done = [r for r in runs if r.error is None]
    if not done:
        return
    base = done[0]
    whole_base, fuse_base = f"whole index, seconds, {base.size}x", f"fusion, seconds, {base.size}x"
    for r in done:
        record(GROUP, f"whole index, seconds, {r.size}x", r.seconds, "s",
               None if r is base else whole_base, "lower")
        record(GROUP, f"fusion, seconds, {r.size}x", r.stages.get("fuse", 0.0), "s",
               None if r is base else fuse_base, "lower")
        record(GROUP, f"graph walk, power iteration (baseline), ms per question, {r.size}x", r.power_ms, "ms",
               better="lower")
        record(GROUP, f"graph walk, ms per question, {r.size}x", r.walk_ms, "ms",
               f"graph walk, power iteration (baseline), ms per question, {r.size}x", "lower")
    last = done[-1]
    if last.reindex_seconds:
        record(GROUP, f"re-index, one document changed, seconds, {last.size}x", last.reindex_seconds, "s",
               f"whole index, seconds, {last.size}x", "lower")
    embed_name = f"embedding alone, {last.size}x ({last.chunks} chunks)"
    record(SPEED_GROUP, embed_name, last.chunks / last.embed_alone_s, "chunks/s", better="higher")
    record(SPEED_GROUP, f"index_source with the graph, {last.size}x", last.chunks / last.seconds, "chunks/s",
           embed_name, "higher")
    record(SPEED_GROUP, f"fusion peak traced memory, {last.size}x", last.fusion_peak_mb, "MB", better="lower")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="comma-separated multiples of a quarter of the text, each 1-4 (default 1,2,4)")
    args = parser.parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if not sizes or min(sizes) < 1 or max(sizes) > QUARTERS:
        parser.error(f"--sizes must be between 1 and {QUARTERS}")

    from assistant.settings import load_settings
    from indexing.embedding import get_embedder

    started = time.perf_counter()
    parts = quarters(demo_documents() + python_reference_documents())
    settings = load_settings()
    embedder = get_embedder(settings.embedder, settings.embed_batch_size)
    embedder.encode(["warm up the model"])
    print(f"index_scale: {os.cpu_count()} CPUs, sizes {sizes}, quarters of "
          f"{', '.join(str(sum(len(d['text']) for d in p)) for p in parts)} characters", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    runs = []
    try:
        for size in sizes:
            run = index_size(work, corpus_of_size(parts, size), size, embedder, reindex=size == sizes[-1])
            print(f"  {size}x: {run.chunks} chunks in {run.seconds:.1f}s"
                  + (f" ERROR {run.error}" if run.error else ""), flush=True)
            runs.append(run)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_tables(runs)
    record_runs(runs)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
