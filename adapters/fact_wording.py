"""How a graph fact reads as a sentence of an answer: "Aspirin inhibits cyclooxygenase [2].",
"Alexander Fleming discovered penicillin [1]." The relation's verb in the question's tense, an
article where a category noun needs one, several answers listed with their citations.

Answers in the chat open with these sentences (assistant/answering/fact_answers.py) and the adapters are
taught them (adapters/dataset.py), so the wording lives here, below both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from indexing.words import WORD as _WORD

_PAST = {"make": "made", "write": "wrote", "lead": "led", "give": "gave", "take": "took", "hold": "held",
         "set": "set", "begin": "began", "find": "found", "become": "became", "build": "built", "win": "won",
         "bring": "brought", "sell": "sold", "pay": "paid", "draw": "drew", "meet": "met", "buy": "bought",
         "have": "had", "know": "knew", "choose": "chose", "run": "ran", "see": "saw", "go": "went",
         "put": "put", "split": "split", "rise": "rose", "fall": "fell", "say": "said", "send": "sent",
         "spend": "spent", "lose": "lost", "keep": "kept", "leave": "left", "show": "showed", "be": "was"}
_PRESENT = {"have": "has", "be": "is", "do": "does", "go": "goes"}
_DETERMINERS = {"a", "an", "the", "one", "this", "that", "these", "those", "its", "his", "her", "their", "some",
                "any", "each", "every", "no", "many", "several", "two", "three"}
_ORDINALS = {"first", "second", "third", "last", "only", "main", "sole", "largest", "oldest"}


@dataclass(frozen=True)
class FactLine:
    """One numbered fact as the lead sees it."""
    number: int
    head: str
    relation: str
    tail: str


def fact_sentence(fact: FactLine, question: str = "") -> str:
    """One fact in its own words with its citation, in the question's tense: "Vitamin K
    reverses warfarin [2]." (the form leads take and adapters are taught)."""
    return facts_sentence([(fact, [fact.number])], "tail", question)


def facts_sentence(entries: Sequence[tuple[FactLine, list[int]]], side: str, question: str) -> str:
    """"Aspirin inhibits cyclooxygenase [2]." or, asking for the head, "Alexander Fleming
    discovered penicillin [1]."; several answers are listed, each with its citations."""
    first = entries[0][0]
    if len(entries) == 1:
        verb = _verb_phrase(first.relation, first.head, question)
        tail = _with_article(first.tail) if first.relation == "is_a" else first.tail
        return _capitalised(f"{first.head} {verb} {tail} {_marks(entries[0][1])}") + "."
    if side == "head":
        listed = _listing([f"{fact.head} {_marks(numbers)}" for fact, numbers in entries])
        return _capitalised(f"{listed} {_verb_phrase(first.relation, 'them', question)} {first.tail}") + "."
    listed = _listing([f"{fact.tail} {_marks(numbers)}" for fact, numbers in entries])
    return _capitalised(f"{first.head} {_verb_phrase(first.relation, first.head, question)} {listed}") + "."


def _marks(numbers: Sequence[int]) -> str:
    return " ".join(f"[{n}]" for n in numbers)


def _with_article(noun: str) -> str:
    """"biguanide" -> "a biguanide", "first ACE inhibitor" -> "the first ACE inhibitor"; names,
    plurals and phrases that already have a determiner stay as they are."""
    words = noun.split()
    if not words or not words[0][:1].islower() or words[0] in _DETERMINERS or _plural(noun):
        return noun
    if words[0] in _ORDINALS or words[0].endswith("est"):
        return "the " + noun
    return ("an " if words[0][0] in "aeiou" else "a ") + noun


def _listing(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _verb_phrase(relation: str, subject: str, question: str) -> str:
    """The relation as a verb phrase for ``subject``, in the question's tense."""
    if relation == "is_a":
        return "was" if _past(question, "be") else ("are" if _plural(subject) else "is")
    if relation == "abbreviation_of":
        return "stands for" if not _plural(subject) else "stand for"
    words = relation.split("_")
    verb, rest = words[0], words[1:]
    if _past(question, verb):
        form = _PAST.get(verb) or _regular_past(verb)
    elif _plural(subject):
        form = verb
    else:
        form = _PRESENT.get(verb) or _third_person(verb)
    return " ".join([form, *rest])


def _past(question: str, verb: str) -> bool:
    """The question is in the past: it says "did", "was"/"were", or the verb in a past form."""
    words = set(_WORD.findall(question.lower()))
    return bool(words & {"did", "was", "were"}) or bool(words & {_PAST.get(verb, ""), _regular_past(verb)})


def _regular_past(verb: str) -> str:
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and len(verb) > 2 and verb[-2] not in "aeiou":
        return verb[:-1] + "ied"
    return verb + "ed"


def _third_person(verb: str) -> str:
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if verb.endswith("y") and len(verb) > 2 and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def _plural(subject: str) -> bool:
    last = subject.split()[-1].lower() if subject.split() else ""
    return subject == "them" or (last.endswith("s") and not last.endswith(("ss", "us", "is", "ics")) and len(last) > 3)


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text
