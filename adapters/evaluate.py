"""How much an adapter adds: the same held-out questions answered by the base and by the adapter.

Metrics (SQuAD-style normalisation: case, punctuation, articles and citation marks ignored):
exact match and token F1 against the gold answer, accuracy on yes/no questions (the first
yes/no word of the answer), and the loss / perplexity of the gold answers.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter, defaultdict
from contextlib import nullcontext
from typing import Sequence

from tqdm import tqdm

from adapters.dataset import Example
from assistant.prompts import strip_citations

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans({c: " " for c in string.punctuation})
_YES_NO = re.compile(r"\b(yes|no)\b")
EVAL_BATCH = 8


def normalize_answer(text: str) -> str:
    text = strip_citations(text).lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    predicted, wanted = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not wanted:
        return float(predicted == wanted)
    overlap = sum((Counter(predicted) & Counter(wanted)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(predicted), overlap / len(wanted)
    return 2 * precision * recall / (precision + recall)


def yes_no(text: str) -> str | None:
    match = _YES_NO.search(text.lower())
    return match.group(1) if match else None


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
    picked: list[Example] = []
    queues = [list(v) for _, v in sorted(by_kind.items())]
    while len(picked) < limit and any(queues):
        for queue in queues:
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return picked


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


def answer_loss(model, batches) -> float:
    """Mean loss per answer token over pre-built batches (see adapters.train.make_batches)."""
    import torch

    from adapters.train import completion_loss

    total, tokens = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in batches:
            loss, count = completion_loss(model, batch)
            total += loss.item() * count
            tokens += count
    model.train(was_training)
    return total / max(tokens, 1)


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
