"""Chunked prefill in the serving engine: how long a running answer waits between two tokens
while newcomers' prompts are prefilled, at 1 and at N sessions, with the prompts cut into parts
of a few tokens between decode steps (``engine_prefill_tokens_per_step``) against whole prompts
between steps (the engine before issue 38). Prints tables; asserts nothing.

Run from the repository root (``make bench`` does)::

    .venv/bin/python bench/engine_prefill.py [--sessions 8] [--per-session 3] [--budgets 64,128,256]

The default base model is converted into a temporary data dir (./data is never touched) and
served by ``assistant.serving.engine.Engine`` as the app serves it. Each session is a thread
that submits a request (a demo passage made as long as the product's grounded prompts, ~1,000
tokens, and a token limit between a quarter of ``--new-tokens`` and all of it, so answers end at
different times as the chat's do), reads its stream, and submits the next when it ends
(a closed loop, as bench/load.py's chat sessions). Every piece of text is timestamped as it
arrives; a request's inter-token gaps are the times between its pieces after the first (its
first token comes from its own prefill). Each budget runs on the same engine, one after the
other: 1 session, then ``--sessions``. The headline: p95 gap at N sessions / p95 gap at 1
session (issue 38's goal: at most 3), and requests/s at N / requests/s at 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from bench.engine_decode import prompts  # noqa: E402
from bench.results import print_table, record  # noqa: E402

WHOLE = 10 ** 6  # a budget no prompt reaches: whole prompts between two steps, as before chunked prefill
WAIT_S = 600
GROUP = "serving engine, chunked prefill"


@dataclass
class Level:
    budget: int
    sessions: int
    gaps_ms: list[float] = field(default_factory=list)
    first_token_s: list[float] = field(default_factory=list)
    requests: int = 0
    wall_s: float = 0.0
    tokens: int = 0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.wall_s if self.wall_s else 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def session(engine, messages: list[list[dict]], limits: list[int], level: Level, lock: threading.Lock) -> None:
    for message, new_tokens in zip(messages, limits):
        handle = engine.submit(message, max_new_tokens=new_tokens, timeout_s=WAIT_S)
        stamps = [time.perf_counter() for _ in handle]
        with lock:
            level.gaps_ms += [1000 * (later - earlier) for earlier, later in zip(stamps, stamps[1:])]
            level.first_token_s.append(handle.result.first_token_s or 0.0)
            level.requests += 1
            level.tokens += handle.result.new_tokens


def run_level(engine, budget: int, sessions: int, per_session: int, long_tokens: int, new_tokens: int) -> Level:
    engine.settings.engine_prefill_tokens_per_step = budget  # read by the engine at every loop
    level, lock = Level(budget, sessions), threading.Lock()
    chosen = prompts(engine, sessions * per_session, long_tokens)
    # Answers of different lengths, as the chat's are (a facts-first answer stops early): the
    # sessions drift apart, so newcomers arrive while others decode.
    limits = [new_tokens // 4 + (i * 7919) % (new_tokens - new_tokens // 4 + 1) for i in range(len(chosen))]
    threads = [threading.Thread(target=session, args=(engine, chosen[i::sessions], limits[i::sessions], level, lock))
               for i in range(sessions)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    level.wall_s = time.perf_counter() - started
    return level


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--per-session", type=int, default=3, help="requests each session makes, one after another")
    parser.add_argument("--budgets", default="64,128,256", help="prompt tokens between two decode steps")
    parser.add_argument("--long-tokens", type=int, default=1000, help="prompt length (the product's ~1,070)")
    parser.add_argument("--new-tokens", type=int, default=64,
                        help="the longest answer, as /ask asks (max_new_tokens); each request's limit is "
                             "spread between a quarter of it and all of it")
    args = parser.parse_args(argv)
    budgets = [WHOLE] + [int(b) for b in args.budgets.split(",")]

    from assistant.serving.engine import Engine
    from assistant.serving.engine_base import share_cores_with_engine
    from assistant.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="bench-prefill-") as scratch:
        settings = load_settings(data_dir=Path(scratch) / "data", _env_file=None, engine_max_batch=args.sessions)
        share_cores_with_engine(settings)  # as the app runs: the session threads never start torch's team
        engine = Engine(settings, load_registered=False)
        try:
            engine.submit([{"role": "user", "content": "Hello."}], max_new_tokens=4).text()  # warm-up
            levels = []
            for budget in budgets:
                for sessions in (1, args.sessions):
                    levels.append(run_level(engine, budget, sessions, args.per_session, args.long_tokens,
                                            args.new_tokens))
                    print(f"  budget {label(budget)}, {sessions} sessions: {levels[-1].requests} requests "
                          f"in {levels[-1].wall_s:.1f} s", flush=True)
        finally:
            engine.close()
    report(levels, args)


def label(budget: int) -> str:
    return "whole prompts" if budget == WHOLE else f"{budget} tokens"


def report(levels: list[Level], args) -> None:
    rows = []
    for level in levels:
        rows.append([label(level.budget), str(level.sessions), str(level.requests),
                     f"{percentile(level.gaps_ms, 0.5):.0f}", f"{percentile(level.gaps_ms, 0.95):.0f}",
                     f"{statistics.median(level.first_token_s):.2f}", f"{level.requests_per_s:.3f}"])
    print_table(f"Serving engine, ~{args.long_tokens}-token prompts, up to {args.new_tokens} new tokens, "
                f"closed-loop sessions (CPU, {os.cpu_count()} cores)",
                ["prefill between steps", "sessions", "requests", "gap p50 ms", "gap p95 ms",
                 "first token p50 s", "requests/s"], rows,
                ["gap: time between two pieces of one answer's stream after its first",
                 "whole prompts: every waiting prompt prefilled in full before the next decode step (before issue 38)"])
    ratios = []
    for one, many in zip(levels[0::2], levels[1::2]):
        gap_ratio = percentile(many.gaps_ms, 0.95) / max(percentile(one.gaps_ms, 0.95), 1e-9)
        rate_ratio = many.requests_per_s / max(one.requests_per_s, 1e-9)
        ratios.append([label(one.budget), f"{gap_ratio:.2f}",
                       f"{percentile(many.gaps_ms, 0.5) / max(percentile(one.gaps_ms, 0.5), 1e-9):.2f}",
                       f"{rate_ratio:.2f}"])
        name = f"p95 inter-token gap, {many.sessions} sessions / 1 session, {label(one.budget)}"
        record(GROUP, name, gap_ratio, "x", better="lower")
        record(GROUP, f"requests/s, {many.sessions} sessions / 1 session, {label(one.budget)}", rate_ratio, "x",
               better="higher")
    print_table(f"{args.sessions} sessions against 1 (goal: p95 gap ratio <= 3)",
                ["prefill between steps", "p95 gap ratio", "p50 gap ratio", "requests/s ratio"], ratios)


if __name__ == "__main__":
    main()
