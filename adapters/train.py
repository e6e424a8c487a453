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

import fcntl
import hashlib
import json
import math
import random
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from tqdm import tqdm

from adapters.base_model import BaseModel, load_model, load_tokenizer, resolve_base_model, training_device
from adapters.dataset import Example, dataset_hash, load_split
from adapters.registry import (CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE, AdapterInvalid, AdapterRegistry,
                               adapter_manifest, validate_adapter)
from assistant.settings import Settings

IGNORE = -100  # label of prompt and padding tokens
STATE_FILE, TRAINER_STATE_FILE = "state.json", "trainer_state.pt"
TRAINING_SETTINGS = ("lora_rank", "lora_alpha", "lora_dropout", "lora_target_modules", "train_quantization",
                     "train_batch_size", "train_max_tokens", "learning_rate", "warmup_steps", "lr_decay_gamma",
                     "lr_decay_every", "weight_decay", "l1_penalty", "eval_every_steps", "early_stopping_patience",
                     "train_seed")


class TrainingError(RuntimeError):
    """Training cannot start or finish; the message says why."""


@dataclass
class Batch:
    input_ids: object  # LongTensor [batch, length]
    attention_mask: object
    labels: object
    tokens: int  # real (non-padding) tokens


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


# --- tokenisation and batches --------------------------------------------------------------

def encode_example(tokenizer, messages: list[dict], max_tokens: int) -> tuple[list[int], list[int]]:
    """Token ids of the whole conversation in the chat template and labels that train only the
    final assistant turn. Too long: the prompt loses tokens from its start (the question and
    evidence are at its end)."""
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise TrainingError("the chat template renders the prompt differently with and without the answer")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"][:max_tokens // 2]
    prompt_ids = prompt_ids[-(max_tokens - len(answer_ids)):]
    return prompt_ids + answer_ids, [IGNORE] * len(prompt_ids) + answer_ids


def make_batches(tokenizer, examples: Sequence[Example], batch_size: int, max_tokens: int) -> list[Batch]:
    encoded = [encode_example(tokenizer, e.messages, max_tokens) for e in examples]
    return [_collate(encoded[i:i + batch_size], tokenizer.pad_token_id) for i in range(0, len(encoded), batch_size)]


def _collate(rows: list[tuple[list[int], list[int]]], pad_id: int) -> Batch:
    import torch

    length = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for row, (tokens, targets) in enumerate(rows):
        ids[row, :len(tokens)] = torch.tensor(tokens)
        labels[row, :len(targets)] = torch.tensor(targets)
        mask[row, :len(tokens)] = 1
    return Batch(ids, mask, labels, int(mask.sum()))


def completion_loss(model, batch: Batch):
    """Mean cross-entropy over answer tokens and their count. The output layer (vocabulary-sized)
    runs only where there is a label, not over every prompt position."""
    import torch
    import torch.nn.functional as F

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    device = next(causal.parameters()).device
    hidden = causal.get_decoder()(input_ids=batch.input_ids.to(device),
                                  attention_mask=batch.attention_mask.to(device)).last_hidden_state
    targets = batch.labels.to(device)[:, 1:]
    wanted = targets != IGNORE
    logits = causal.get_output_embeddings()(hidden[:, :-1][wanted]).float()
    count = int(wanted.sum())
    if count == 0:
        return torch.zeros((), device=device, requires_grad=True), 0
    return F.cross_entropy(logits, targets[wanted]), count


# --- schedule and penalty ------------------------------------------------------------------

def learning_rate_factor(step: int, warmup: int, gamma: float, steps_per_decay: int = 1) -> float:
    """Linear warm-up to the full rate (reached at step ``warmup - 1``), then η ← η·γ after every
    step (``steps_per_decay`` 1) or every epoch (``steps_per_decay`` = steps per epoch)."""
    if step < warmup:
        return (step + 1) / warmup
    if steps_per_decay <= 1:
        return gamma ** (step - max(warmup - 1, 0))
    return gamma ** (step // steps_per_decay)


def l1_norm(model):
    return sum(p.abs().sum() for name, p in model.named_parameters() if p.requires_grad and "lora_" in name)


# --- the run ---------------------------------------------------------------------------------

def run_id(settings: Settings, domain: str, data_hash: str, base: BaseModel, from_adapter: str | None,
           max_steps: int) -> str:
    chosen = {name: getattr(settings, name) for name in TRAINING_SETTINGS}
    identity = json.dumps([domain, data_hash, base.fingerprint, from_adapter, max_steps, chosen], sort_keys=True)
    return f"{domain}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def train_adapter(settings: Settings, domain: str, *, from_adapter: str | None = None, max_steps: int | None = None,
                  name: str | None = None, dataset_dir: Path | None = None, progress: bool = True,
                  evaluate: bool = True, on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train (or resume training) the domain's adapter, evaluate it and install it in the registry."""
    base = resolve_base_model(settings)
    dataset_dir = Path(dataset_dir or settings.datasets_dir / domain)
    train_set, validation = load_split(dataset_dir, "train"), load_split(dataset_dir, "validation")
    if not train_set:
        raise TrainingError(f"{dataset_dir} has no training examples")
    data_hash = dataset_hash(dataset_dir)
    max_steps = max_steps or settings.train_max_steps
    registry = AdapterRegistry(settings.adapters_dir)
    source = _warm_start_source(registry, from_adapter, base)
    if name is not None and registry.path(name).exists():
        raise TrainingError(f"an adapter named {name!r} already exists; remove it or choose another name")
    run_dir = settings.training_dir / run_id(settings, domain, data_hash, base, from_adapter, max_steps)
    run_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(run_dir):
        loop = _TrainingLoop(settings, base, train_set, validation, run_dir, source, max_steps, progress, on_step)
        result = loop.run(domain)
        if evaluate or name:
            staging = settings.adapters_dir / f".staging-{uuid.uuid4().hex[:8]}"
            try:
                loop.save_final(staging)
                result.metrics = evaluate_adapter(settings, base, staging, validation, loop.tokenizer, progress) if evaluate else {}
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


def evaluate_adapter(settings: Settings, base: BaseModel, adapter_dir: Path, validation: Sequence[Example],
                     tokenizer, progress: bool = True) -> dict:
    """Base vs adapter on held-out questions, on the full-precision base the server uses."""
    from peft import PeftModel

    from adapters.evaluate import compare_base_and_adapter, pick_for_evaluation

    examples = pick_for_evaluation(validation, settings.eval_max_examples)
    if not examples:
        return {}
    model = PeftModel.from_pretrained(load_model(base, "none", training_device()), str(adapter_dir))
    model.eval()
    batches = make_batches(tokenizer, examples, settings.train_batch_size, settings.train_max_tokens)
    return compare_base_and_adapter(model, tokenizer, examples, batches, settings.eval_max_new_tokens, progress)


def _swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` by the complete folder ``staging``. Between the two renames only
    ``.old-<target>-*`` exists; ``_recover_swap`` puts it back after a kill there."""
    old = target.with_name(f".old-{target.name}-{uuid.uuid4().hex[:8]}")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _recover_swap(target: Path) -> None:
    """After a kill inside ``_swap_in``: the previous complete folder becomes ``target`` again."""
    if target.exists():
        return
    previous = sorted(target.parent.glob(f".old-{target.name}-*"), key=lambda p: p.stat().st_mtime)
    if previous:
        previous[-1].rename(target)


def _warm_start_source(registry: AdapterRegistry, from_adapter: str | None, base: BaseModel) -> Path | None:
    if from_adapter is None:
        return None
    try:
        return validate_adapter(registry.get(from_adapter).path, base, name=from_adapter).path
    except AdapterInvalid as exc:
        raise TrainingError(f"cannot warm-start from {from_adapter!r}: {exc}") from exc


@contextmanager
def _exclusive(run_dir: Path) -> Iterator[None]:
    with open(run_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TrainingError(f"another process is training this run ({run_dir})") from None
        yield


class _TrainingLoop:
    """Model, optimizer and state of one run; resumes from ``run_dir/checkpoint`` when present."""

    def __init__(self, settings: Settings, base: BaseModel, train_set: Sequence[Example],
                 validation: Sequence[Example], run_dir: Path, warm_start: Path | None, max_steps: int,
                 progress: bool, on_step: Callable[[int, float], None] | None):
        import torch

        from adapters.evaluate import pick_for_evaluation

        self.settings, self.base, self.run_dir, self.max_steps = settings, base, run_dir, max_steps
        self.progress, self.on_step, self.warm_start = progress, on_step, warm_start
        self.device = training_device()
        torch.manual_seed(settings.train_seed)
        self.tokenizer = load_tokenizer(base)
        self.train_set = sorted(train_set, key=lambda e: e.id)
        self.val_batches = make_batches(self.tokenizer, pick_for_evaluation(validation, settings.eval_max_examples),
                                        settings.train_batch_size, settings.train_max_tokens)
        self.model = self._build_model()
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay)
        steps_per_epoch = math.ceil(len(self.train_set) / settings.train_batch_size)
        decay_period = steps_per_epoch if settings.lr_decay_every == "epoch" else 1
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: learning_rate_factor(step, settings.warmup_steps, settings.lr_decay_gamma, decay_period))
        self.state = {"step": 0, "best_val_loss": None, "best_step": None, "bad_evals": 0, "losses": [],
                      "val_losses": [], "stopped_early": False, "tokens": 0, "seconds": 0.0}
        self.resumed_from = self._resume()

    # -- model --------------------------------------------------------------------------------
    def _build_model(self):
        from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

        model = load_model(self.base, self.settings.train_quantization, self.device)
        on_gpu = self.device.startswith("cuda")
        if self.settings.train_quantization == "nf4":
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=on_gpu)
        elif on_gpu:
            model.gradient_checkpointing_enable()
        if self.warm_start is not None:  # knowledge transfer: start from another domain's LoRA weights
            return PeftModel.from_pretrained(model, str(self.warm_start), is_trainable=True)
        config = LoraConfig(r=self.settings.lora_rank, lora_alpha=self.settings.lora_alpha,
                            lora_dropout=self.settings.lora_dropout, target_modules=list(self.settings.lora_target_modules),
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
                while step < self.max_steps and not self.state["stopped_early"]:
                    batch = self._batch_for(step)
                    loss, _ = completion_loss(self.model, batch)
                    objective = loss + self.settings.l1_penalty * l1_norm(self.model) if self.settings.l1_penalty else loss
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
                    if step % self.settings.eval_every_steps == 0 or step == self.max_steps:
                        self._validate(step)
                    if step % self.settings.checkpoint_every_steps == 0:
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
        size = self.settings.train_batch_size
        steps_per_epoch = math.ceil(len(self.train_set) / size)
        epoch, position = divmod(step, steps_per_epoch)
        order = list(range(len(self.train_set)))
        random.Random(self.settings.train_seed * 1_000_003 + epoch).shuffle(order)
        chosen = [self.train_set[i] for i in order[position * size:(position + 1) * size]]
        return make_batches(self.tokenizer, chosen, size, self.settings.train_max_tokens)[0]

    def _validate(self, step: int) -> None:
        from adapters.evaluate import answer_loss

        if not self.val_batches:
            return
        loss = answer_loss(self.model, self.val_batches)
        self.state["val_losses"].append([step, round(loss, 5)])
        best = self.state["best_val_loss"]
        if best is None or loss < best:
            self.state.update(best_val_loss=round(loss, 5), best_step=step, bad_evals=0)
            staging = self.run_dir / f".best-{uuid.uuid4().hex[:8]}"
            self.model.save_pretrained(str(staging))
            _swap_in(staging, self.run_dir / "best")  # a kill mid-write never leaves a truncated best/
        else:
            self.state["bad_evals"] += 1
            if self.state["bad_evals"] >= self.settings.early_stopping_patience:
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
        _swap_in(staging, target)

    def _resume(self) -> int:
        import torch
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        checkpoint = self.run_dir / "checkpoint"
        _recover_swap(checkpoint)
        _recover_swap(self.run_dir / "best")
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
        chosen = {name: getattr(self.settings, name) for name in TRAINING_SETTINGS}
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
