"""What the adapters layer is told, as small typed groups.

``adapters`` never imports the app's settings: the app builds these groups from its own
``Settings`` (whose fields have the same names, so ``assistant.settings`` fills them by name)
and passes them down. Plain data, standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class DatasetParams:
    """How a domain's index and graph become training examples (adapters/dataset.py)."""
    datasets_dir: Path
    domains_dir: Path
    dataset_validation_percent: int
    dataset_min_fact_confidence: float
    dataset_max_facts: int
    dataset_reading_questions: int


@dataclass(frozen=True)
class TrainingParams:
    """One adapter's training run (adapters/train.py): the base, the folders, LoRA, the schedule."""
    base_model: str
    models_dir: Path
    datasets_dir: Path
    adapters_dir: Path
    training_dir: Path
    lora_rank: int
    lora_alpha: int
    lora_dropout: float
    lora_target_modules: list[str]
    train_quantization: Literal["nf4", "none"]
    train_batch_size: int
    train_max_tokens: int
    train_epochs: float
    train_max_steps: int | None
    learning_rate: float
    warmup_steps: int
    lr_decay_gamma: float
    lr_decay_every: Literal["step", "epoch"]
    weight_decay: float
    l1_penalty: float
    eval_every_steps: int
    early_stopping_patience: int
    early_stopping_on_closed_book: bool
    checkpoint_every_steps: int
    train_seed: int
    eval_max_examples: int
    eval_max_new_tokens: int
