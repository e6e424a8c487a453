"""Memory and time of fuzzy entity matching (``indexing.fusion._fuzzy_pairs``): the full key x key
score matrix (what fusion did before issue 15) vs row blocks of at most ``FUZZY_BLOCK_CELLS``
score cells. Prints a table; asserts nothing.

Run from the repository root (``make bench`` does)::

    .venv/bin/python bench/fusion_memory.py [--sizes 20000,50000] [--full-max-gb 4]

The keys are synthetic entity names (2-3 random words, a tenth with a number, a third with a
one-letter typo variant, so that the default cutoff finds real pairs), sorted as ``fuse`` sorts
them. Each measurement runs in its own child process, so its peak resident memory
(``ru_maxrss``) belongs to it alone; the table shows the peak growth over the process's memory
just before matching, the largest score array (``FuzzyStats``) and the wall time.

"full matrix" is the same function with a budget of n x n cells: one ``process.cdist(keys, keys)``,
exactly the old allocation. It runs only for sizes whose float32 matrix is under ``--full-max-gb``
(100,000 keys would need 40 GB); both variants find the same pairs, which the table checks.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import string  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

from bench.results import print_table, record  # noqa: E402

DEFAULT_SIZES = (20_000, 50_000)
DEFAULT_FULL_MAX_GB = 4.0
SCORE_BYTES = 4  # cdist's float32 scores
MB = 1024 * 1024
GROUP_MEMORY = "entity fusion memory"
GROUP_TIME = "entity fusion time"


# --- synthetic keys -----------------------------------------------------------------------------

def typo(word: str, rng: random.Random) -> str:
    at = rng.randrange(len(word))
    edit = rng.choice(("substitute", "delete", "insert"))
    if edit == "substitute":
        return word[:at] + rng.choice(string.ascii_lowercase) + word[at + 1:]
    if edit == "delete":
        return word[:at] + word[at + 1:]
    return word[:at] + rng.choice(string.ascii_lowercase) + word[at:]


def entity_keys(n: int, seed: int = 15) -> list[str]:
    rng = random.Random(seed)
    vocabulary = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 10))) for _ in range(3000)]
    keys: set[str] = set()
    while len(keys) < n:
        key = " ".join(rng.choices(vocabulary, k=rng.randint(2, 3)))
        if rng.random() < 0.1:
            key += f" {rng.randint(1, 9)}"
        keys.add(key)
        if rng.random() < 0.33:
            keys.add(typo(key, rng))
    return sorted(keys)[:n]


# --- measuring (in a child process) ---------------------------------------------------------------

def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def measure(variant: str, n: int) -> dict:
    from indexing.fusion import FusionParams, FuzzyStats, _fuzzy_pairs

    keys = entity_keys(n)
    params = FusionParams(fuzzy_block_cells=n * n) if variant == "full" else FusionParams()
    stats = FuzzyStats()
    before = peak_rss_mb()
    started = time.perf_counter()
    pairs = list(_fuzzy_pairs(keys, params, stats))
    seconds = time.perf_counter() - started
    rows, cols = stats.largest_block
    return {"variant": variant, "n": n, "seconds": seconds, "peak_growth_mb": peak_rss_mb() - before,
            "largest_block": [rows, cols], "largest_block_mb": rows * cols * SCORE_BYTES / MB,
            "blocks": stats.blocks, "cells": stats.cells, "pairs": len(pairs),
            "pairs_digest": hashlib.sha256(json.dumps(pairs).encode()).hexdigest()}


def run_child(variant: str, n: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", variant, "--n", str(n)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- output -----------------------------------------------------------------------------------


def row_cells(result: dict, same: str) -> list[str]:
    rows, cols = result["largest_block"]
    return [f"{result['n']:,} keys, {result['variant']}", f"{result['peak_growth_mb']:.0f}",
            f"{rows:,} x {cols:,} ({result['largest_block_mb']:.0f} MB)", str(result["blocks"]),
            f"{result['cells'] / 1e6:.0f}M", f"{result['seconds']:.1f}", f"{result['pairs']:,}", same]


def record_rows(results: dict[tuple[str, int], dict]) -> None:
    for (variant, n), result in results.items():
        name = f"{n:,} keys, {'full matrix' if variant == 'full' else 'row blocks'}"
        baseline = f"{n:,} keys, full matrix" if variant == "blocked" and ("full", n) in results else None
        record(GROUP_MEMORY, name, result["peak_growth_mb"], "MB peak RSS growth", baseline, better="lower")
        record(GROUP_TIME, name, result["seconds"], "s", baseline, better="lower")


# --- main ----------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="comma-separated key counts")
    parser.add_argument("--full-max-gb", type=float, default=DEFAULT_FULL_MAX_GB,
                        help=f"largest full score matrix to compute (default {DEFAULT_FULL_MAX_GB} GB)")
    parser.add_argument("--child", choices=("full", "blocked"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.n)))
        return
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    started = time.perf_counter()
    print(f"fusion_memory: {os.cpu_count()} CPUs, sizes {sizes}, full matrix up to {args.full_max_gb} GB", flush=True)
    results: dict[tuple[str, int], dict] = {}
    for n in sizes:
        variants = ["blocked"] + (["full"] if n * n * SCORE_BYTES <= args.full_max_gb * 1024 * MB else [])
        for variant in variants:
            results[(variant, n)] = run_child(variant, n)
            print(f"  {n:,} keys, {variant}: {results[(variant, n)]['seconds']:.1f}s", flush=True)
    rows = []
    for (variant, n), result in results.items():
        full = results.get(("full", n))
        same = "-" if full is None or variant == "full" else (
            "yes" if full["pairs_digest"] == result["pairs_digest"] else "NO")
        rows.append(row_cells(result, same))
    skipped = [f"{n:,}" for n in sizes if ("full", n) not in results]
    print_table("Fuzzy entity matching: full score matrix vs row blocks (rapidfuzz.cdist, workers=1)",
                ["keys, variant", "peak RSS growth MB", "largest score array", "blocks", "cells", "time s",
                 "pairs", "same pairs"], rows,
                [f"full matrix not computed for {', '.join(skipped)} keys (over --full-max-gb)"] if skipped else [])
    record_rows(results)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
