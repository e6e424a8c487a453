"""Abbreviations defined in a sentence, "long form (ABBR)" or "ABBR (long form)", found with
Schwartz & Hearst's (2003) algorithm on the sentence text and returned as "abbreviation_of"
relations.
"""

from __future__ import annotations

import re

from indexing.entity_keys import canonical_key
from indexing.mention_spans import PATTERN_CONFIDENCE, MentionSpan, SpanRelation

_PARENS = re.compile(r"\(([^()]{1,80})\)")


def _looks_abbreviation(text: str) -> bool:
    """2-10 characters, no spaces, starts with a letter, mostly upper-case letters: ACE, NSAIDs."""
    letters = [c for c in text if c.isalpha()]
    if not 2 <= len(text) <= 10 or " " in text or not text[0].isalpha() or len(letters) < 2:
        return False
    return sum(c.isupper() for c in letters) * 2 > len(letters)


def _long_form(short: str, candidate: str) -> str | None:
    """The shortest tail of ``candidate`` whose characters contain the abbreviation's letters in
    order, the first one starting a word (Schwartz & Hearst's algorithm)."""
    s, i = len(short) - 1, len(candidate) - 1
    while s >= 0:
        c = short[s].lower()
        if not c.isalnum():
            s -= 1
            continue
        while i >= 0 and (candidate[i].lower() != c or (s == 0 and i > 0 and candidate[i - 1].isalnum())):
            i -= 1
        if i < 0:
            return None
        i -= 1
        s -= 1
    start = candidate.rfind(" ", 0, i + 1) + 1
    found = candidate[start:].strip(" ,;:")
    return found if len(found) > len(short) + 1 else None


def find_abbreviations(sent_text: str) -> list[tuple[str, str]]:
    """(ABBR, long form) pairs from "long form (ABBR)" and "ABBR (long form)"."""
    pairs = []
    for match in _PARENS.finditer(sent_text):
        inner = match.group(1).strip()
        before = sent_text[:match.start()].split()
        if _looks_abbreviation(inner) and before:
            window = before[-min(len(inner) + 5, 2 * len(inner)):]
            found = _long_form(inner, " ".join(window).strip(",;:"))
            if found:
                pairs.append((inner, found))
        elif " " in inner and before and _looks_abbreviation(before[-1].strip(",;:")):
            short = before[-1].strip(",;:")
            found = _long_form(short, inner)
            if found:
                pairs.append((short, found))
    return pairs


def abbreviation_relations(sent_text: str) -> list[SpanRelation]:
    rels = []
    for short, long in find_abbreviations(sent_text):
        long = re.sub(r"^(the|a|an)\s+", "", long, flags=re.IGNORECASE)
        head = MentionSpan(short, canonical_key(short), "CONCEPT")
        tail = MentionSpan(long, canonical_key(long), "CONCEPT")
        if head.key and tail.key and head.key != tail.key:
            confidence = PATTERN_CONFIDENCE["abbreviation"]
            rels.append(SpanRelation(head, "abbreviation_of", tail, "abbreviation", confidence))
    return rels
