"""A surface fallback for sentences the parser gets wrong. The small model sometimes tags the
verb of a short sentence as a noun ("NSAIDs block prostaglandin synthesis", "The left ventricle
pumps blood"), leaving no clause to read. Then we look for a word that is a known verb form,
agrees in number with the noun before it, and sits between two noun phrases.
"""

from __future__ import annotations

from indexing.entity_keys import normalise_relation
from indexing.mention_spans import MAX_SPAN_WORDS, DocIndex, SpanRelation, make_span
from indexing.spacy_model import verb_lemma

# svo found by the surface fallback (parser missed the verb): less sure than a parsed one.
SURFACE_CONFIDENCE = 0.6
_PHRASE_POS = frozenset({"NOUN", "PROPN", "ADJ", "NUM", "VERB", "X"})


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


def surface_relation(index: DocIndex, sent) -> list[SpanRelation]:
    tokens = list(sent)
    for k in range(1, len(tokens) - 1):
        verb = tokens[k]
        if not verb.is_alpha or verb.tag_ not in ("VBZ", "VBP", "VBD", "NN", "NNS"):
            continue
        if tokens[k - 1].text == "-" or tokens[k + 1].text == "-":
            continue
        lemma = verb_lemma(verb.lower_)
        left = list(reversed(tokens[:k]))
        while left and left[0].pos_ == "ADV":  # "Aspirin irreversibly inhibits"
            left = left[1:]
        if not lemma or not left or not _agrees(verb, lemma, left[0]):
            continue
        head = make_span(list(reversed(_phrase(left))), "CONCEPT")
        tail = make_span(_phrase(tokens[k + 1:]), "CONCEPT")
        if head and tail and head.key != tail.key:
            index.surface_verbs.add(verb.i)  # noun chunks that swallowed it are not names
            return [SpanRelation(head, normalise_relation(lemma), tail, "svo", SURFACE_CONFIDENCE)]
    return []
