"""Answer text as sentences: where one ends, the citations that belong to it, and when a
generated answer has said enough.

Pure text, no model. Hand-written rather than spaCy's sentencizer (which ends a sentence at every
full stop: "Marbury v. Madison", "U.S.", "1." list markers) or pysbd (not a dependency): answers
are short, and what matters here is that "[2]" after a full stop stays with its sentence and
that a half-written citation ("... COX. [") does not count as a new sentence.
"""

from __future__ import annotations

import re

# Every regex here reads model and corpus text, so each is linear (tests/reliability/test_regex_work.py):
# possessive repeats (*+, ++) where giving characters back can never help the match, and a
# lookbehind where a search would otherwise rescan a run of spaces or letters from each of its
# positions.

# A sentence ends at . ! or ? (closing quotes or brackets may follow), then any citations that
# belong to it ("... cyclooxygenase. [2][3]"), then whitespace; a line break always ends one.
_BOUNDARY = re.compile(r"""(?<=[.!?])["')\u201d\u2019]*(?:\s*+\[\d++(?:\s*+,\s*+\d++)*+\])*(?=\s)|(?=\n)""")
_ABBREVIATIONS = {"e.g", "i.e", "etc", "vs", "v", "dr", "mr", "mrs", "ms", "st", "no", "jr", "sr", "inc", "ltd",
                  "co", "cf", "al", "fig", "approx", "u.s", "u.k", "e.u", "gen", "gov", "sen", "rep", "jan", "feb",
                  "mar", "apr", "aug", "sept", "sep", "oct", "nov", "dec", "mt", "ft", "prof"}
# The word before the final full stop, from the first letter of its run of letters and dots
# (tried only where such a run begins: "([A-Za-z][A-Za-z.]*)\.$" rescanned a long word from each letter).
_LAST_WORD = re.compile(r"(?<![A-Za-z.])\.*+([A-Za-z][A-Za-z.]*)\.$")
# "12." alone on the last line: spaces and line breaks back to the start or to a line break,
# tried from where a run of spaces begins ("(?:^|\n)\s*\d{1,3}\.$" rescanned it from each line break).
_LIST_MARKER = re.compile(r"\A\s*+\d{1,3}\.$|(?<!\s)[^\S\n]*+\n\s*+\d{1,3}\.$")
CITATION = re.compile(r"\[(\d++(?:\s*+,\s*+\d++)*+)\]")
# Spaces before punctuation, tried where the run of spaces begins (not again from each space in it).
_SPACE_BEFORE_PUNCTUATION = re.compile(r"(?<!\s)\s+([.!?,;:])")


# "RESULTS:" or "TEXT:" at a sentence's start: a structured document's heading (bounded, so linear).
_HEADING = re.compile(r"([A-Z][A-Z ,/&-]{2,60}):\s")


def heading_split(sentence: str) -> tuple[str | None, str]:
    """(the heading a sentence opens with, or None; the sentence without it)."""
    found = _HEADING.match(sentence)
    return (found.group(1), sentence[found.end():]) if found else (None, sentence)


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, each stripped, with the citations that follow its full stop.

    Each possible end is judged on the text since the one before only, so that "v. v. v. ..."
    costs linear work instead of a rescan of the growing sentence at each "v." (12,000 characters
    of them took 2 s): see :func:`_judge` for why that gives the same sentences."""
    sentences, start, judged, before = [], 0, 0, None
    for match in _BOUNDARY.finditer(text):
        end = match.end()
        if end <= start:
            continue
        ends, before = _judge(CITATION.sub("", text[judged:end]), before)
        judged = end
        if ends:
            sentences.append(text[start:end])
            start = end
    sentences.append(text[start:])
    return [s.strip() for s in sentences if s.strip()]


def _judge(new: str, before: str | None) -> tuple[bool, str | None]:
    """Whether a sentence ends after ``new``, its text since the last possible end (citations
    removed), and if not, ``before`` for the next one: what of the sentence so far can still matter.

    ``before`` is None at a sentence's first possible end. After a full stop that ended nothing
    ("v.", "1.") it is "#" or "#\n": every later possible end is followed by a space (so no word
    or number runs back across it, and no citation is cut there: one cut would have ended the
    sentence), and only whether the spaces after that full stop hold a line break can still
    decide a list marker; "#" is never part of a word, a number or a space."""
    bare = new.rstrip()
    if before is not None and not bare:  # only spaces since a full stop that ended nothing
        return False, "#\n" if "\n" in new else before
    if _ends_sentence(bare if before is None else before + bare):
        return True, None
    return False, "#\n" if "\n" in new[len(bare):] else "#"


def answer_sentences(text: str) -> list[str]:
    """The sentences of an answer, a bare "Yes."/"No."/"Maybe." joined to the sentence after it
    ("No. Metformin does not ..."): the label is not a sentence of its own."""
    merged: list[str] = []
    for piece in split_sentences(text):
        if merged and is_bare_label(merged[-1]) and not is_bare_label(piece):
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    return merged


def is_bare_label(sentence: str) -> bool:
    return without_citations(sentence).strip(" .!,").lower() in ("yes", "no", "maybe")


def _ends_sentence(bare: str) -> bool:
    """False when the full stop closing ``bare`` (a sentence so far, without citations or trailing
    spaces) belongs to an abbreviation ("v.", "e.g.", a single initial) or a list marker ("1.")."""
    if not bare or bare.endswith(("!", "?", "\n")) or not bare.endswith("."):
        return True
    if _LIST_MARKER.search(bare):
        return False
    word = _LAST_WORD.search(bare)
    if word is None:
        return True
    token = word.group(1).lower()
    return not (token in _ABBREVIATIONS or (len(token) == 1 and word.group(1).isupper()))


def citations_in(sentence: str) -> list[int]:
    """The evidence numbers a sentence cites, in order, each once ("[2]", "[1, 3]", "[1][3]")."""
    numbers: list[int] = []
    for group in CITATION.findall(sentence):
        for part in group.split(","):
            number = int(part)
            if number not in numbers:
                numbers.append(number)
    return numbers


def without_citations(sentence: str) -> str:
    """The sentence's words without its citation marks (and the space before each)."""
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", CITATION.sub("", sentence)).strip()


class SentenceLimit:
    """A generation stopping criterion: true once the text has begun a sentence beyond
    ``max_sentences`` (so the last allowed sentence keeps its full stop and citations). Called by
    the serving engine on its own thread after each token: pure and cheap."""

    def __init__(self, max_sentences: int):
        self.max_sentences = max_sentences

    def __call__(self, text: str) -> bool:
        sentences = answer_sentences(text)
        if len(sentences) <= self.max_sentences:
            return False
        # "[" or "[2" after a full stop is a citation on its way, not a new sentence.
        return CitationScan(sentences[self.max_sentences]).marks() != 1

    def full(self, text: str) -> bool:
        """True when ``text`` already holds ``max_sentences`` sentences."""
        return len(answer_sentences(text)) >= self.max_sentences


class CitationScan:
    """Whether a text holds nothing but citation marks, complete or on their way ("[2]", "[2][3",
    " [1, "), judged in one forward pass that stops at the first other character.

    It replaces the regex ``^(?:\\s*\\[[\\d,\\s]*\\]?)*\\s*$``, whose groups could split a run of
    spaces in exponentially many ways ("[1 " * 30 + "x" took minutes). ``examined`` counts the
    characters looked at, so tests can bound the work without timing it."""

    def __init__(self, text: str):
        self.text = text
        self.examined = 0

    def marks(self) -> int | None:
        """How many marks the text opens ('['), or None when anything else is in it: a digit or a
        comma outside a mark, a ']' that closes none, or any other character."""
        opened, inside = 0, False
        for char in self.text:
            self.examined += 1
            if char == "[":
                opened, inside = opened + 1, True
            elif char == "]" and inside:
                inside = False
            elif not (char.isspace() or (inside and (char == "," or char.isdecimal()))):
                return None
        return opened
