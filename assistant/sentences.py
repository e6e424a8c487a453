"""Answer text as sentences: where one ends, the citations that belong to it, and when a
generated answer has said enough.

Pure text, no model. Hand-written rather than spaCy's sentencizer (which ends a sentence at every
full stop: "Marbury v. Madison", "U.S.", "1." list markers) or pysbd (not a dependency): answers
are short, and what matters here is that "[2]" after a full stop stays with its sentence and
that a half-written citation ("... COX. [") does not count as a new sentence.
"""

from __future__ import annotations

import re

# A sentence ends at . ! or ? (closing quotes or brackets may follow), then any citations that
# belong to it ("... cyclooxygenase. [2][3]"), then whitespace; a line break always ends one.
_BOUNDARY = re.compile(r"""(?<=[.!?])["')\u201d\u2019]*(?:\s*\[\d+(?:\s*,\s*\d+)*\])*(?=\s)|(?=\n)""")
_ABBREVIATIONS = {"e.g", "i.e", "etc", "vs", "v", "dr", "mr", "mrs", "ms", "st", "no", "jr", "sr", "inc", "ltd",
                  "co", "cf", "al", "fig", "approx", "u.s", "u.k", "e.u", "gen", "gov", "sen", "rep", "jan", "feb",
                  "mar", "apr", "aug", "sept", "sep", "oct", "nov", "dec", "mt", "ft", "prof"}
_LAST_WORD = re.compile(r"([A-Za-z][A-Za-z.]*)\.$")
_LIST_MARKER = re.compile(r"(?:^|\n)\s*\d{1,3}\.$")
_PARTIAL_CITATION = re.compile(r"^\s*\[[\d,\s]*\]?\s*$")
CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, each stripped, with the citations that follow its full stop."""
    sentences, start = [], 0
    for match in _BOUNDARY.finditer(text):
        end = match.end()
        if end <= start or not _ends_sentence(text[start:end]):
            continue
        sentences.append(text[start:end])
        start = end
    sentences.append(text[start:])
    return [s.strip() for s in sentences if s.strip()]


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


def _ends_sentence(piece: str) -> bool:
    """False when the full stop closing ``piece`` belongs to an abbreviation ("v.", "e.g.", a
    single initial) or a list marker ("1.")."""
    bare = CITATION.sub("", piece).rstrip()
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
    return re.sub(r"\s+([.!?,;:])", r"\1", CITATION.sub("", sentence)).strip()


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
        return not _PARTIAL_CITATION.match(sentences[self.max_sentences])

    def full(self, text: str) -> bool:
        """True when ``text`` already holds ``max_sentences`` sentences."""
        return len(answer_sentences(text)) >= self.max_sentences
