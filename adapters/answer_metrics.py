"""How close an answer is to its gold answer, SQuAD-style: case, punctuation, articles and
citation marks ignored; exact match, token F1, and the yes/no label (the first yes/no word).
Contains-gold, the lenient match, too. Both the adapter's evaluation (adapters/evaluate.py) and ``assistant eval`` score with these."""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

from adapters.prompts import strip_citations

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans({c: " " for c in string.punctuation})
_YES_NO = re.compile(r"\b(yes|no)\b")


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


def contains_answer(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when a normalised gold answer occurs, as whole words, in the normalised prediction:
    the lenient match for a generator that answers in a sentence ("It was decided in 1803.")."""
    words = f" {normalize_answer(prediction)} "
    return float(any(normalize_answer(gold) and f" {normalize_answer(gold)} " in words for gold in answers))


def yes_no(text: str) -> str | None:
    match = _YES_NO.search(text.lower())
    return match.group(1) if match else None
