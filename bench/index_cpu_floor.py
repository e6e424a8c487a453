"""How fast indexing with the graph could be on this machine: the CPU work each stage needs,
measured one stage at a time, against embedding the chunks alone. Prints a table; asserts nothing.

Run from the repository root (``make bench`` does)::

    .venv/bin/python bench/index_cpu_floor.py [--size 1]

Indexing with the graph does three kinds of CPU work the embedder alone does not:

- spaCy extraction of every chunk (``SpacyExtractor.extract``: the parser dominates);
- embedding the entity names fusion compares (``Embedder.encode`` on the distinct names);
- the embedding of the chunks itself, which is the baseline.

Each is timed on one thread (``torch.set_num_threads(1)``; spaCy uses one anyway), which gives
its CPU seconds. However well the stages overlap, the whole index cannot take less than their
sum divided by the cores, so ``embedding alone / (CPU seconds / cores)`` bounds the speed
ratio that issue 18 asks to be at least 0.75. The corpus is the one of ``bench/index_scale.py``
(real text, ``--size`` quarters of it). Fusion's own matching, the graph write, FAISS and BM25
are left out: they only lower the bound further.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

from bench.index_scale import corpus_of_size, demo_documents, python_reference_documents, quarters  # noqa: E402
from bench.results import print_table, record  # noqa: E402

GROUP = "indexing speed, real text with the graph"
GOAL = 0.75  # issue 18: full indexing at least this share of the embedder's own speed


def chunks_of(documents: list[dict], settings, embedder) -> list:
    from indexing.chunking import chunk_document
    from indexing.corpus import Document

    chunks = []
    for d in documents:
        document = Document(d["id"], "scale", d["title"], d["text"], d["id"])
        chunks += chunk_document(document, embedder.count_tokens, settings.chunk_tokens, settings.chunk_overlap_tokens)
    return chunks


def timed(work) -> tuple[float, object]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1, help="quarters of the index_scale corpus, 1-4 (default 1)")
    args = parser.parse_args(argv)

    import torch

    from assistant.settings import load_settings
    from indexing.embedding import get_embedder
    from indexing.spacy_extractor import SpacyExtractor
    from indexing.spacy_model import load_spacy

    settings = load_settings()
    embedder = get_embedder(settings.embedder, settings.embed_batch_size)
    chunks = chunks_of(corpus_of_size(quarters(demo_documents() + python_reference_documents()), args.size),
                       settings, embedder)
    texts = [chunk.text for chunk in chunks]
    load_spacy()
    embedder.encode(["warm up the model"])
    threads = torch.get_num_threads()
    embed_alone, _ = timed(lambda: embedder.encode(texts))  # the baseline, on every thread, as index_scale times it
    extract_s, extractions = timed(lambda: SpacyExtractor().extract(chunks))
    names = sorted({m.name for e in extractions for m in e.entities})
    torch.set_num_threads(1)
    try:
        names_s, _ = timed(lambda: embedder.encode(names))
        chunks_s, _ = timed(lambda: embedder.encode(texts))
    finally:
        torch.set_num_threads(threads)
    cores = os.cpu_count() or 1
    cpu_seconds = extract_s + names_s + chunks_s
    floor = cpu_seconds / cores
    best = embed_alone / floor
    without_names = embed_alone / ((extract_s + chunks_s) / cores)
    rows = [["embed the chunks, all threads (the baseline)", f"{embed_alone:.1f}"],
            ["embed the chunks, one thread", f"{chunks_s:.1f}"],
            [f"embed the {len(names)} entity names, one thread", f"{names_s:.1f}"],
            ["spaCy extraction, one thread", f"{extract_s:.1f}"],
            ["CPU seconds, the three together", f"{cpu_seconds:.1f}"],
            [f"least wall time on {cores} cores (CPU seconds / cores)", f"{floor:.1f}"],
            ["best reachable indexing / embedding-alone speed", f"{best:.2f}"],
            ["the same if embedding the names cost nothing", f"{without_names:.2f}"]]
    print_table(f"Indexing's CPU floor ({args.size}x: {len(chunks)} chunks, {cores} CPUs, torch on {threads} threads;"
                f" goal {GOAL})", ["measure", "seconds / ratio"], rows)
    record(GROUP, f"best reachable indexing / embedding-alone speed on {cores} cores", best, "ratio", better="higher")


if __name__ == "__main__":
    main()
