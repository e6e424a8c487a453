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

- polarity and order: a sentence that denies what an item asserts, or asserts what it denies
  ("Metformin does not treat diabetes" against "Metformin is a first-line treatment for
  diabetes"), or states its numbers in another order where order is meaning ("from $5,000 to
  $2,500" against "from $2,500 to $5,000"), scores at most that cap against it and is marked a
  contradiction when nothing else supports it (assistant/answering/findings.py says what denies);
- a "Yes"/"No" label is judged by the sentence after it: the label a reader takes from that
  sentence must be the label it follows.

An item supports a sentence at ``threshold`` or more. Citations are then made to agree: a cited
item that does not support its sentence is dropped, a supported sentence without a citation
gets its best item, an invalid number goes. With ``strict`` an unsupported sentence is left out.

No NLI or cross-encoder model ships inside a package here (the ones on PyPI download their
weights at first use), so polarity is read from words: negators, null-finding words, p-values.
Direction between two names ("A inhibits B" vs "B inhibits A") is still not checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from adapters.prompts import NO_ANSWER, EvidenceItem
from assistant.answering.findings import negated, reads_as_no
from assistant.answering.sentences import answer_sentences, citations_in, split_sentences, without_citations
from indexing.tables import header_line_for, is_table_row
from indexing.words import WORD

DEFAULT_THRESHOLD = 0.55
NUMBER_MISMATCH_CAP = 0.25  # the most a sentence scores against an item missing one of its numbers
# A claim that shares at least this share of its words with a unit, and lacks at most
# POLARITY_MISSING_WORDS of them, says the same thing of the same subject: if one of them denies it (or
# states its numbers in another order), the unit contradicts the claim rather than supports it. One word
# of leeway lets "does not treat" meet "treatment"; two let "did not track a price-weighted index" meet
# "tracked the S&P 500", which it does not contradict.
POLARITY_OVERLAP = 0.5
POLARITY_MISSING_WORDS = 1
# Words that make the order of a claim's numbers part of its meaning.
_DIRECTION = frozenset({"from", "to", "than", "before", "after", "rose", "fell", "increased", "decreased",
                        "grew", "dropped", "declined", "raised", "lowered", "cut", "then"})
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
    contradiction: bool = False  # its polarity contradicts the evidence it matches best (or a label its reason)

    def as_json(self) -> dict:
        return {"text": self.text, "citations": list(self.citations), "supported": self.supported,
                "score": round(self.score, 3), "claim": self.claim}

    def as_record(self) -> dict:
        """as_json plus what the evaluation needs to check the correction."""
        return {**self.as_json(), "draft_citations": list(self.draft_citations),
                "supporting": sorted(self.support), "contradiction": self.contradiction}


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
    """A piece of one evidence item that a sentence is compared with: a fact, a passage's
    sentence, or a table row (its header's words and numbers count as its context)."""
    number: int
    text: str
    words: frozenset[str]
    numbers: frozenset[str]
    ordered_numbers: tuple[str, ...] = ()  # the piece's own numbers in the order it states them
    negated: bool = False
    table_row: bool = False


def _units(items: Sequence[EvidenceItem]) -> list[_Unit]:
    units = []
    for item in items:
        pieces = [item.text] if item.kind == "fact" else (split_sentences(item.text) or [item.text])
        context = content_words(item.title) if item.title else set()
        for piece in pieces:
            row = is_table_row(piece)
            header = (header_line_for(item.text, piece) or "") if row else ""
            units.append(_Unit(item.number, piece, frozenset(content_words(piece) | context | content_words(header)),
                               frozenset(numbers(piece) | numbers(item.title) | numbers(header)),
                               ordered_numbers(piece), negated(piece), row))
    return units


@dataclass(frozen=True)
class Support:
    """Each claim's (row) score against each unit (column), and where the claim's polarity or
    number order contradicts a unit that would otherwise support it."""
    scores: np.ndarray
    contradicts: np.ndarray  # bool, same shape


def support_matrix(claims: Sequence[str], units: Sequence[_Unit], similarity: np.ndarray,
                   given: Sequence[set[str]] | None = None, computed: Iterable[str] = (),
                   polar: Sequence[bool] | None = None) -> Support:
    """Score of each claim (row) against each unit (column); ``similarity`` holds their cosines.
    ``given``: per claim, the words it may take from the question: only the words it adds must
    be in the evidence, and a claim that adds none (it restates the question) scores at most
    the number-mismatch cap, since it answers nothing. ``computed``: numbers the answer computed
    from the cells it cites (a table's change or average), which no unit holds as written.

    A claim that denies what a unit asserts (or asserts what it denies) is not supported by it,
    however many words they share; nor is one that states the unit's numbers in another order
    where order is meaning ("from 5,000 to 2,500"). ``polar``: per claim, whether to check that
    (not for a yes/no label, whose claim is the question: its reason decides, see below)."""
    scores = np.zeros((len(claims), len(units)))
    contradicts = np.zeros((len(claims), len(units)), dtype=bool)
    allowed = set().union(*(numbers(value) for value in computed))
    for row, claim in enumerate(claims):
        words, wanted_numbers, wanted_names = content_words(claim), numbers(claim) - allowed, names(claim)
        stated = set(words)  # the whole claim, question words too: what a denial is about
        check = polar is None or polar[row]
        claim_negated = negated(claim)
        claim_order = ordered_numbers(claim) if _DIRECTION & set(_lower_words(claim)) else ()
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
            elif check and _same_statement(stated, unit) and (claim_negated != unit.negated
                                                                     or _out_of_order(claim_order, unit)):
                contradicts[row, column] = score >= NUMBER_MISMATCH_CAP
                score = min(score, NUMBER_MISMATCH_CAP)
            scores[row, column] = score
    return Support(scores, contradicts)


def _same_statement(words: set[str], unit: _Unit) -> bool:
    missing = len(words - unit.words)
    return bool(words) and 1 - missing / len(words) >= POLARITY_OVERLAP and missing <= POLARITY_MISSING_WORDS


def ordered_numbers(text: str) -> tuple[str, ...]:
    return tuple(n.replace(",", "").rstrip(".") for n in _NUMBER.findall(text))


def _lower_words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text)]


def _out_of_order(claim_order: Sequence[str], unit: _Unit) -> bool:
    """Whether the claim names two or more of the unit's numbers in another order than the
    unit does (a table row's order is its columns', not a statement's, so rows are exempt)."""
    if unit.table_row or len(claim_order) < 2:
        return False
    stated = [n for n in claim_order if n in unit.ordered_numbers]
    if len(stated) < 2:
        return False
    position = 0
    for number in stated:  # a subsequence of the unit's order?
        try:
            position = unit.ordered_numbers.index(number, position) + 1
        except ValueError:
            return True
    return False


def attribute(text: str, items: Sequence[EvidenceItem], encode, question: str = "", *,
              threshold: float = DEFAULT_THRESHOLD, strict: bool = False,
              max_sentences: int | None = None, computed: Iterable[str] = ()) -> list[AnswerSentence]:
    """The answer's sentences with the citations their evidence supports. ``encode`` maps a
    list of texts to normalised vectors (the retrieval's embedder). A yes/no/maybe label is a
    sentence of its own, judged by the sentence after it (its reason): supported when the reason
    is, and a contradiction (unsupported) when the reason has the other polarity ("No. X is
    associated with Y"). A label with no reason after it is judged as a claim about the question."""
    return attribute_sentences(answer_sentences(text)[:max_sentences], items, encode, question,
                               threshold=threshold, strict=strict, computed=computed)


def attribute_sentences(answer: Sequence[str], items: Sequence[EvidenceItem], encode, question: str = "", *,
                        threshold: float = DEFAULT_THRESHOLD, strict: bool = False,
                        computed: Iterable[str] = ()) -> list[AnswerSentence]:
    """:func:`attribute` for an answer already split into sentences (``answer_sentences``).
    Each sentence is judged on its own (a label with its reason), so the sentences of an answer
    that is still being written can be attributed as each one ends (assistant/answering/grounded_stream.py)."""
    pieces = _pieces(answer, question)
    if not pieces:
        return []
    units = _units(items)
    valid = {item.number for item in items}
    checked = [i for i, piece in enumerate(pieces) if _is_claim(piece.shown, piece.claim)]
    scores = np.zeros((len(pieces), len(units)))
    contradicts = np.zeros((len(pieces), len(units)), dtype=bool)
    if checked and units:
        vectors = encode([pieces[i].claim for i in checked] + [u.text for u in units])
        similarity = vectors[:len(checked)] @ vectors[len(checked):].T
        asked = content_words(question)
        given = [set() if pieces[i].may_restate else asked for i in checked]
        support = support_matrix([pieces[i].claim for i in checked], units, similarity, given, computed,
                                 [pieces[i].label is None for i in checked])
        scores[checked], contradicts[checked] = support.scores, support.contradicts
    sentences = []
    for i, piece in enumerate(pieces):
        if i not in checked:
            sentences.append(AnswerSentence(_with_citations(piece.shown, []), (), True, 1.0, claim=False,
                                            draft_citations=tuple(citations_in(piece.shown))))
            continue
        sentences.append(_judged(piece, units, scores[i], contradicts[i], valid, threshold))
    closest = {i: units[int(np.argmax(scores[i]))].text for i in checked if pieces[i].label and units}
    sentences = _labels_judged_by_reasons(pieces, sentences, question, closest)
    if strict:
        sentences = [s for s in sentences if s.supported]
    return sentences


def _judged(piece: "_Piece", units: Sequence[_Unit], scores: np.ndarray, contradicts: np.ndarray, valid: set[int],
            threshold: float) -> AnswerSentence:
    by_item: dict[int, float] = {}
    for unit, score in zip(units, scores):
        by_item[unit.number] = max(by_item.get(unit.number, 0.0), float(score))
    supporting = {n: s for n, s in by_item.items() if s >= threshold}
    cited = [n for n in citations_in(piece.shown) if n in valid and n in supporting]
    if supporting and not cited:
        cited = [max(supporting, key=lambda n: (supporting[n], -n))]
    best = max(by_item.values(), default=0.0)
    contradiction = not supporting and bool(contradicts.any())
    return AnswerSentence(_with_citations(piece.shown, cited), tuple(cited), bool(supporting), best,
                          support=supporting, draft_citations=tuple(citations_in(piece.shown)),
                          contradiction=contradiction)


def _labels_judged_by_reasons(pieces: Sequence["_Piece"], sentences: list[AnswerSentence], question: str,
                              closest: dict[int, str]) -> list[AnswerSentence]:
    """A label is judged by its reason (the sentence after it) when that is supported, else by
    the evidence sentence closest to the question (``closest``: piece index -> that sentence):
    supported when the label a reader takes from it is the label given, a contradiction (left
    out under strict grounding like any unsupported claim) when it is the other one."""
    judged = list(sentences)
    for i, piece in enumerate(pieces):
        if piece.label is None or piece.label == "Maybe" or not sentences[i].claim:
            continue
        has_reason = i + 1 < len(pieces) and sentences[i + 1].claim and sentences[i + 1].supported
        backing = sentences[i + 1] if has_reason else sentences[i]
        read_from = pieces[i + 1].claim if has_reason else closest.get(i)
        if read_from is None:
            continue
        agrees = _reason_label(read_from, question) == piece.label
        label = sentences[i]
        cites = agrees and not has_reason  # a label with its reason after it leaves the citing to the reason
        judged[i] = AnswerSentence(label.text if cites else without_citations(label.text),
                                   label.citations if cites else (), backing.supported and agrees,
                                   backing.score if agrees else 0.0, support=backing.support if agrees else {},
                                   draft_citations=label.draft_citations, contradiction=not agrees)
    return judged


def _reason_label(reason: str, question: str) -> str:
    """The label a reason sentence gives the question: "No" when it reports an absence or denies
    (and the question does not), else "Yes"."""
    return "No" if reads_as_no(reason) != negated(question) else "Yes"


# Possessive citations: giving back a digit or a space could never reach the punctuation after them.
_LABEL_LEAD = re.compile(r"^\s*(yes|no|maybe)\s*(?:\[\d++\]\s*+)*+[,.;:!]\s*(.*)$", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class _Piece:
    shown: str  # the sentence as shown
    claim: str  # the text its support is judged on
    may_restate: bool  # whether it may restate the question (a label, or the reason after one)
    label: str | None = None  # "Yes", "No" or "Maybe" for a label


def _pieces(answer: Sequence[str], question: str) -> list[_Piece]:
    """The answer's sentences as judged. A label leading a sentence ("No, metformin does not
    ...") becomes its own "No."; the rest may restate the question (negated, it is the answer)."""
    pieces: list[_Piece] = []
    for sentence in answer:
        match = _LABEL_LEAD.match(sentence)
        if match is None:
            pieces.append(_Piece(sentence, without_citations(sentence), False))
            continue
        label, rest = match.group(1).capitalize(), match.group(2).strip()
        keeps_content = bool(content_words(without_citations(rest)))
        cited = "".join(f" [{n}]" for n in citations_in(sentence)) if not keeps_content else ""
        pieces.append(_Piece(f"{label}{cited}.", question or label, True, label))
        if keeps_content:
            pieces.append(_Piece(rest[:1].upper() + rest[1:], without_citations(rest), True))
    return pieces


def is_bare_label(sentence: str) -> bool:
    """"Yes.", "No [3]." or "Maybe": a label with nothing after it in its sentence."""
    match = _LABEL_LEAD.match(sentence.strip() + ("" if sentence.strip()[-1:] in ".!;:," else "."))
    return match is not None and not match.group(2).strip()


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
