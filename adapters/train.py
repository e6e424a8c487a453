"""QLoRA training of one domain's adapter: a 4-bit NF4 base (bitsandbytes), LoRA weights on top.

A run is identified by what determines its result (domain, data hash, base fingerprint, warm
start, training settings). Its checkpoints live in ``training/<run id>``: the LoRA weights,
the optimizer, scheduler and random-number states, and the step, so an interrupted run picks up
where it stopped when started again with the same inputs. A finished run is evaluated against
the base on held-out questions and installed in the registry as ``<domain>-vN``.

The loop is hand-written rather than transformers' Trainer because four of its parts are
custom anyway: the L1 penalty, the warm-up + exponential schedule, loss on answer tokens only
(with the output layer applied to those positions alone, which saves a fifth of the time on
CPU) and a resumable data order.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from tqdm import tqdm

from adapters.base_model import BaseModel, load_model, load_tokenizer, resolve_base_model, training_device
from adapters.batches import Batch, TrainingError, answer_loss, completion_loss, make_batches
from adapters.dataset_files import dataset_hash, load_split
from adapters.evaluate import FACT_KIND, closed_book_facts, compare_base_and_adapter, fact_recall, pick_for_evaluation
from adapters.example import Example
from adapters.params import TrainingParams
from adapters.registry import (CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE, AdapterInvalid, AdapterRegistry,
                               adapter_manifest, validate_adapter)
from adapters.run_folder import exclusive, recover_swap, swap_in
from adapters.schedule import l1_norm, learning_rate_factor

STATE_FILE, TRAINER_STATE_FILE = "state.json", "trainer_state.pt"
TRAINING_SETTINGS = ("lora_rank", "lora_alpha", "lora_dropout", "lora_target_modules", "train_quantization",
                     "train_batch_size", "train_max_tokens", "learning_rate", "warmup_steps", "lr_decay_gamma",
                     "lr_decay_every", "weight_decay", "l1_penalty", "eval_every_steps", "early_stopping_patience",
                     "early_stopping_on_closed_book", "train_seed")


@dataclass
class TrainResult:
    domain: str
    adapter: str | None
    path: Path | None
    steps: int
    resumed_from_step: int
    losses: list[float] = field(default_factory=list)  # training loss per step
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    best_val_loss: float | None = None
    stopped_early: bool = False
    tokens_per_second: float = 0.0
    seconds: float = 0.0
    metrics: dict = field(default_factory=dict)


# --- the run ---------------------------------------------------------------------------------

def run_id(params: TrainingParams, domain: str, data_hash: str, base: BaseModel, from_adapter: str | None,
           max_steps: int) -> str:
    chosen = {name: getattr(params, name) for name in TRAINING_SETTINGS}
    identity = json.dumps([domain, data_hash, base.fingerprint, from_adapter, max_steps, chosen], sort_keys=True)
    return f"{domain}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def planned_steps(params: TrainingParams, train_examples: int, max_steps: int | None = None) -> int:
    """``max_steps`` when given; else ``train_epochs`` passes over the training set (a fixed step
    count is less than one epoch on one dataset and many on another), capped by ``train_max_steps``."""
    if max_steps:
        return max_steps
    steps = max(1, math.ceil(params.train_epochs * math.ceil(train_examples / params.train_batch_size)))
    return min(steps, params.train_max_steps) if params.train_max_steps else steps


def train_adapter(params: TrainingParams, domain: str, *, from_adapter: str | None = None, max_steps: int | None = None,
                  name: str | None = None, dataset_dir: Path | None = None, progress: bool = True,
                  evaluate: bool = True, on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train (or resume training) the domain's adapter, evaluate it and install it in the registry."""
    base = resolve_base_model(params.base_model, params.models_dir)
    dataset_dir = Path(dataset_dir or params.datasets_dir / domain)
    train_set, validation = load_split(dataset_dir, "train"), load_split(dataset_dir, "validation")
    if not train_set:
        raise TrainingError(f"{dataset_dir} has no training examples")
    data_hash = dataset_hash(dataset_dir)
    max_steps = planned_steps(params, len(train_set), max_steps)
    registry = AdapterRegistry(params.adapters_dir)
    source = _warm_start_source(registry, from_adapter, base)
    if name is not None and registry.path(name).exists():
        raise TrainingError(f"an adapter named {name!r} already exists; remove it or choose another name")
    run_dir = params.training_dir / run_id(params, domain, data_hash, base, from_adapter, max_steps)
    run_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(run_dir):
        loop = _TrainingLoop(params, base, train_set, validation, run_dir, source, max_steps, progress, on_step)
        result = loop.run(domain)
        if evaluate or name:
            staging = params.adapters_dir / f".staging-{uuid.uuid4().hex[:8]}"
            try:
                loop.save_final(staging)
                result.metrics = (evaluate_adapter(params, base, staging, train_set, validation, loop.tokenizer, progress)
                                  if evaluate else {})
                manifest = adapter_manifest(domain, base, data_hash=data_hash, dataset=str(dataset_dir),
                                            warm_start=from_adapter, settings=loop.recorded_settings(),
                                            training=loop.summary(result), metrics=result.metrics)
                (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
                result.adapter = name or registry.next_name(domain)
                result.path = registry.install(staging, result.adapter, base).path
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


def evaluate_adapter(params: TrainingParams, base: BaseModel, adapter_dir: Path, train_set: Sequence[Example],
                     validation: Sequence[Example], tokenizer, progress: bool = True) -> dict:
    """Base vs adapter on held-out questions, and closed-book recall of trained and held-out
    facts, on the full-precision base the server uses."""
    from peft import PeftModel

    examples = pick_for_evaluation(validation, params.eval_max_examples)
    if not examples:
        return {}
    model = PeftModel.from_pretrained(load_model(base, "none", training_device()), str(adapter_dir))
    model.eval()
    batches = make_batches(tokenizer, examples, params.train_batch_size, params.train_max_tokens)
    metrics = compare_base_and_adapter(model, tokenizer, examples, batches, params.eval_max_new_tokens, progress)
    metrics["fact_recall"] = fact_recall(model, tokenizer, closed_book_facts(train_set, params.eval_max_examples),
                                         closed_book_facts(validation, params.eval_max_examples),
                                         params.eval_max_new_tokens, progress)
    return metrics


def stopping_examples(params: TrainingParams, validation: Sequence[Example]) -> list[Example]:
    """The held-out examples whose loss early stopping and the kept weights follow. Closed-book
    questions about held-out facts are left out unless asked for: their answers are facts the
    adapter never saw, so their loss only rises as it learns its own domain's facts, and stopping
    on it stopped training before the facts were in the weights. All of them when nothing else is held out."""
    if params.early_stopping_on_closed_book:
        return list(validation)
    others = [e for e in validation if e.kind != FACT_KIND]
    return others or list(validation)


def _warm_start_source(registry: AdapterRegistry, from_adapter: str | None, base: BaseModel) -> Path | None:
    if from_adapter is None:
        return None
    try:
        return validate_adapter(registry.get(from_adapter).path, base, name=from_adapter).path
    except AdapterInvalid as exc:
        raise TrainingError(f"cannot warm-start from {from_adapter!r}: {exc}") from exc


class _TrainingLoop:
    """Model, optimizer and state of one run; resumes from ``run_dir/checkpoint`` when present."""

    def __init__(self, params: TrainingParams, base: BaseModel, train_set: Sequence[Example],
                 validation: Sequence[Example], run_dir: Path, warm_start: Path | None, max_steps: int,
                 progress: bool, on_step: Callable[[int, float], None] | None):
        import torch

        self.params, self.base, self.run_dir, self.max_steps = params, base, run_dir, max_steps
        self.progress, self.on_step, self.warm_start = progress, on_step, warm_start
        self.device = training_device()
        torch.manual_seed(params.train_seed)
        self.tokenizer = load_tokenizer(base)
        self.train_set = sorted(train_set, key=lambda e: e.id)
        self.val_batches = make_batches(self.tokenizer, pick_for_evaluation(stopping_examples(params, validation),
                                                                             params.eval_max_examples),
                                        params.train_batch_size, params.train_max_tokens)
        self.model = self._build_model()
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=params.learning_rate, weight_decay=params.weight_decay)
        steps_per_epoch = math.ceil(len(self.train_set) / params.train_batch_size)
        decay_period = steps_per_epoch if params.lr_decay_every == "epoch" else 1
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: learning_rate_factor(step, params.warmup_steps, params.lr_decay_gamma, decay_period))
        self.state = {"step": 0, "best_val_loss": None, "best_step": None, "bad_evals": 0, "losses": [],
                      "val_losses": [], "stopped_early": False, "tokens": 0, "seconds": 0.0}
        self.resumed_from = self._resume()

    # -- model --------------------------------------------------------------------------------
    def _build_model(self):
        from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

        model = load_model(self.base, self.params.train_quantization, self.device)
        on_gpu = self.device.startswith("cuda")
        if self.params.train_quantization == "nf4":
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=on_gpu)
        elif on_gpu:
            model.gradient_checkpointing_enable()
        if self.warm_start is not None:  # knowledge transfer: start from another domain's LoRA weights
            return PeftModel.from_pretrained(model, str(self.warm_start), is_trainable=True)
        config = LoraConfig(r=self.params.lora_rank, lora_alpha=self.params.lora_alpha,
                            lora_dropout=self.params.lora_dropout, target_modules=list(self.params.lora_target_modules),
                            task_type="CAUSAL_LM")
        return get_peft_model(model, config)

    # -- loop ---------------------------------------------------------------------------------
    def run(self, domain: str) -> TrainResult:
        import torch

        self.model.train()
        started, step = time.perf_counter(), self.state["step"]
        with tqdm(total=self.max_steps, initial=step, desc=f"train {domain}", unit="step",
                  disable=not self.progress) as bar:
            try:
                if step == 0 and not self.state["val_losses"]:
                    self._validate(0)  # where the run starts: a warm start's head start shows here
                while step < self.max_steps and not self.state["stopped_early"]:
                    batch = self._batch_for(step)
                    loss, _ = completion_loss(self.model, batch)
                    objective = loss + self.params.l1_penalty * l1_norm(self.model) if self.params.l1_penalty else loss
                    objective.backward()
                    torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], 1.0)
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    step += 1
                    self.state["step"], self.state["tokens"] = step, self.state["tokens"] + batch.tokens
                    self.state["losses"].append(round(loss.item(), 5))
                    elapsed = self.state["seconds"] + time.perf_counter() - started
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}",
                                    tok_s=f"{self.state['tokens'] / max(elapsed, 1e-9):.0f}")
                    if step % self.params.eval_every_steps == 0 or step == self.max_steps:
                        self._validate(step)
                    # The last step too: a stop (or kill) during the evaluation that follows resumes there.
                    if step % self.params.checkpoint_every_steps == 0 or step == self.max_steps:
                        self._checkpoint(started)
                    if self.on_step:
                        self.on_step(step, loss.item())
            except KeyboardInterrupt:
                self._checkpoint(started)
                raise TrainingError(f"interrupted at step {step}; run the same command again to resume "
                                    f"from {self.run_dir}") from None
        self.state["seconds"] += time.perf_counter() - started
        return TrainResult(domain, None, None, step, self.resumed_from, list(self.state["losses"]),
                           [tuple(v) for v in self.state["val_losses"]], self.state["best_val_loss"],
                           self.state["stopped_early"], self.state["tokens"] / max(self.state["seconds"], 1e-9),
                           self.state["seconds"])

    def _batch_for(self, step: int) -> Batch:
        """The step's batch from a per-epoch shuffle seeded by the epoch: the same on resume."""
        size = self.params.train_batch_size
        steps_per_epoch = math.ceil(len(self.train_set) / size)
        epoch, position = divmod(step, steps_per_epoch)
        order = list(range(len(self.train_set)))
        random.Random(self.params.train_seed * 1_000_003 + epoch).shuffle(order)
        chosen = [self.train_set[i] for i in order[position * size:(position + 1) * size]]
        return make_batches(self.tokenizer, chosen, size, self.params.train_max_tokens)[0]

    def _validate(self, step: int) -> None:
        if not self.val_batches:
            return
        loss = answer_loss(self.model, self.val_batches)
        self.state["val_losses"].append([step, round(loss, 5)])
        best = self.state["best_val_loss"]
        if best is None or loss < best:
            self.state.update(best_val_loss=round(loss, 5), best_step=step, bad_evals=0)
            staging = self.run_dir / f".best-{uuid.uuid4().hex[:8]}"
            self.model.save_pretrained(str(staging))
            swap_in(staging, self.run_dir / "best")  # a kill mid-write never leaves a truncated best/
        else:
            self.state["bad_evals"] += 1
            if self.state["bad_evals"] >= self.params.early_stopping_patience:
                self.state["stopped_early"] = True

    # -- checkpoints ----------------------------------------------------------------------------
    def _checkpoint(self, started: float) -> None:
        """Weights, optimizer, scheduler, RNG and counters, written beside and renamed into place."""
        import torch

        target = self.run_dir / "checkpoint"
        staging = self.run_dir / f".checkpoint-{uuid.uuid4().hex[:8]}"
        self.model.save_pretrained(str(staging))
        state = dict(self.state, seconds=self.state["seconds"] + time.perf_counter() - started)
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state()}, staging / TRAINER_STATE_FILE)
        (staging / STATE_FILE).write_text(json.dumps(state))
        swap_in(staging, target)

    def _resume(self) -> int:
        import torch
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        checkpoint = self.run_dir / "checkpoint"
        recover_swap(checkpoint)
        recover_swap(self.run_dir / "best")
        if not (checkpoint / STATE_FILE).is_file():
            return 0
        try:
            state = json.loads((checkpoint / STATE_FILE).read_text())
            # weights_only: the optimizer state is tensors and numbers, nothing executable.
            trainer = torch.load(checkpoint / TRAINER_STATE_FILE, weights_only=True)
            set_peft_model_state_dict(self.model, load_file(str(checkpoint / WEIGHTS_FILE)))
            self.optimizer.load_state_dict(trainer["optimizer"])
            self.scheduler.load_state_dict(trainer["scheduler"])
            torch.set_rng_state(trainer["torch_rng"])
        except Exception as exc:  # a damaged checkpoint: say so and start over rather than crash
            print(f"checkpoint in {checkpoint} is unusable ({exc}); starting from step 0", flush=True)
            shutil.rmtree(checkpoint, ignore_errors=True)
            return 0
        self.state.update(state)
        print(f"resuming {self.run_dir.name} from step {self.state['step']}", flush=True)
        return self.state["step"]

    # -- output -----------------------------------------------------------------------------------
    def save_final(self, folder: Path) -> None:
        """The best validated weights (the last ones when nothing was validated): exactly the
        three files of an adapter folder once the manifest is added."""
        best = self.run_dir / "best"
        folder.mkdir(parents=True)
        if (best / WEIGHTS_FILE).is_file():
            for name in (WEIGHTS_FILE, CONFIG_FILE):
                shutil.copy2(best / name, folder / name)
        else:
            self.model.save_pretrained(str(folder))
        (folder / "README.md").unlink(missing_ok=True)

    def recorded_settings(self) -> dict:
        chosen = {name: getattr(self.params, name) for name in TRAINING_SETTINGS}
        config = self.model.peft_config["default"]
        chosen.update(lora_rank=config.r, lora_alpha=config.lora_alpha,
                      lora_target_modules=sorted(config.target_modules), max_steps=self.max_steps)
        return chosen

    def summary(self, result: TrainResult) -> dict:
        return {"steps": result.steps, "resumed_from_step": result.resumed_from_step,
                "first_loss": result.losses[0] if result.losses else None,
                "last_loss": result.losses[-1] if result.losses else None,
                "val_losses": result.val_losses, "best_val_loss": result.best_val_loss,
                "best_step": self.state["best_step"], "stopped_early": result.stopped_early,
                "tokens_per_second": round(result.tokens_per_second, 1), "seconds": round(result.seconds, 1),
                "device": self.device, "train_examples": len(self.train_set)}
