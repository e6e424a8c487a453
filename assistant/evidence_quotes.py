"""When no graph fact answers the question, the answer may open with the evidence sentence that
most likely does, quoted and cited ("The initial coverage limit was $2,500 per depositor [7].").

A small model paraphrases numbers and names wrongly far more often than it copies them, and
attribution then rightly drops its sentence; a quoted sentence is supported by construction.
The sentence is chosen among the prompt's passage sentences and facts by how much of the
question it covers (content words) and how close it is in meaning (the embedder), and by
whether it holds what the question asks for: a year for "when", a number for "how many" or a
limit, a name for "who" or "which", that the question does not already contain. A sentence that
only restates the question counts half.

Pure text plus the caller's ``encode``; no model call of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from adapters.prompts import EvidenceItem
from assistant.attribution import content_words, numbers, stem
from assistant.sentences import split_sentences

LEXICAL_WEIGHT, SIMILARITY_WEIGHT = 0.7, 0.3
ANSWER_TYPE_BONUS = 0.2
MIN_QUOTE_SCORE = 0.35  # below this no sentence is close enough to quote
_YEAR = re.compile(r"\b(1[0-9]\d\d|20\d\d)\b")
_CAPITALISED = re.compile(r"\b[A-Z][a-z]+")
_NUMBER_QUESTION = re.compile(r"\bhow (many|much|long|old)\b|\b(percentage|limit|price|amount|rate|value|number|dose|"
                              r"size)\b|\b(below|above) which\b")
_DATE_QUESTION = re.compile(r"\b(what|which) (year|date|day|month)\b|\bwhen\b")
_NAME_QUESTION = re.compile(r"^\W*(who|whom)\b|\bwhich\b|\bwhat (country|city|state|law|act|court|case|organ|drug|"
                            r"bank|treaty)\b")


@dataclass(frozen=True)
class Quote:
    text: str  # the sentence with its citation
    number: int
    score: float


def answer_type(question: str) -> str | None:
    """"number", "year", "name" or None: what kind of thing the question asks for."""
    lower = question.lower()
    for kind, pattern in (("number", _NUMBER_QUESTION), ("year", _DATE_QUESTION), ("name", _NAME_QUESTION)):
        if pattern.search(lower):
            return kind
    return None


def best_quote(question: str, items: Sequence[EvidenceItem], encode) -> Quote | None:
    """The evidence sentence that most likely answers ``question``, cited, or None."""
    units = [(item, sentence) for item in items if item.kind == "passage" for sentence in split_sentences(item.text)]
    units += [(item, item.text) for item in items if item.kind == "fact"]
    titles = {item.number: content_words(item.title) for item in items}
    if not units:
        return None
    vectors = encode([question] + [sentence for _, sentence in units])
    similarities = vectors[1:] @ vectors[0]
    asked, kind = content_words(question), answer_type(question)
    best: tuple[float, EvidenceItem, str] | None = None
    for (item, sentence), similarity in zip(units, similarities):
        score = _score(question, asked, kind, sentence, float(similarity), titles[item.number])
        if best is None or score > best[0]:
            best = (score, item, sentence)
    score, item, sentence = best
    if score < MIN_QUOTE_SCORE:
        return None
    body = sentence.strip().rstrip(".!?")
    return Quote(f"{body[:1].upper()}{body[1:]} [{item.number}].", item.number, score)


def _score(question: str, asked: set[str], kind: str | None, sentence: str, similarity: float,
           title: set[str]) -> float:
    """The passage's title counts as context: "The bank was founded in 1694" under "Bank of
    England" covers "Bank of England" too."""
    words = content_words(sentence)
    covered = len(asked & (words | title)) / len(asked) if asked else 0.0
    score = LEXICAL_WEIGHT * covered + SIMILARITY_WEIGHT * max(0.0, similarity)
    if kind is not None:
        score = score + ANSWER_TYPE_BONUS if _holds(kind, question, asked, sentence) else score * 0.5
    if not words - asked:  # says nothing the question does not
        score *= 0.5
    return score


def _holds(kind: str, question: str, asked: set[str], sentence: str) -> bool:
    if kind == "year":
        return bool(set(_YEAR.findall(sentence)) - set(_YEAR.findall(question)))
    if kind == "number":
        return bool(numbers(sentence) - numbers(question))
    return bool({stem(word) for word in _CAPITALISED.findall(sentence)} - asked)
