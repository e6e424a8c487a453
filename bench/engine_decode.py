"""The serving engine alone (no HTTP): decode tokens/s with 1, 2, 4 and 8 requests decoded
together, for short prompts and for prompts as long as the product's (~900 tokens of evidence).
Prints a table; asserts nothing.

Run from the repository root (``make bench`` does)::

    .venv/bin/python bench/engine_decode.py [--batches 1,2,4,8] [--new-tokens 48] [--long-tokens 900]

The default base model is converted into a temporary data dir (./data is never touched) and
served by ``assistant.serving.engine.Engine`` as the app serves it (float32 on CPU, its prompts
prefilled in bfloat16 where the CPU multiplies in it natively; CUDA when there is
one). For each batch size B, the engine's thread is held while B requests are submitted (each
asks to explain a different demo passage; the long ones carry the passage's document repeated to
the prompt length), then released, so all B start together; the engine's own counters give the
decode time and the tokens decoded in it (a row that reaches its end token leaves, so the table
shows the mean rows per step actually decoded). Prefill (each prompt's forward pass) is timed
apart: it is compute-bound and does not batch. A last table times the long prompts' prefill in
float32 and in bfloat16 (``engine_prefill_dtype``), alternating, one prompt at a time: the
headline is float32 seconds / bfloat16 seconds (on a CPU without bfloat16 matrix units "auto"
keeps float32, and the bfloat16 row shows why).
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

from bench.results import print_table  # noqa: E402
from bench.results import record  # noqa: E402

DEMO = REPO / "assistant" / "demo" / "corpora"
WAIT_S = 600


def passages() -> list[str]:
    return [path.read_text(encoding="utf-8") for path in sorted(DEMO.glob("*/*.md"))]


def prompts(engine, count: int, long_tokens: int | None) -> list[list[dict]]:
    texts = passages()
    chosen = []
    for text in (texts * (count // len(texts) + 1))[:count]:
        if long_tokens:
            ids = engine.tokenizer((text + "\n\n") * 20, add_special_tokens=False)["input_ids"][:long_tokens]
            text = engine.tokenizer.decode(ids)
        chosen.append([{"role": "user", "content": f"{text}\n\nExplain the passage above in detail."}])
    return chosen


def run_batch(engine, messages: list[list[dict]], new_tokens: int) -> dict:
    before = (engine.stats.decode_s, engine.stats.decode_rows, engine.stats.decode_steps,
              engine.stats.prefill_s, engine.stats.prefill_tokens)
    release = threading.Event()
    busy = engine.call_later(lambda: release.wait(WAIT_S))
    handles = [engine.submit(m, max_new_tokens=new_tokens, timeout_s=WAIT_S) for m in messages]
    release.set()
    busy.result(WAIT_S)
    started = time.perf_counter()
    for handle in handles:
        handle.text()
    wall_s = time.perf_counter() - started
    s = engine.stats
    decode_s, rows, steps = s.decode_s - before[0], s.decode_rows - before[1], s.decode_steps - before[2]
    return {"batch": len(messages), "decode_tokens_per_s": rows / decode_s if decode_s else 0.0,
            "step_ms": 1000 * decode_s / steps if steps else 0.0, "mean_rows": rows / steps if steps else 0.0,
            "prefill_s": (s.prefill_s - before[3]) / len(messages),
            "prompt_tokens": (s.prefill_tokens - before[4]) / len(messages), "wall_s": wall_s,
            "tokens": sum(h.result.new_tokens for h in handles)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--long-tokens", type=int, default=900, help="prompt length of the long case")
    parser.add_argument("--rounds", type=int, default=6, help="long prompts prefilled in each precision")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]

    from assistant.serving.engine import Engine
    from assistant.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="bench-engine-") as scratch:
        settings = load_settings(data_dir=Path(scratch) / "data", _env_file=None, engine_max_batch=max(batches),
                                 engine_prefill_tokens_per_step=10 ** 6)
        engine = Engine(settings, load_registered=False)
        try:
            engine.submit([{"role": "user", "content": "Hello."}], max_new_tokens=4).text()  # warm-up
            for label, long_tokens in (("short prompts", None), (f"~{args.long_tokens}-token prompts", args.long_tokens)):
                rows = [run_batch(engine, prompts(engine, b, long_tokens), args.new_tokens) for b in batches]
                report(label, rows, args, engine)
            report_precisions(compare_precisions(engine, prompts(engine, args.rounds, args.long_tokens)), args)
        finally:
            engine.close()


def report(label: str, rows: list[dict], args, engine) -> None:
    first = rows[0]
    table = [[str(r["batch"]), f"{r['mean_rows']:.2f}", f"{r['step_ms']:.0f}", f"{r['decode_tokens_per_s']:.1f}",
              f"{r['decode_tokens_per_s'] / first['decode_tokens_per_s']:.2f}x", f"{r['prompt_tokens']:.0f}",
              f"{r['prefill_s']:.2f}"] for r in rows]
    device = "cuda" if engine.pool.model.device.type == "cuda" else f"CPU, {os.cpu_count()} cores"
    print_table(f"Serving engine alone, {label}: decode tokens/s by batch ({device}, up to {args.new_tokens} new tokens)",
                ["batch", "rows/step", "step ms", "decode tokens/s", f"vs batch {first['batch']}", "prompt tokens",
                 "prefill s each"], table,
                ["decode tokens/s = tokens decoded in batched steps / time in those steps (the first token of each "
                 "request comes from its prefill and is not counted)",
                 "rows/step < batch: rows that reached their end token left the batch early"])
    group = f"serving engine, {label}"
    for r in rows:
        record(group, f"decode tokens/s, batch {r['batch']}", r["decode_tokens_per_s"], "tokens/s",
               baseline=None if r is first else f"decode tokens/s, batch {first['batch']}", better="higher")


PRECISIONS = ("float32", "bfloat16")


def compare_precisions(engine, messages: list[list[dict]]) -> dict[str, list[float]]:
    """Each prompt prefilled (one new token) in both precisions in turn, the order swapped every
    round so that neither always runs second; seconds of prefill per prompt."""
    seconds: dict[str, list[float]] = {precision: [] for precision in PRECISIONS}
    for round_number, message in enumerate(messages):
        order = PRECISIONS if round_number % 2 == 0 else PRECISIONS[::-1]
        for precision in order:
            engine.settings.engine_prefill_dtype = precision  # read by the engine for each new request
            handle = engine.submit(message, max_new_tokens=1, timeout_s=WAIT_S)
            handle.text()
            seconds[precision].append(handle.result.prefill_s)
    engine.settings.engine_prefill_dtype = "auto"
    return seconds


def report_precisions(seconds: dict[str, list[float]], args) -> None:
    median = {precision: statistics.median(values) for precision, values in seconds.items()}
    table = [[precision, str(len(values)), f"{median[precision]:.3f}", f"{min(values):.3f}", f"{max(values):.3f}",
              f"{median['float32'] / median[precision]:.2f}x"] for precision, values in seconds.items()]
    print_table(f"Prefill of ~{args.long_tokens}-token prompts by precision (engine_prefill_dtype; decode steps float32)",
                ["precision", "prompts", "p50 s", "min s", "max s", "speed vs float32"], table,
                ["the same prompts in both precisions, alternating which runs first"])
    record("serving engine, prefill precision", "prefill s per prompt, float32", median["float32"], "s",
           better="lower")
    record("serving engine, prefill precision", "prefill s per prompt, bfloat16", median["bfloat16"], "s",
           baseline="prefill s per prompt, float32", better="lower")


if __name__ == "__main__":
    main()
