"""Which evidence supports each sentence of an answer, after it is generated.

Every answer sentence is compared with every numbered evidence item the prompt held (a graph
fact, or a passage sentence by sentence, its title counting as context) and gets a support
score in [0, 1] from what it shares with the item:

- content words (stop words dropped, crude stems so "inhibits" meets "inhibit"): the share of
  the sentence's words the item holds;
- names (capitalised words after the first): the share the item holds;
- numbers ("1913", "$2,500", "eight"): a number the item does not hold caps the score low,
  whatever else matches, since a changed number is the commonest plausible-looking error;
- embedding similarity with the retrieval's own embedder.

An item supports a sentence at ``threshold`` or more. Citations are then made to agree: a cited
item that does not support its sentence is dropped, a supported sentence without a citation
gets its best item, an invalid number goes. With ``strict`` an unsupported sentence is left out.

No NLI or cross-encoder model ships in a package here, so negation and direction ("A inhibits
B" vs "B inhibits A") are not checked; word overlap plus similarity is what this can see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from adapters.prompts import NO_ANSWER, EvidenceItem
from assistant.sentences import answer_sentences, citations_in, split_sentences, without_citations
from indexing.words import WORD

DEFAULT_THRESHOLD = 0.55
NUMBER_MISMATCH_CAP = 0.25  # the most a sentence scores against an item missing one of its numbers
_NUMBER = re.compile(r"\d++(?:[.,]\d++)*+")  # possessive: a number never gives digits back
_LABELS = {"yes", "no", "maybe"}
_NUMBER_WORDS = {"one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
                 "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "first": "1",
                 "second": "2", "third": "3", "fourth": "4", "fifth": "5", "sixth": "6", "ninth": "9"}
# The few irregular forms that matter when a relation verb meets the answer's wording.
_IRREGULAR = {"found": "find", "made": "make", "wrote": "write", "written": "write", "led": "lead",
              "began": "begin", "begun": "begin", "gave": "give", "given": "give", "took": "take",
              "taken": "take", "held": "hold", "won": "win", "became": "become", "built": "build",
              "brought": "bring", "sold": "sell", "paid": "pay", "set": "set", "chose": "choose",
              "chosen": "choose", "drew": "draw", "drawn": "draw", "met": "meet", "bought": "buy"}


@dataclass(frozen=True)
class AnswerSentence:
    """One sentence of an answer as shown: its text with the citations it keeps."""
    text: str
    citations: tuple[int, ...]
    supported: bool
    score: float  # the best item's support, 0..1
    claim: bool = True  # False for a sentence that asserts nothing ("The evidence does not answer this.")
    support: dict[int, float] = field(default_factory=dict, compare=False)  # item number -> score, supporting only
    draft_citations: tuple[int, ...] = ()  # what the generated sentence cited before the correction

    def as_json(self) -> dict:
        return {"text": self.text, "citations": list(self.citations), "supported": self.supported,
                "score": round(self.score, 3), "claim": self.claim}

    def as_record(self) -> dict:
        """as_json plus what the evaluation needs to check the correction."""
        return {**self.as_json(), "draft_citations": list(self.draft_citations),
                "supporting": sorted(self.support)}


def stem(word: str) -> str:
    """A crude English stem, enough for an answer's verb to meet a relation's ("reverses" and
    "reversed" meet "reverse"; "discovered" meets "discover")."""
    word = word.lower().replace("\u2019", "'")
    if word.endswith("'s"):
        word = word[:-2]
    word = _IRREGULAR.get(word, word)
    for suffix in ("ing", "ied", "ies", "ed", "es", "s", "e", "y"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            word = word[: -len(suffix)]
            break
    return word


def _stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS) - {"first", "second", "third", "one", "two", "three", "four", "five", "six", "eight",
                                    "nine", "ten", "eleven", "twelve", "fifteen", "twenty", "fifty", "hundred"}


_STOP = _stop_words()


def content_words(text: str) -> set[str]:
    """Stems of the words that carry content (numbers included, as digits)."""
    words = set()
    for word in WORD.findall(text):
        lower = word.lower()
        if lower in _STOP or lower in _LABELS:
            continue
        words.add(_NUMBER_WORDS.get(lower) or stem(lower))
    return words


def numbers(text: str) -> set[str]:
    """Numbers as written in digits ("2,500" and "2500" alike) or as small number words."""
    found = {n.replace(",", "").rstrip(".") for n in _NUMBER.findall(text)}
    found |= {_NUMBER_WORDS[w.lower()] for w in WORD.findall(text) if w.lower() in _NUMBER_WORDS}
    return found


def names(text: str) -> set[str]:
    """Stems of capitalised words that are not the sentence's first word (proper names, mostly)."""
    words = WORD.findall(text)
    return {stem(w) for w in words[1:] if w[:1].isupper() and w.lower() not in _STOP}


@dataclass(frozen=True)
class _Unit:
    """A piece of one evidence item that a sentence is compared with."""
    number: int
    text: str
    words: frozenset[str]
    numbers: frozenset[str]


def _units(items: Sequence[EvidenceItem]) -> list[_Unit]:
    units = []
    for item in items:
        pieces = [item.text] if item.kind == "fact" else (split_sentences(item.text) or [item.text])
        context = content_words(item.title) if item.title else set()
        for piece in pieces:
            units.append(_Unit(item.number, piece, frozenset(content_words(piece) | context),
                               frozenset(numbers(piece) | numbers(item.title))))
    return units


def support_matrix(claims: Sequence[str], units: Sequence[_Unit], similarity: np.ndarray,
                   given: Sequence[set[str]] | None = None) -> np.ndarray:
    """Score of each claim (row) against each unit (column); ``similarity`` holds their cosines.
    ``given``: per claim, the words it may take from the question: only the words it adds must
    be in the evidence, and a claim that adds none (it restates the question) scores at most
    the number-mismatch cap, since it answers nothing."""
    scores = np.zeros((len(claims), len(units)))
    for row, claim in enumerate(claims):
        words, wanted_numbers, wanted_names = content_words(claim), numbers(claim), names(claim)
        if given is not None and given[row]:
            words = words - given[row]
            if not words:
                scores[row, :] = np.minimum(0.5 * np.maximum(similarity[row], 0.0), NUMBER_MISMATCH_CAP)
                continue
        for column, unit in enumerate(units):
            lexical = len(words & unit.words) / len(words) if words else 0.0
            cosine = max(0.0, float(similarity[row, column]))
            if wanted_names:
                score = 0.4 * lexical + 0.2 * len(wanted_names & unit.words) / len(wanted_names) + 0.4 * cosine
            else:
                score = 0.5 * lexical + 0.5 * cosine
            if not wanted_numbers <= unit.numbers:
                score = min(score, NUMBER_MISMATCH_CAP)
            scores[row, column] = score
    return scores


def attribute(text: str, items: Sequence[EvidenceItem], encode, question: str = "", *,
              threshold: float = DEFAULT_THRESHOLD, strict: bool = False,
              max_sentences: int | None = None) -> list[AnswerSentence]:
    """The answer's sentences with the citations their evidence supports. ``encode`` maps a
    list of texts to normalised vectors (the retrieval's embedder). A yes/no/maybe label is a
    sentence of its own, judged as a claim about the question (its polarity is not checked), so
    strict grounding keeps "No." when it drops an unsupported reason after it."""
    return attribute_sentences(answer_sentences(text)[:max_sentences], items, encode, question,
                               threshold=threshold, strict=strict)


def attribute_sentences(answer: Sequence[str], items: Sequence[EvidenceItem], encode, question: str = "", *,
                        threshold: float = DEFAULT_THRESHOLD, strict: bool = False) -> list[AnswerSentence]:
    """:func:`attribute` for an answer already split into sentences (``answer_sentences``).
    Each sentence is judged on its own, so the sentences of an answer that is still being
    written can be attributed as each one ends (assistant/grounded_stream.py)."""
    pieces = _pieces(answer, question)
    if not pieces:
        return []
    units = _units(items)
    valid = {item.number for item in items}
    checked = [i for i, (shown, claim, _) in enumerate(pieces) if _is_claim(shown, claim)]
    scores = np.zeros((len(pieces), len(units)))
    if checked and units:
        vectors = encode([pieces[i][1] for i in checked] + [u.text for u in units])
        similarity = vectors[:len(checked)] @ vectors[len(checked):].T
        asked = content_words(question)
        given = [set() if pieces[i][2] else asked for i in checked]
        scores[checked] = support_matrix([pieces[i][1] for i in checked], units, similarity, given)
    sentences = []
    for i, (piece, _, _) in enumerate(pieces):
        if i not in checked:
            sentences.append(AnswerSentence(_with_citations(piece, []), (), True, 1.0, claim=False,
                                            draft_citations=tuple(citations_in(piece))))
            continue
        by_item: dict[int, float] = {}
        for unit, score in zip(units, scores[i]):
            by_item[unit.number] = max(by_item.get(unit.number, 0.0), float(score))
        supporting = {n: s for n, s in by_item.items() if s >= threshold}
        cited = [n for n in citations_in(piece) if n in valid and n in supporting]
        if supporting and not cited:
            cited = [max(supporting, key=lambda n: (supporting[n], -n))]
        best = max(by_item.values(), default=0.0)
        sentences.append(AnswerSentence(_with_citations(piece, cited), tuple(cited), bool(supporting), best,
                                        support=supporting, draft_citations=tuple(citations_in(piece))))
    if strict:
        sentences = [s for s in sentences if s.supported]
    return sentences


# Possessive citations: giving back a digit or a space could never reach the punctuation after them.
_LABEL_LEAD = re.compile(r"^\s*(yes|no|maybe)\s*(?:\[\d++\]\s*+)*+[,.;:!]\s*(.*)$", re.IGNORECASE | re.DOTALL)


def _pieces(answer: Sequence[str], question: str) -> list[tuple[str, str, bool]]:
    """(sentence as shown, the text its support is judged on, whether it may restate the
    question). A label leading a sentence ("No, metformin does not ...") becomes its own "No.",
    judged on the question; the rest may restate the question (negated, it is the answer)."""
    pieces: list[tuple[str, str, bool]] = []
    for sentence in answer:
        match = _LABEL_LEAD.match(sentence)
        if match is None:
            pieces.append((sentence, without_citations(sentence), False))
            continue
        label, rest = match.group(1).capitalize(), match.group(2).strip()
        keeps_content = bool(content_words(without_citations(rest)))
        cited = "".join(f" [{n}]" for n in citations_in(sentence)) if not keeps_content else ""
        pieces.append((f"{label}{cited}.", question or label, True))
        if keeps_content:
            pieces.append((rest[:1].upper() + rest[1:], without_citations(rest), True))
    return pieces


def render(sentences: Sequence[AnswerSentence]) -> str:
    """The answer text: its sentences joined (the evidence-does-not-answer line when none is left)."""
    return " ".join(s.text for s in sentences) or NO_ANSWER


def _is_claim(piece: str, claim: str) -> bool:
    return without_citations(piece).rstrip(".") != NO_ANSWER.rstrip(".") and bool(content_words(claim))


def _with_citations(piece: str, cited: Sequence[int]) -> str:
    """The sentence with exactly ``cited`` as its citations, before its final punctuation."""
    bare = without_citations(piece)
    if not cited:
        return bare
    marks = " " + " ".join(f"[{n}]" for n in cited)
    stripped = bare.rstrip()
    end = len(stripped)
    while end and stripped[end - 1] in ".!?\"')\u201d\u2019":
        end -= 1
    return stripped[:end] + marks + stripped[end:]
