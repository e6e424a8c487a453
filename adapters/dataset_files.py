"""A built dataset's folder: ``train.jsonl``, ``validation.jsonl`` and ``dataset.json`` (counts and
the data hash that names a training run), and reading them back. Reading needs none of the
indexing stack, so training can start where only the model's packages are installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from adapters.example import DatasetError, Example

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
