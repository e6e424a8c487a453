"""When no graph fact answers the question, the answer may open with the evidence sentence that
most likely does, quoted and cited ("The initial coverage limit was $2,500 per depositor [7].").

A small model paraphrases numbers and names wrongly far more often than it copies them, and
attribution then rightly drops its sentence; a quoted sentence is supported by construction.
The sentence is chosen among the prompt's passage sentences and facts by how much of the
question it covers (content words) and how close it is in meaning (the embedder), and by
whether it holds what the question asks for: a year for "when", a number for "how many" or a
limit, a name for "who" or "which", that the question does not already contain; a sentence
without it is not a candidate at all, and no sentence below ``MIN_QUOTE_SCORE`` is quoted (the
answer then says the evidence does not answer, rather than quote the closest sentence). A
sentence that only restates the question counts half. A table row is never quoted (its cells
are answered by assistant/answering/table_answers.py or not at all), and a sentence that opens with a
pronoun ("It is an oral medication ...") gets its passage's subject in its place when the
title is a short name, else is read and quoted after the sentence before it ("... unvested RSUs.
These costs are expected to be recognized over 2.33 years"), else counts half: a quote must
stand on its own. A question for a reason ("why", "the reason for", "attributed to?") favours a
sentence that gives a cause ("due to", "because", "driven by"), without requiring one.

Pure text plus the caller's ``encode``; no model call of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from adapters.prompts import EvidenceItem
from assistant.answering.attribution import content_words, numbers, stem
from assistant.answering.sentences import heading_split, split_sentences, without_citations
from indexing.tables import is_table_row

LEXICAL_WEIGHT, SIMILARITY_WEIGHT = 0.7, 0.3
ANSWER_TYPE_BONUS = 0.2
CONTEXT_WEIGHT = 0.9  # a sentence read after the one before it: two sentences cover more words by themselves
MIN_QUOTE_SCORE = 0.35  # below this no sentence is close enough to quote
_YEAR = re.compile(r"\b(1[0-9]\d\d|20\d\d)\b")
_CAPITALISED = re.compile(r"\b[A-Z][a-z]+")
_NUMBER_QUESTION = re.compile(r"\bhow (many|much|long|old)\b|\b(percentage|limit|price|amount|rate|value|number|dose|"
                              r"size)\b|\b(below|above) which\b")
# "When" asks for a time as the question's own word ("When did ...", not "... when it adopted the euro"),
# and a year only of a past event: "When are customers invoiced?" asks how things are done.
_DATE_QUESTION = re.compile(r"\b(what|which) (year|date|day|month)\b|^\W*when\b(?! (?:is|are|do|does|should|can|"
                            r"must|may|will|would)\b)")
# A question for a cause, and the words a sentence gives one with.
_REASON_QUESTION = re.compile(r"^\W*why\b|\breasons?\b|\battribut(?:ed|able) to\W*$|\bdue to what\b|"
                              r"\bwhat (?:caused|causes|drove|drives|led to)\b")
_CAUSE = re.compile(r"\b(?:due to|because|driven by|drove|as a result|result(?:ed|s|ing)? (?:of|from)|"
                    r"attribut(?:ed|able) to|owing to|caused by|reflect(?:s|ed|ing)?|led to|thanks to)\b")
_PRONOUNS = {"it": "", "its": "'s", "they": None, "their": None, "this": None, "these": None, "he": None, "she": None,
             "his": None, "her": None, "such": None}  # "it" and "its" can take a singular title's name
SUBJECT_TITLE_WORDS = 6  # a title this short names the passage's subject ("Metformin", "Bank of England")
_NAME_QUESTION = re.compile(r"^\W*(who|whom)\b|\bwhich\b|\bwhat (country|city|state|law|act|court|case|organ|drug|"
                            r"bank|treaty)\b")


@dataclass(frozen=True)
class Quote:
    text: str  # the sentence with its citation
    number: int
    score: float


def answer_type(question: str) -> str | None:
    """"reason", "number", "year", "name" or None: what kind of thing the question asks for."""
    lower = question.lower()
    for kind, pattern in (("reason", _REASON_QUESTION), ("number", _NUMBER_QUESTION), ("year", _DATE_QUESTION),
                          ("name", _NAME_QUESTION)):
        if pattern.search(lower):
            return kind
    return None


def best_quote(question: str, items: Sequence[EvidenceItem], encode) -> Quote | None:
    """The evidence sentence that most likely answers ``question``, cited, or None."""
    units = [unit for item in items if item.kind == "passage" for unit in _passage_units(item)]
    units += [(item, item.text, item.text) for item in items if item.kind == "fact"]
    titles = {item.number: content_words(item.title) for item in items}
    if not units:
        return None
    vectors = encode([question] + [read for _, _, read in units])
    similarities = vectors[1:] @ vectors[0]
    asked, kind = content_words(question), answer_type(question)
    best: tuple[float, EvidenceItem, str] | None = None
    for (item, sentence, read), similarity in zip(units, similarities):
        typed = kind is not None and _holds(kind, question, asked, sentence)
        if kind not in (None, "reason") and not typed:  # a cause may be given without a word for it
            continue
        standing = read if read != sentence else _standing_alone(sentence, item.title)
        score = _score(typed, asked, read, float(similarity), titles[item.number])
        if standing is None:
            score *= 0.5
        elif read != sentence:
            score *= CONTEXT_WEIGHT
        if best is None or score > best[0]:
            best = (score, item, standing or sentence)
    if best is None or best[0] < MIN_QUOTE_SCORE:
        return None
    score, item, sentence = best
    # Without its heading ("TEXT:") and the corpus's own bracketed numbers, which would read as citations.
    body = " ".join(without_citations(heading_split(sentence.strip())[1]).split()).rstrip(".!?")
    return Quote(f"{body[:1].upper()}{body[1:]} [{item.number}].", item.number, score)


def _passage_units(item: EvidenceItem) -> list[tuple[EvidenceItem, str, str]]:
    """(item, sentence, how it is read and quoted) for each sentence of a passage but its table
    rows. A sentence that opens with a pronoun the title cannot stand for ("These costs are
    expected to be recognized over 2.33 years") is read and quoted after the sentence before it,
    when that one stands alone: what it says is then whole."""
    units, before = [], None
    for sentence in split_sentences(item.text):
        if _is_table(sentence):
            before = None
            continue
        read = sentence
        if _standing_alone(sentence, item.title) is None and before is not None:
            read = f"{before} {sentence}"
        units.append((item, sentence, read))
        before = _standing_alone(sentence, item.title) if read == sentence else None
    return units


def _is_table(sentence: str) -> bool:
    """A row, or rows run together ("TABLE: | CONSOLIDATED | | 2019 ..." from an older index)."""
    return is_table_row(sentence) or sentence.lstrip().startswith("TABLE") or sentence.count(" | ") >= 2


def _standing_alone(sentence: str, title: str) -> str | None:
    """The sentence as it reads on its own: unchanged when it opens with no pronoun; with the
    title's name for "It"/"Its" when the title is a short name; None when it cannot stand alone."""
    first, _, rest = sentence.strip().partition(" ")
    ending = _PRONOUNS.get(first.lower().strip(",;:"), False)
    if ending is False:
        return sentence
    name = title.strip()
    if ending is None or not name or len(name.split()) > SUBJECT_TITLE_WORDS or not name[:1].isupper():
        return None
    return f"{name}{ending} {rest}"


def _score(typed: bool, asked: set[str], sentence: str, similarity: float, title: set[str]) -> float:
    """The passage's title counts as context: "The bank was founded in 1694" under "Bank of
    England" covers "Bank of England" too. ``typed``: the sentence holds what the question asks
    for (all candidates of a typed question but a reason's: "due to", "because" ... count extra)."""
    words = content_words(sentence)
    covered = len(asked & (words | title)) / len(asked) if asked else 0.0
    score = LEXICAL_WEIGHT * covered + SIMILARITY_WEIGHT * max(0.0, similarity)
    if typed:
        score += ANSWER_TYPE_BONUS
    if not words - asked:  # says nothing the question does not
        score *= 0.5
    return score


def holds_answer_type(question: str, text: str) -> bool:
    """Whether ``text`` holds what ``question`` asks for when it asks for a number, a year or a
    reason (a number or year the question does not already name, a word giving a cause); any
    text does for other questions."""
    kind = answer_type(question)
    return kind not in ("number", "year", "reason") or _holds(kind, question, content_words(question), text)


def _holds(kind: str, question: str, asked: set[str], sentence: str) -> bool:
    if kind == "reason":
        return bool(_CAUSE.search(sentence.lower()))
    if kind == "year":
        return bool(set(_YEAR.findall(sentence)) - set(_YEAR.findall(question)))
    if kind == "number":
        return bool(numbers(sentence) - numbers(question))
    return bool({stem(word) for word in _CAPITALISED.findall(sentence)} - asked)
