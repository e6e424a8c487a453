"""A built dataset's folder: ``train.jsonl``, ``validation.jsonl`` and ``dataset.json`` (counts and
the data hash that names a training run), and reading them back. Reading needs none of the
indexing stack, so training can start where only the model's packages are installed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal, Sequence

from adapters.example import DatasetError, Example
from indexing.atomic_files import write_text_atomic

TRAIN_FILE, VALIDATION_FILE, META_FILE = "train.jsonl", "validation.jsonl", "dataset.json"


def load_split(folder: Path, split: Literal["train", "validation"]) -> list[Example]:
    path = Path(folder) / (TRAIN_FILE if split == "train" else VALIDATION_FILE)
    if not path.is_file():
        raise DatasetError(f"{path} is missing; run `assistant dataset --domain ...` first")
    with open(path, encoding="utf-8") as f:
        return [Example(**json.loads(line)) for line in f if line.strip()]


def dataset_hash(folder: Path) -> str:
    meta = json.loads((Path(folder) / META_FILE).read_text())
    return meta["data_hash"]


def combine_datasets(target: Path, sources: Sequence[Path]) -> str:
    """One dataset holding every example of ``sources`` (built datasets of several domains), for an
    adapter trained on all of them; each split stays a split. Returns its data hash."""
    target = Path(target)
    hashes = [dataset_hash(source) for source in sources]
    data_hash = hashlib.sha256("|".join(hashes).encode()).hexdigest()
    target.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, name in (("train", TRAIN_FILE), ("validation", VALIDATION_FILE)):
        lines = [line for source in sources for line in (Path(source) / name).read_text(encoding="utf-8").splitlines()
                 if line.strip()]
        counts[split] = len(lines)
        write_text_atomic(target / name, "".join(line + "\n" for line in lines))
    meta = {"domain": target.name, "data_hash": data_hash, "counts": counts,
            "combined_from": [str(source) for source in sources]}
    write_text_atomic(target / META_FILE, json.dumps(meta, indent=2))
    return data_hash
