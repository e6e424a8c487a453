"""Train one adapter per carried dataset with the product's own training code, and report the cost.

The device half of issue 36's GPU path (the datasets are built where retrieval runs, by
scripts/gpu_train_files.sh; this runs where the GPU is, through ``scripts/gpu_check_device.sh
train``, and needs only the model packages: adapters.train and assistant.settings import nothing
of the indexing stack). Each folder under ``--datasets`` is one domain's dataset as
``assistant dataset`` writes it (its name is the domain). Each adapter is trained at
``--batch`` with ``adapters.train.train_adapter`` (the same loop, evaluation and manifest as
``assistant train``), copied to ``--out``/adapters/<name>, and one row per domain is printed and
appended to ``--out``/gpu_train_results.jsonl: steps, minutes, steps/s, tokens/s, the validation
loss and the adapter's closed-book fact recall against the base's.

Back on the CPU machine: ``assistant adapters load <out>/adapters/<name>`` installs each one,
and ``assistant eval`` scores it (the README's "Adapters on a GPU").
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, required=True, help="one dataset folder per domain")
    parser.add_argument("--out", type=Path, required=True, help="where the adapters and the results go")
    parser.add_argument("--batch", type=int, default=16, help="examples per step (default 16)")
    parser.add_argument("--max-steps", type=int, default=None, help="steps per adapter (default: the settings' epochs)")
    parser.add_argument("--suffix", default="gpu", help="adapter names are <domain>-<suffix>")
    args = parser.parse_args(argv)

    from adapters.train import train_adapter
    from assistant.settings import load_settings

    domains = sorted(p for p in args.datasets.iterdir() if (p / "train.jsonl").is_file()) if args.datasets.is_dir() else []
    if not domains:
        print(f"gpu_train_device: no dataset folders (with train.jsonl) in {args.datasets}", file=sys.stderr)
        return 2
    settings = load_settings(train_batch_size=args.batch)
    (args.out / "adapters").mkdir(parents=True, exist_ok=True)
    failed = 0
    print("| domain | examples | steps | minutes | steps/s | tokens/s | best val loss | trained-fact recall, base → adapter |")
    print("|---|---|---|---|---|---|---|---|")
    for dataset in domains:
        row = _train_one(train_adapter, settings, dataset, args)
        failed += "error" in row
        with open(args.out / "gpu_train_results.jsonl", "a", encoding="utf-8") as results:
            results.write(json.dumps(row) + "\n")
        print(_table_row(row), flush=True)
    return 1 if failed else 0


def _train_one(train_adapter, settings, dataset: Path, args) -> dict:
    domain = dataset.name
    with open(dataset / "train.jsonl", encoding="utf-8") as lines:
        examples = sum(1 for _ in lines)
    row: dict = {"domain": domain, "examples": examples, "batch": args.batch}
    started = time.perf_counter()
    try:
        result = train_adapter(settings.training_params, domain, max_steps=args.max_steps,
                               name=f"{domain}-{args.suffix}", dataset_dir=dataset, progress=False)
    except Exception as exc:  # one domain's failure is reported and the others still train
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row
    seconds = time.perf_counter() - started
    shutil.copytree(result.path, args.out / "adapters" / result.adapter, dirs_exist_ok=True)
    recall = (result.metrics or {}).get("fact_recall", {})
    trained = {side: recall.get(side, {}).get("trained", {}).get("recalled") for side in ("base", "adapter")}
    row.update(adapter=result.adapter, steps=result.steps, seconds=round(seconds, 1),
               train_seconds=round(result.seconds, 1), steps_per_second=round(result.steps / max(result.seconds, 1e-9), 3),
               tokens_per_second=round(result.tokens_per_second, 1), best_val_loss=result.best_val_loss,
               trained_fact_recall=trained)
    return row


def _table_row(row: dict) -> str:
    if "error" in row:
        return f"| {row['domain']} | {row['examples']} | failed: {row['error']} | | | | | |"
    recall = row.get("trained_fact_recall") or {}
    recall_text = f"{recall.get('base')} → {recall.get('adapter')}" if recall.get("adapter") is not None else "–"
    loss = f"{row['best_val_loss']:.3f}" if row.get("best_val_loss") is not None else "–"
    return (f"| {row['domain']} | {row['examples']} | {row['steps']} | {row['seconds'] / 60:.1f} | "
            f"{row['steps_per_second']:.3f} | {row['tokens_per_second']:.0f} | {loss} | {recall_text} |")


if __name__ == "__main__":
    sys.exit(main())
