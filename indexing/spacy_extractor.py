"""Entity and relation extraction with spaCy's small English model (en-core-web-sm).

Entities: named entities plus noun-chunk terms. Relations: dependency patterns (subject-verb-
object, passive with agent, verb + preposition, copula and apposition "is_a"), abbreviations
("long form (ABBR)", Schwartz & Hearst), and a surface fallback for sentences the small parser
gets wrong. Implements :class:`indexing.extraction.Extractor`.

This module runs the pipeline over the chunks and gathers each sentence's mentions; the pieces
live in :mod:`indexing.mention_spans`, :mod:`indexing.dependency_relations`,
:mod:`indexing.abbreviations`, :mod:`indexing.surface_relations` and :mod:`indexing.spacy_model`.
"""

from __future__ import annotations

from typing import Sequence

from indexing.abbreviations import abbreviation_relations
from indexing.chunking import Chunk
from indexing.dependency_relations import appositions, is_clause, verb_relations
from indexing.extraction import ChunkExtraction, EntityMention, RelationMention
from indexing.mention_spans import DocIndex, MentionSpan, SpanRelation, make_span
from indexing.spacy_model import load_spacy
from indexing.surface_relations import surface_relation

SPACY_EXTRACTOR_NAME = "spacy-en_core_web_sm-v1"


def _sentence_relations(index: DocIndex, sent) -> list[SpanRelation]:
    rels = []
    for tok in sent:
        if tok.pos_ in ("VERB", "AUX"):
            rels += verb_relations(index, tok)
    rels += appositions(index, sent)
    if not any(is_clause(tok) for tok in sent):  # the parser found no verb with a subject
        rels += surface_relation(index, sent)
    rels += abbreviation_relations(sent.text)
    unique = {}
    for r in rels:  # one mention per (head, relation, tail) per sentence, first pattern wins
        unique.setdefault((r.head.key, r.relation, r.tail.key), r)
    return list(unique.values())


def _sentence_entities(index: DocIndex, sent) -> list[MentionSpan]:
    spans = []
    for ent in index.ents:
        if sent.start <= ent.start < sent.end:
            spans.append(make_span(list(ent), ent.label_))
    for chunk in index.chunks:
        swallowed_verb = any(t.i in index.surface_verbs for t in chunk)
        if sent.start <= chunk.start < sent.end and chunk.root.pos_ != "PRON" and not swallowed_verb:
            span = make_span(list(chunk), "CONCEPT")
            if span and not span.key.replace(" ", "").isdigit():
                spans.append(span)
    return [s for s in spans if s]


def _one_per_key(spans: list[MentionSpan]) -> list[MentionSpan]:
    """One mention per key in a sentence, first seen wins, but an NER label beats CONCEPT."""
    seen: dict[str, MentionSpan] = {}
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
        index = DocIndex(doc)
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

