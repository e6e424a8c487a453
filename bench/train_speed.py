"""LoRA training speed and memory of the default base: 4-bit NF4 (QLoRA) vs the unquantized base.
Prints a table; asserts nothing.

Run from the repository root (``make bench`` does)::

    .venv/bin/python bench/train_speed.py [--steps N] [--batch N] [--modes nf4,none]

Each mode runs in its own child process, so the peak resident memory (``ru_maxrss``) belongs to
that mode alone. Every step trains on the same realistic batch: chat-template examples in the
shape adapters/dataset.py writes (system line, numbered evidence, question, cited answer), on
whatever device ``adapters.base_model.training_device`` picks (CPU here). The base is converted
into a temporary data dir (./data is never touched) unless ``--data-dir`` names one.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from adapters import prompts  # noqa: E402
from adapters.example import Example  # noqa: E402
from bench.results import record  # noqa: E402

FACTS = ["Warfarin is a vitamin K antagonist", "Vitamin K reverse warfarin", "INR monitor warfarin dose"]
PASSAGE = ("Warfarin", "Warfarin is an anticoagulant used to prevent blood clots. Its effect is monitored with the "
                       "international normalized ratio, and vitamin K reverses it.")


def sample_examples(count: int) -> list[Example]:
    examples = []
    for i in range(count):
        evidence = prompts.number_evidence(FACTS, [PASSAGE])
        answer = prompts.cite("vitamin K", 2)
        messages = prompts.chat_messages("medicine", f"What reverses warfarin (case {i})?", evidence, answer)
        examples.append(Example(str(i), "grounded", str(i), messages, "vitamin K", "span"))
    return examples


def measure(data_dir: Path, quantization: str, steps: int, batch_size: int) -> dict:
    """Train LoRA for ``steps`` steps; tokens/s after one warm-up step, and memory figures."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    from adapters.base_model import load_model, load_tokenizer, resolve_base_model, training_device
    from adapters.batches import completion_loss, make_batches
    from assistant.settings import load_settings

    settings = load_settings(data_dir=data_dir, _env_file=None)
    base, device = resolve_base_model(settings.base_model, settings.models_dir), training_device()
    tokenizer = load_tokenizer(base)
    model = load_model(base, quantization, device)
    footprint = model.get_memory_footprint()
    if quantization == "nf4":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=device.startswith("cuda"))
    model = get_peft_model(model, LoraConfig(r=settings.lora_rank, lora_alpha=settings.lora_alpha,
                                             target_modules=list(settings.lora_target_modules), task_type="CAUSAL_LM"))
    model.train()  # as adapters/train.py: dropout on, and gradient checkpointing (CUDA) really used
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = make_batches(tokenizer, sample_examples(batch_size), batch_size, settings.train_max_tokens)[0]
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    seconds, losses = 0.0, []
    for step in range(steps + 1):
        started = time.perf_counter()
        loss, _ = completion_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if step:  # the first step pays one-off allocations
            seconds += time.perf_counter() - started
        losses.append(loss.item())
    return {"mode": quantization, "device": device, "steps": steps, "batch": batch_size,
            "tokens_per_step": batch.tokens, "tokens_per_s": batch.tokens * steps / seconds,
            "seconds_per_step": seconds / steps, "weights_mb": footprint / 1e6,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 1e6 if device.startswith("cuda") else None,
            "first_loss": losses[0], "last_loss": losses[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--modes", default="nf4,none")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.data_dir, args.child, args.steps, args.batch)))
        return
    with tempfile.TemporaryDirectory(prefix="train-bench-") as scratch:
        data_dir = args.data_dir or Path(scratch) / "data"
        rows, failed = [], []
        for mode in args.modes.split(","):
            done = subprocess.run([sys.executable, __file__, "--child", mode, "--steps", str(args.steps),
                                   "--batch", str(args.batch), "--data-dir", str(data_dir)],
                                  capture_output=True, text=True)
            if done.returncode:  # show why, and still measure the other modes
                print(f"train_speed: mode {mode} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}",
                      file=sys.stderr, flush=True)
                failed.append(mode)
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    if not rows:
        sys.exit(f"train_speed: every mode failed ({', '.join(failed)})")
    print(f"\nLoRA training of the default base, {rows[0]['steps']} steps of {rows[0]['batch']} examples "
          f"({rows[0]['tokens_per_step']} tokens/step) on {rows[0]['device']}")
    print(f"{'mode':<6} {'tokens/s':>9} {'s/step':>7} {'weights MB':>11} {'peak RSS MB':>12} {'peak GPU MB':>12} {'loss':>15}")
    for row in rows:
        gpu = f"{row['peak_gpu_mb']:.0f}" if row["peak_gpu_mb"] is not None else "-"
        print(f"{row['mode']:<6} {row['tokens_per_s']:>9.0f} {row['seconds_per_step']:>7.2f} {row['weights_mb']:>11.0f} "
              f"{row['peak_rss_mb']:>12.0f} {gpu:>12} {row['first_loss']:>6.2f} -> {row['last_loss']:<5.2f}")
    record_rows(rows)
    if failed:
        sys.exit(f"train_speed: mode(s) {', '.join(failed)} failed (see above)")


MODE_NAMES = {"nf4": "4-bit NF4", "none": "unquantized (float32)", "bf16": "bfloat16"}


def record_rows(rows: list[dict]) -> None:
    """For make bench: each mode's tokens/s and memory against the first unquantized mode's."""
    group = f"LoRA training on {rows[0]['device']}, batch {rows[0]['batch']}"
    baseline = next((MODE_NAMES.get(r["mode"], r["mode"]) for r in rows if r["mode"] != "nf4"), None)
    for row in rows:
        mode = MODE_NAMES.get(row["mode"], row["mode"])
        compared = None if mode == baseline or baseline is None else baseline
        record(group, f"{mode}, tokens/s", row["tokens_per_s"], "tokens/s", compared and f"{compared}, tokens/s",
               "higher")
        record(group, f"{mode}, weights", row["weights_mb"], "MB", compared and f"{compared}, weights", "lower")
        if row["peak_gpu_mb"] is not None:
            record(group, f"{mode}, peak GPU memory", row["peak_gpu_mb"], "MB",
                   compared and f"{compared}, peak GPU memory", "lower")


if __name__ == "__main__":
    main()
