"""How much an adapter adds: the same held-out questions answered by the base and by the adapter.

Scored with adapters/answer_metrics.py (exact match, token F1, yes/no accuracy), plus the loss /
perplexity of the gold answers. And fact recall: closed-book answers to the dataset's fact
questions, those whose facts the adapter was trained on (how much knowledge moved into the
weights) beside held-out ones (how much of it generalises; the split is by fact group, so a
held-out fact was never seen in any form).
"""

from __future__ import annotations

import math
from collections import defaultdict
from contextlib import nullcontext
from typing import Sequence

from tqdm import tqdm

from adapters.answer_metrics import contains_answer, exact_match, token_f1, yes_no
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


FACT_KIND = "fact"  # adapters/dataset.py: a question about one graph fact, answered without evidence


def closed_book_facts(examples: Sequence[Example], limit: int) -> list[Example]:
    """Up to ``limit`` closed-book fact questions, in id order (ids are hashes: an even spread)."""
    return sorted((e for e in examples if e.kind == FACT_KIND), key=lambda e: e.id)[:limit]


def score_recall(examples: Sequence[Example], predictions: Sequence[str]) -> dict:
    """Recalled: the gold object is in the answer (contains-gold); exact match and F1 beside it."""
    pairs = list(zip(examples, predictions, strict=True))
    return {"n": len(pairs),
            "recalled": _mean(contains_answer(p, [e.answer]) for e, p in pairs),
            "exact_match": _mean(exact_match(p, e.answer) for e, p in pairs),
            "f1": _mean(token_f1(p, e.answer) for e, p in pairs)}


def fact_recall(peft_model, tokenizer, trained: Sequence[Example], held_out: Sequence[Example], max_new_tokens: int,
                progress: bool = True) -> dict:
    """Closed-book recall of trained and of held-out facts, with the adapter off (base) and on."""
    sets = {"trained": list(trained), "held_out": list(held_out)}
    results: dict = {}
    for label, context in (("base", peft_model.disable_adapter), ("adapter", nullcontext)):
        with context():
            results[label] = {
                name: score_recall(examples, generate_answers(peft_model, tokenizer, examples, max_new_tokens,
                                                              progress, f"recall {label} {name}"))
                for name, examples in sets.items() if examples}
    return results


def _mean(values) -> float:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else 0.0
