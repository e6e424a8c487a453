"""Graph facts first: when a retrieved fact answers the question, the answer opens with it.

A fact (head – relation → tail) answers a question when the question names one side and its
predicate matches the relation ("What does aspirin inhibit?" names the head and says
"inhibit"; "Who discovered penicillin?" names the tail and says "discover"): the other side is
what was asked. When it names both sides it is a yes/no question the fact confirms. The lead is
the fact in its own words, cited: "Aspirin inhibits cyclooxygenase [2]." Facts with the same
named side and relation share one sentence ("... cyclooxygenase [2] and thromboxane [5].").

Pure text, no model: the wording comes from the relation's verb, in the tense the question uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from adapters.fact_wording import FactLine, facts_sentence
from assistant.answering.attribution import content_words, stem
from indexing.words import WORD as _WORD

_YES_NO_START = {"is", "are", "was", "were", "does", "do", "did", "can", "could", "has", "have", "had", "should",
                 "will", "would", "may", "might", "must"}
_WH = {"what", "which", "who", "whom", "whose", "where", "when", "how", "name", "list"}
_PARTICLES = {"of", "to", "with", "as", "in", "on", "for", "by", "into", "from", "at"}
_CATEGORY_WORDS = {"kind", "type", "class", "sort", "group", "category", "form", "belong"}
MAX_PER_SENTENCE = 3


@dataclass(frozen=True)
class Lead:
    text: str  # the opening sentences, cited
    numbers: tuple[int, ...]  # the evidence it cites
    label: str | None  # "Yes" when it confirms a yes/no question
    kind: str = "facts"  # "facts"; "quote": an evidence sentence (assistant/answering/evidence_quotes.py); "table": cell
    # values or a value computed from them (assistant/answering/table_answers.py); "label": a yes/no label with the
    # evidence sentence it rests on (assistant/answering/yes_no.py); "bridge": a multi-hop question's two hops (assistant/answering/bridge.py)
    computed: tuple[str, ...] = ()  # numbers the lead computed from the cells it cites (attribution accepts them)


_ASKS_FOR_A_NAME = {"which", "what", "who", "whom"}
_CHOICE_WORDS = _ASKS_FOR_A_NAME | {"whose", "where", "when", "why", "how"}
# Where a question's asking clause may begin after a lead-in: "Double balloon enteroscopy: is it
# safe?", "In adults, does X help?", "Assessment of stenosis. Is it necessary?".
_CLAUSE_BREAKS = (":", ";", ". ", ", ", "--", " - ", "—")


def is_yes_no_question(question: str) -> bool:
    """Whether the question asks yes or no: an auxiliary verb opens it or its last clause
    ("Therapeutic anticoagulation in trauma: is it safe?"), with no "which", "what" or "who" in
    it, or it is a title-style question with a lead-in and no question word at all
    ("Aripiprazole: a new risk factor for gambling?")."""
    words = _WORD.findall(question.lower())
    if not words:
        return False
    if words[0] in _YES_NO_START:
        return not set(words) & _ASKS_FOR_A_NAME
    text = question.strip()
    last_break = max((text.rfind(mark) for mark in _CLAUSE_BREAKS), default=-1)
    if last_break < 0 or not text.endswith("?"):
        return False
    clause = _WORD.findall(text[last_break:].lower())
    if clause and clause[0] in _YES_NO_START:
        return not set(clause) & _ASKS_FOR_A_NAME
    return not set(words) & _CHOICE_WORDS


def lead_for(question: str, facts: Sequence[FactLine], max_sentences: int) -> Lead | None:
    """The opening of the answer from the facts that answer ``question``, or None. Facts with
    the same relation whose named sides overlap ("warfarin", "effect of warfarin") share one
    sentence, and facts that give the same answer share its mention, citing each."""
    if max_sentences <= 0 or not facts:
        return None
    asked = _normal(question)
    stems = content_words(question)
    yes_no = is_yes_no_question(question)
    groups: list[_Group] = []
    for fact in facts:
        if _spans_table_lines(fact):
            continue
        side = _answered_side(fact, asked, stems, yes_no)
        if side is None:
            continue
        anchor, answer = (fact.head, fact.tail) if side in ("tail", "both") else (fact.tail, fact.head)
        group = next((g for g in groups if g.takes(side, fact.relation, _normal(anchor))), None)
        if group is None:
            group = _Group(side, fact.relation, _normal(anchor))
            groups.append(group)
        group.add(_normal(answer), fact)
    if not groups:
        return None
    chosen = groups[:max_sentences]
    sentences = [facts_sentence(list(group.answers.values())[:MAX_PER_SENTENCE], group.side, question) for group in chosen]
    numbers = tuple(n for group in chosen for entry in list(group.answers.values())[:MAX_PER_SENTENCE]
                    for n in entry[1])
    label = "Yes" if any(group.side == "both" for group in chosen) else None
    text = " ".join(sentences)
    return Lead(f"{label}. {text}" if label else text, numbers, label)


@dataclass
class _Group:
    """Facts one sentence of the lead states: one side, one relation, overlapping named sides;
    ``answers`` maps each distinct answer to the first fact that gives it and every citation."""
    side: str
    relation: str
    anchor: str
    answers: dict = field(default_factory=dict)

    def takes(self, side: str, relation: str, anchor: str) -> bool:
        return side == self.side and relation == self.relation and (anchor in self.anchor or self.anchor in anchor)

    def add(self, answer: str, fact: FactLine) -> None:
        first, numbers = self.answers.get(answer, (fact, []))
        self.answers[answer] = (first, numbers + [fact.number])


def _spans_table_lines(fact: FactLine) -> bool:
    """A side running across a line break or a cell border was parsed from a table's rows as if
    they were a sentence ("devices sell 15,343\nActive users"): cells, not a subject or an object.
    On TAT-QA such facts opened answers and none held the answer; the table reading
    (table_answers.py) reads those rows by their columns."""
    return any("\n" in side or "|" in side for side in (fact.head, fact.tail))


def _answered_side(fact: FactLine, asked: str, stems: set[str], yes_no: bool) -> str | None:
    """Which side of the fact the question asks for: "tail", "head", "both" (a yes/no question
    the fact confirms), or None when the fact does not answer it. The named side must stand
    where the question puts it: before the verb it is the subject ("What does aspirin
    inhibit?"), after it the object ("Which president appointed Earl Warren?"), unless "by"
    marks it as the agent."""
    head, tail = _position(fact.head, asked), _position(fact.tail, asked)
    if not _relation_matches(fact.relation, stems, fact, asked):
        return None
    if head is not None and tail is not None:
        return "both" if yes_no else None
    if yes_no or (head is None and tail is None):
        return None
    verb = _verb_position(fact.relation, asked)
    if head is not None:
        subject = fact.relation == "is_a" or verb is None or head < verb or asked[:head].endswith("by ")
        return "tail" if subject else None
    if fact.relation == "is_a":
        return None
    return "head" if verb is None or tail > verb else None


def _position(name: str, asked: str) -> int | None:
    """Where the question names the entity, as whole words (or its plural); None: it does not."""
    normal = _normal(name)
    if not normal:
        return None
    found = re.search(rf"(?<![a-z0-9]){re.escape(normal)}(?:s|es)?(?![a-z0-9])", asked)
    return found.start() if found else None


def _verb_position(relation: str, asked: str) -> int | None:
    verb = stem(relation.split("_")[0])
    for match in _WORD.finditer(asked):
        if stem(match.group()) == verb:
            return match.start()
    return None


def _relation_matches(relation: str, stems: set[str], fact: FactLine, asked: str) -> bool:
    if relation == "is_a":  # "What is X?", "What kind of drug is X?": nothing asked beyond X
        words = _WORD.findall(asked)
        if not words or words[0] not in ("what", "who", "is", "are", "was", "were") \
                or not set(words) & {"is", "are", "was", "were", "belong"}:
            return False
        rest = stems - content_words(fact.head) - content_words(fact.tail)
        return rest <= {stem(w) for w in _CATEGORY_WORDS} | {"drug", "law", "court", "institution", "bank"}
    if relation == "abbreviation_of":
        return bool({"stand", "abbreviation", "short", "acronym"} & {stem(w) for w in _WORD.findall(asked)})
    words = [w for w in relation.split("_") if w not in _PARTICLES]
    return bool(words) and all(stem(w) in stems for w in words)


def _normal(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))
