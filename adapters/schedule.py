"""The learning-rate schedule (linear warm-up, then η ← η·γ) and the L1 penalty on LoRA weights.

A factor for torch's ``LambdaLR`` rather than ``SequentialLR(LinearLR, ExponentialLR)``: the
decay may tick every step or once per epoch (``lr_decay_every``), and the scheduler's saved
state in a checkpoint is then only its step count, so a resumed run continues the same curve.
"""

from __future__ import annotations


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
