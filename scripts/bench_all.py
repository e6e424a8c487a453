"""Run every bench script and print one combined table (what ``make bench`` calls).

    .venv/bin/python scripts/bench_all.py [--full] [--only NAME,NAME]

Each ``bench/*.py`` that runs as a script (has a ``__main__`` block) runs in its own process with
this interpreter, its output streamed as it comes; ``BENCH_RESULTS`` names a temporary file where
the scripts' ``bench.results.record`` calls collect their headline numbers. At the end one
Markdown table shows them all, each row with its ratio to its baseline from the same run. A
failing script is reported and the others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import argparse  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from bench.results import RESULTS_ENV, combined_table, read_rows  # noqa: E402

BENCH_DIR = REPO / "bench"
# Shorter than the scripts' own defaults, so that `make bench` stays well under 25 minutes on 2
# cores; --full drops them. 1000 generated documents (~1,800 chunks) still index for about a
# minute, long enough for a steady chunks/s; 150 requests still give each load level 50 (the
# default 500 take ~17 minutes at ~2 s a request).
QUICK_ARGS = {"index_throughput.py": ["--docs", "1000"], "load.py": ["--requests", "150"]}
# Scripts that run more than once: each extra run with these arguments (--full: also).
EXTRA_RUNS = {"load.py": [["--endpoint", "openai", "--requests", "80"]]}


@dataclass
class Outcome:
    script: str
    returncode: int
    seconds: float


def bench_scripts(only: set[str] | None = None) -> list[Path]:
    """bench/*.py files meant to run (helpers such as results.py have no __main__ block)."""
    scripts = [path for path in sorted(BENCH_DIR.glob("*.py"))
               if '__name__ == "__main__"' in path.read_text(encoding="utf-8")]
    if only:
        scripts = [path for path in scripts if path.stem in only or path.name in only]
    return scripts


def run_script(script: Path, args: list[str], results: Path) -> Outcome:
    print(f"\n== {script.relative_to(REPO)} {' '.join(args)}".rstrip(), flush=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(script), *args], cwd=REPO, env={**os.environ, RESULTS_ENV: str(results)})
    outcome = Outcome(script.name, done.returncode, time.perf_counter() - started)
    if outcome.returncode:
        print(f"== {script.name} FAILED (exit {outcome.returncode})", flush=True)
    return outcome


def summary(outcomes: list[Outcome], results: Path) -> str:
    ran = ", ".join(f"{o.script} {o.seconds:.0f}s{'' if o.returncode == 0 else ' FAILED'}" for o in outcomes)
    return "\n".join(["", "## All benchmarks (ratio = value / its baseline's value, measured in this run)", "",
                      combined_table(read_rows(results)), "", f"scripts: {ran}",
                      f"total {sum(o.seconds for o in outcomes):.0f}s on {os.cpu_count()} CPUs"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="run each script with its own (longer) defaults")
    parser.add_argument("--only", help="comma-separated script names to run (e.g. graph_write,hot_load)")
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",")} if args.only else None
    scripts = bench_scripts(only)
    if not scripts:
        parser.error(f"no bench script matches {args.only!r}")
    with tempfile.TemporaryDirectory(prefix="bench-results-") as scratch:
        results = Path(scratch) / "results.jsonl"
        outcomes = []
        for script in scripts:
            outcomes.append(run_script(script, [] if args.full else QUICK_ARGS.get(script.name, []), results))
            outcomes += [run_script(script, extra, results) for extra in EXTRA_RUNS.get(script.name, [])]
        print(summary(outcomes, results), flush=True)
    return 1 if any(o.returncode for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
