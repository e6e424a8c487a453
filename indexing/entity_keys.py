"""Canonical keys for entity names and relation labels: what makes two spellings the same key."""

from __future__ import annotations

import re
import unicodedata

from spacy.lang.en.stop_words import STOP_WORDS

_ARTICLES = {"the", "a", "an"}
_PUNCT = re.compile(r"[^\w\s-]")
_SPACES = re.compile(r"\s+")
_WORDS = re.compile(r"[\w][\w'’.-]*")
# Word endings where a trailing "s" is not a plural (pancreas, virus, diabetes, analysis, gas).
_NOT_PLURAL = ("ss", "us", "is", "as", "es", "os")


def singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(_NOT_PLURAL) and not word[-2].isdigit():
        return word[:-1]
    return word


def _join_initials(words: list[str]) -> list[str]:
    """Runs of single letters become one word: "u s supreme court" (from "U.S.") -> "us supreme court"."""
    joined: list[str] = []
    in_run = False
    for word in words:
        is_initial = len(word) == 1 and word.isalpha()
        if is_initial and in_run:
            joined[-1] += word
        else:
            joined.append(word)
        in_run = is_initial
    return joined


def canonical_key(name: str) -> str:
    """Case, unicode form, punctuation, leading articles and a plural last word do not matter:
    "The Statins" and "statin" share a key; "COX-1" and "COX-2" do not."""
    text = unicodedata.normalize("NFKC", name).lower().replace("'s", "").replace("’s", "")
    text = _PUNCT.sub(" ", text)
    words = [w.strip("-") for w in _SPACES.split(text) if w.strip("-")]
    while words and words[0] in _ARTICLES:
        words = words[1:]
    words = _join_initials(words)
    if not words:
        return ""
    words[-1] = singular(words[-1])
    return " ".join(words)


def normalise_relation(relation: str) -> str:
    """"Created By" -> "created_by"."""
    return re.sub(r"\s+", "_", relation.strip().lower())


def name_spans(text: str, max_words: int = 6) -> list[tuple[int, int, str, str, bool]]:
    """Word n-grams of the text, longest first: (start word, end word, surface, canonical key,
    whether fuzzy matching may be tried). Exact matches may start with a stop word ("First
    Amendment", where spaCy counts "first" as one); fuzzy ones must start and end with content
    words, so "the and" never fuzzily matches anything. N-grams ending in a stop word are skipped."""
    words = _WORDS.findall(text)
    spans = []
    for n in range(min(max_words, len(words)), 0, -1):
        for start in range(len(words) - n + 1):
            gram = words[start:start + n]
            if gram[-1].lower() in STOP_WORDS:
                continue
            surface = " ".join(gram).strip(".")
            key = canonical_key(surface)
            if key and key not in STOP_WORDS:
                spans.append((start, start + n, surface, key, gram[0].lower() not in STOP_WORDS))
    return spans
