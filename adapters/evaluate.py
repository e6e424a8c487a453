"""How much an adapter adds: the same held-out questions answered by the base and by the adapter.

Scored with adapters/answer_metrics.py (exact match, token F1, yes/no accuracy), plus the loss /
perplexity of the gold answers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from contextlib import nullcontext
from typing import Sequence

from tqdm import tqdm

from adapters.answer_metrics import exact_match, token_f1, yes_no
from adapters.batches import answer_loss
from adapters.example import Example
from adapters.round_robin import round_robin

EVAL_BATCH = 8


def score_answers(examples: Sequence[Example], predictions: Sequence[str]) -> dict:
    """Exact match, F1 and yes/no accuracy overall and per kind of example."""
    by_kind: dict[str, list[tuple[float, float]]] = defaultdict(list)
    yes_no_hits: list[float] = []
    for example, prediction in zip(examples, predictions, strict=True):
        by_kind[example.kind].append((exact_match(prediction, example.answer), token_f1(prediction, example.answer)))
        if example.answer_type == "yesno":
            yes_no_hits.append(float(yes_no(prediction) == yes_no(example.answer)))
    everything = [score for scores in by_kind.values() for score in scores]
    return {
        "n": len(everything),
        "exact_match": _mean(s[0] for s in everything),
        "f1": _mean(s[1] for s in everything),
        "yesno_accuracy": _mean(yes_no_hits) if yes_no_hits else None,
        "by_kind": {kind: {"n": len(s), "exact_match": _mean(x[0] for x in s), "f1": _mean(x[1] for x in s)}
                    for kind, s in sorted(by_kind.items())},
    }


def pick_for_evaluation(examples: Sequence[Example], limit: int) -> list[Example]:
    """Up to ``limit`` examples, taken round-robin over kinds so every kind is represented."""
    by_kind: dict[str, list[Example]] = defaultdict(list)
    for example in sorted(examples, key=lambda e: e.id):
        by_kind[example.kind].append(example)
    return round_robin((by_kind[kind] for kind in sorted(by_kind)), limit)


def generate_answers(model, tokenizer, examples: Sequence[Example], max_new_tokens: int, progress: bool = True,
                     desc: str = "answering") -> list[str]:
    """Greedy answers to each example's conversation without its final assistant turn."""
    import torch

    tokenizer.padding_side = "left"  # generation continues from the right end of every row
    answers: list[str] = []
    device = next(model.parameters()).device
    with tqdm(total=len(examples), desc=desc, unit="q", disable=not progress, leave=False) as bar:
        for start in range(0, len(examples), EVAL_BATCH):
            batch = examples[start:start + EVAL_BATCH]
            texts = [tokenizer.apply_chat_template(e.messages[:-1], tokenize=False, add_generation_prompt=True)
                     for e in batch]
            encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with torch.no_grad():
                output = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False,
                                        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            new_tokens = output[:, encoded["input_ids"].shape[1]:]
            answers += [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
            bar.update(len(batch))
    return answers


def compare_base_and_adapter(peft_model, tokenizer, examples: Sequence[Example], batches, max_new_tokens: int,
                             progress: bool = True) -> dict:
    """The same questions and answers scored with the adapter switched off (the base) and on."""
    results = {}
    for label, context in (("base", peft_model.disable_adapter), ("adapter", nullcontext)):
        with context():
            predictions = generate_answers(peft_model, tokenizer, examples, max_new_tokens, progress, f"eval {label}")
            loss = answer_loss(peft_model, batches)
        scores = score_answers(examples, predictions)
        scores.update(val_loss=round(loss, 4), perplexity=round(math.exp(min(loss, 50.0)), 3))
        scores["samples"] = [{"question": e.question[-200:], "gold": e.answer, "answer": p}
                             for e, p in list(zip(examples, predictions))[:5]]
        results[label] = scores
    return results


def _mean(values) -> float:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else 0.0
