"""Mention spans: the name, key and label of a thing named in a parsed sentence
(``MentionSpan``), found from a token through its named entity, noun chunk or subtree, trimmed of
determiners and quantifiers and extended by "of X" attachments (``DocIndex``). Also
``SpanRelation``, a relation between two spans with the pattern that found it and its
confidence, which every relation module returns.
"""

from __future__ import annotations

from typing import NamedTuple

from indexing.entity_keys import canonical_key
from indexing.spacy_model import stop_words

# Numbers on their own are not entities; everything else spaCy labels is kept as its label.
DROPPED_LABELS = frozenset({"CARDINAL", "ORDINAL"})
PRONOUNS = frozenset({
    "i", "me", "my", "we", "us", "our", "you", "your", "he", "him", "his", "she", "her", "it", "its",
    "they", "them", "their", "this", "that", "these", "those", "which", "who", "whom", "whose", "what",
    "itself", "themselves", "himself", "herself", "one", "ones", "there", "here", "such",
})
# "one of the antibiotics", "most of the banks": the thing named is the object of "of".
QUANTIFIERS = frozenset({"one", "some", "most", "many", "all", "any", "none", "each", "several", "both",
                         "either", "neither", "few", "majority", "number"})
MAX_SPAN_WORDS = 6  # a fallback span (a token's subtree) longer than this is cut to its head
MAX_EXTENDED_WORDS = 8  # "Federal Reserve Act of 1913": a span plus "of"/title attachments
_EDGE_POS = frozenset({"DET", "PUNCT", "ADP", "CCONJ", "SCONJ", "PART", "SYM"})
# Stop words trimmed from a name's start when lower-case ("other penicillins", "many banks"),
# but kept in proper names ("First Amendment").
_QUANTIFIER_POS = frozenset({"ADJ", "DET", "ADV", "PRON", "NUM"})
_MODIFIER_DEPS = frozenset({"compound", "amod", "nummod", "nmod", "npadvmod", "punct", "poss", "case"})


class MentionSpan(NamedTuple):
    name: str
    key: str
    label: str  # NER label, or CONCEPT


class SpanRelation(NamedTuple):
    head: MentionSpan
    relation: str
    tail: MentionSpan
    pattern: str
    confidence: float


# A SpanRelation's confidence by the dependency or abbreviation pattern that found it.
PATTERN_CONFIDENCE = {"copula": 0.8, "apposition": 0.8, "abbreviation": 0.8,
                      "svo": 0.7, "passive": 0.7, "verb_prep": 0.5}


def _trim(tokens: list) -> list:
    """Drop determiners, possessives, punctuation, prepositions and lower-case quantifiers
    ("other", "many", "most") at the edges of a token run."""
    def edge(tok, left: bool) -> bool:
        if tok.pos_ in _EDGE_POS or tok.tag_ in ("PRP$", "WP$", "POS") or not any(c.isalnum() for c in tok.text):
            return True
        lowered = tok.is_lower or (tok.is_sent_start and tok.pos_ != "PROPN")
        return left and lowered and tok.is_stop and tok.pos_ in _QUANTIFIER_POS and not tok.like_num

    while tokens and edge(tokens[0], True):
        tokens = tokens[1:]
    while tokens and edge(tokens[-1], False):
        tokens = tokens[:-1]
    return tokens


def _text(tokens: list) -> str:
    if not tokens:
        return ""
    doc = tokens[0].doc
    return doc[tokens[0].i:tokens[-1].i + 1].text.strip()


def _usable_name(name: str, key: str) -> bool:
    """Not empty, not a pronoun, not only stop words; an acronym ("US", "IT") is a name."""
    if not key:
        return False
    if name.isupper():
        return True
    return name.lower() not in PRONOUNS and not all(word in stop_words() for word in key.split())


def make_span(tokens: list, label: str) -> MentionSpan | None:
    tokens = _trim(tokens)
    if not tokens or all(t.pos_ == "PRON" for t in tokens):
        return None
    name = _text(tokens)
    key = canonical_key(name)
    return MentionSpan(name, key, label) if _usable_name(name, key) else None


class DocIndex:
    """Which named entity and which noun chunk each token belongs to, computed once per doc."""

    def __init__(self, doc):
        self.doc = doc
        self.ents = [e for e in doc.ents if e.label_ not in DROPPED_LABELS]
        self.chunks = list(doc.noun_chunks)
        self.ent_of = {t.i: e for e in self.ents for t in e}
        self.chunk_of = {t.i: c for c in self.chunks for t in c}
        self.surface_verbs: set[int] = set()  # verbs the surface fallback found inside noun chunks

    def bounds(self, token) -> tuple[int, int, str]:
        """[start, end) of the entity and noun chunk holding the token (their union), else the
        token's subtree, else the token with its left modifiers; and the label."""
        ent, chunk = self.ent_of.get(token.i), self.chunk_of.get(token.i)
        if ent is not None or chunk is not None:
            parts = [p for p in (ent, chunk) if p is not None]
            return min(p.start for p in parts), max(p.end for p in parts), ent.label_ if ent is not None else "CONCEPT"
        start, end = token.left_edge.i, token.right_edge.i + 1
        if end - start > MAX_SPAN_WORDS:
            start = token.i
            while start > 0 and self.doc[start - 1].dep_ in _MODIFIER_DEPS and self.doc[start - 1].head.i >= start:
                start -= 1
            end = token.i + 1
        return start, end, "CONCEPT"

    def span(self, token) -> MentionSpan | None:
        token = self._through_quantifier(token)
        start, end, label = self.bounds(token)
        start, end = self._extend(start, end)
        return make_span(list(self.doc[start:end]), label)

    def _through_quantifier(self, token):
        """'one of the antibiotics', 'most of the banks': the thing is the prepositional object."""
        if token.lower_ in QUANTIFIERS or token.like_num:
            for prep in token.children:
                if prep.dep_ == "prep" and prep.lower_ == "of":
                    pobj = next((c for c in prep.children if c.dep_ == "pobj"), None)
                    if pobj is not None:
                        return pobj
        return token

    def _extend(self, start: int, end: int) -> tuple[int, int]:
        """Attach 'of X' ('Bank of England', 'freedom of speech') and prepositions between
        proper nouns ('Treaty on European Union', 'Brown v. Board of Education'), plus a number
        right after the span ('S&P 500')."""
        doc = self.doc
        for _ in range(3):
            if end < len(doc) and doc[end].dep_ == "nummod" and start <= doc[end].head.i < end:
                end += 1
            if end + 1 >= len(doc):
                break
            prep = doc[end]
            if prep.dep_ != "prep" or not start <= prep.head.i < end:
                break
            pobj = next((c for c in prep.children if c.dep_ == "pobj"), None)
            if pobj is None or not (prep.lower_ == "of" or (prep.head.pos_ == "PROPN" and pobj.pos_ == "PROPN")):
                break
            s2, e2, _ = self.bounds(pobj)
            if s2 != end + 1 or e2 - start > MAX_EXTENDED_WORDS:
                break
            end = e2
        return start, end
