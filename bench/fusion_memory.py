"""Time and memory of fuzzy entity matching (``indexing.entity_resolution._fuzzy_pairs``):
every key x key pair scored in row blocks of at most ``FUZZY_BLOCK_CELLS`` cells (what fusion did
from issue 15 to issue 18) vs the segment filter that proposes candidates and scores only
those. Prints a table; asserts nothing.

Run from the repository root (``make bench`` does)::

    .venv/bin/python bench/fusion_memory.py [--sizes 20000,50000] [--all-pairs-max 50000]

The keys are synthetic entity names (2-3 random words from a small vocabulary, a tenth with a
number, a third with a one-letter typo variant, so that the default cutoff finds real pairs),
sorted as ``fuse`` sorts them: harder for the filter than real names, which share fewer pieces
(``bench/index_scale.py`` measures fusion on real text). Each measurement runs in its own child
process, so its peak resident memory (``ru_maxrss``) belongs to it alone; the table shows the
peak growth over the process's memory just before matching, the pairs scored and the wall time,
and checks that both variants find the same pairs.
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
DEFAULT_ALL_PAIRS_MAX = 50_000  # all pairs of 50,000 keys take about a minute on 2 cores
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


def all_pairs(keys: list[str], params) -> tuple[list[tuple[str, str]], int]:
    """The baseline: every pair i < j scored, in row blocks of at most params.fuzzy_block_cells
    cells (rows start..stop against columns start..n); returns the pairs and the cells scored."""
    import numpy as np
    from rapidfuzz import fuzz, process

    from indexing.entity_resolution import _may_be_same

    pairs, cells, start, n = [], 0, 0, len(keys)
    while start < n - 1:
        stop = min(n, start + max(1, params.fuzzy_block_cells // (n - start)))
        scores = process.cdist(keys[start:stop], keys[start:], scorer=fuzz.ratio,
                               score_cutoff=params.fuzzy_min_ratio, workers=1)
        cells += scores.size
        rows, cols = np.nonzero(scores)
        right = cols > rows
        for i, j in zip((rows[right] + start).tolist(), (cols[right] + start).tolist()):
            if _may_be_same(keys[i], keys[j], params):
                pairs.append((keys[i], keys[j]))
        start = stop
    return pairs, cells


def measure(variant: str, n: int) -> dict:
    from indexing.entity_resolution import FusionParams, FuzzyStats, _fuzzy_pairs

    keys = entity_keys(n)
    params = FusionParams()
    before = peak_rss_mb()
    started = time.perf_counter()
    if variant == "all":
        pairs, scored = all_pairs(keys, params)
    else:
        stats = FuzzyStats()
        pairs = list(_fuzzy_pairs(keys, params, stats))
        scored = stats.candidates + stats.cells
    seconds = time.perf_counter() - started
    return {"variant": variant, "n": n, "seconds": seconds, "peak_growth_mb": peak_rss_mb() - before,
            "scored": scored, "pairs": len(pairs), "pairs_digest": hashlib.sha256(json.dumps(pairs).encode()).hexdigest()}


def run_child(variant: str, n: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", variant, "--n", str(n)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- output -----------------------------------------------------------------------------------


LABELS = {"all": "all pairs (row blocks)", "segments": "segment filter"}


def row_cells(result: dict, same: str) -> list[str]:
    return [f"{result['n']:,} keys, {LABELS[result['variant']]}", f"{result['peak_growth_mb']:.0f}",
            f"{result['scored'] / 1e6:.2f}M", f"{result['seconds']:.2f}", f"{result['pairs']:,}", same]


def record_rows(results: dict[tuple[str, int], dict]) -> None:
    for (variant, n), result in results.items():
        name = f"{n:,} keys, {LABELS[variant]}"
        baseline = f"{n:,} keys, {LABELS['all']}" if variant == "segments" and ("all", n) in results else None
        record(GROUP_MEMORY, name, result["peak_growth_mb"], "MB peak RSS growth", baseline, better="lower")
        record(GROUP_TIME, name, result["seconds"], "s", baseline, better="lower")


# --- main ----------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="comma-separated key counts")
    parser.add_argument("--all-pairs-max", type=int, default=DEFAULT_ALL_PAIRS_MAX,
                        help=f"largest key count to score all pairs of (default {DEFAULT_ALL_PAIRS_MAX:,})")
    parser.add_argument("--child", choices=tuple(LABELS), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.n)))
        return
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    started = time.perf_counter()
    print(f"fusion_memory: {os.cpu_count()} CPUs, sizes {sizes}, all pairs up to {args.all_pairs_max:,} keys", flush=True)
    results: dict[tuple[str, int], dict] = {}
    for n in sizes:
        for variant in ["segments"] + (["all"] if n <= args.all_pairs_max else []):
            results[(variant, n)] = run_child(variant, n)
            print(f"  {n:,} keys, {LABELS[variant]}: {results[(variant, n)]['seconds']:.1f}s", flush=True)
    rows = []
    for (variant, n), result in results.items():
        reference = results.get(("all", n))
        same = "-" if reference is None or variant == "all" else (
            "yes" if reference["pairs_digest"] == result["pairs_digest"] else "NO")
        rows.append(row_cells(result, same))
    skipped = [f"{n:,}" for n in sizes if ("all", n) not in results]
    print_table("Fuzzy entity matching: all pairs vs the segment filter (rapidfuzz, workers=1)",
                ["keys, variant", "peak RSS growth MB", "pairs scored", "time s", "pairs found", "same pairs"], rows,
                [f"all pairs not scored for {', '.join(skipped)} keys (over --all-pairs-max)"] if skipped else [])
    record_rows(results)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
