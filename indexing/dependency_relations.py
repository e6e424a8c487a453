"""Relations read off the dependency parse of a sentence: subject-verb-object, passive with an
agent, verb + preposition, and "is_a" from a copula ("X is a Y") or an apposition ("X, a Y,").
"""

from __future__ import annotations

from indexing.entity_keys import normalise_relation
from indexing.mention_spans import PATTERN_CONFIDENCE, DocIndex, SpanRelation
from indexing.spacy_model import verb_lemma

# A relation whose prepositional object is only a time ("signed ... on July 21") describes the
# event, not a link between two things, so verb_prep skips these labels.
TEMPORAL_LABELS = frozenset({"DATE", "TIME"})
RELATIVE_PRONOUNS = frozenset({"that", "which", "who", "whom"})
# Prepositions of time, comparison or concession say when or how, not what a thing relates to:
# "passed the act after the crash", "unlike aspirin, NSAIDs inhibit COX reversibly".
NON_RELATIONAL_PREPS = frozenset({"after", "during", "since", "until", "till", "unlike", "like", "despite",
                                  "following", "throughout", "than", "except", "besides", "per"})
_SUBJECT_DEPS = frozenset({"nsubj", "csubj"})
_NOMINAL_DEPS = frozenset({"nsubj", "nsubjpass", "dobj", "pobj", "compound", "attr"})


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


def _pairs(index: DocIndex, heads: list, relation: str, tails: list, pattern: str,
           confidence: float | None = None) -> list[SpanRelation]:
    rels = []
    for h in heads:
        head = index.span(h)
        for t in tails:
            tail = index.span(t)
            if head and tail and head.key != tail.key and _has_letter(head.key) and _has_letter(tail.key):
                rels.append(SpanRelation(head, relation, tail, pattern, confidence or PATTERN_CONFIDENCE[pattern]))
    return rels


def _doubtful_verb(verb) -> bool:
    """A base-form "verb" that no English verb lemma explains is a misparsed noun
    ("Aspirin irreversibly inhibits cyclooxygenase" parses "cyclooxygenase" as the verb)."""
    return verb.tag_ in ("VB", "VBP") and verb.lemma_ != "be" and verb_lemma(verb.lower_) is None


def is_clause(verb) -> bool:
    """A verb with a subject, itself not in a noun's slot (a "verb" parsed as a subject or
    object is a misparse: "Aspirin irreversibly inhibits ..." makes "inhibits" a subject)."""
    if verb.pos_ not in ("VERB", "AUX") or _doubtful_verb(verb) or verb.dep_ in _NOMINAL_DEPS:
        return False
    return any(c.dep_ in ("nsubj", "nsubjpass", "csubj") for c in verb.children)


def verb_relations(index: DocIndex, verb) -> list[SpanRelation]:
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


def _passive(index: DocIndex, verb, label: str, children: list) -> list[SpanRelation]:
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


def appositions(index: DocIndex, sent) -> list[SpanRelation]:
    """"Angioedema, a swelling of the face," -> (angioedema, is_a, swelling of the face)."""
    rels = []
    for tok in sent:
        if tok.dep_ == "appos" and _is_apposition(index, tok):
            rels += _pairs(index, [tok.head], "is_a", [tok], "apposition")
    return rels


def _is_apposition(index: DocIndex, tok) -> bool:
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
