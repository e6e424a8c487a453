"""Entity resolution and fact aggregation (hand-made mentions; the real embedder for names)."""

from __future__ import annotations

import pytest

from indexing.extraction import ChunkExtraction, EntityMention, RelationMention
from indexing.entity_keys import canonical_key
from indexing.fusion import FusionParams, fuse


def entity(chunk, doc, name, type_="CONCEPT"):
    return EntityMention(chunk, doc, name, canonical_key(name), type_, 0)


def relation(chunk, doc, head, rel, tail, confidence=0.7, pattern="svo"):
    return RelationMention(chunk, doc, head, canonical_key(head), rel, tail, canonical_key(tail), confidence, pattern)


@pytest.mark.parametrize("a,b", [("The Statins", "statin"), ("ACE inhibitors", "ACE inhibitor"),
                                 ("U.S. Supreme Court", "US supreme court"), ("Fleming's", "fleming")])
def test_canonical_keys_ignore_case_articles_plural_and_punctuation(a, b):
    assert canonical_key(a) == canonical_key(b)


@pytest.mark.parametrize("a,b", [("COX-1", "COX-2"), ("Type 1 diabetes", "Type 2 diabetes"), ("pancreas", "pancrea")])
def test_canonical_keys_keep_different_things_apart(a, b):
    assert canonical_key(a) != canonical_key(b)


def test_same_thing_named_differently_in_two_documents_becomes_one_entity(embedder):
    doc_a = ChunkExtraction("a#1", "a.md", [entity("a#1", "a.md", "Alexander Fleming", "PERSON"),
                                            entity("a#1", "a.md", "penicillin")],
                            [relation("a#1", "a.md", "Alexander Fleming", "discover", "penicillin")])
    doc_b = ChunkExtraction("b#1", "b.md", [entity("b#1", "b.md", "Alexander Flemming", "PERSON"),
                                            entity("b#1", "b.md", "U.S. Supreme Court", "ORG"),
                                            entity("b#1", "b.md", "angiotensin-converting enzyme"),
                                            entity("b#1", "b.md", "ACE", "ORG")],
                            [relation("b#1", "b.md", "ACE", "abbreviation_of", "angiotensin-converting enzyme",
                                      0.8, "abbreviation")])
    doc_c = ChunkExtraction("c#1", "c.md", [entity("c#1", "c.md", "Supreme Court of the United States", "ORG"),
                                            entity("c#1", "c.md", "ACE", "ORG")],
                            [relation("c#1", "c.md", "captopril", "inhibit", "ACE")])
    graph = fuse([doc_a, doc_b, doc_c], encode=embedder.encode)
    fleming = graph.entities[graph.key_map["alexander flemming"]]
    assert graph.key_map["alexander fleming"] == fleming.key
    assert {fleming.name, *fleming.aliases} == {"Alexander Fleming", "Alexander Flemming"}
    court = graph.key_map["us supreme court"]
    assert court == graph.key_map["supreme court of the united states"]
    assert graph.key_map["ace"] == "angiotensin-converting enzyme"  # the long form names the entity
    assert "ACE" in graph.entities["angiotensin-converting enzyme"].aliases
    fact = next(f for f in graph.facts if f.relation == "inhibit")
    assert fact.tail == "angiotensin-converting enzyme"  # facts follow the merge
    assert not any(f.relation == "abbreviation_of" for f in graph.facts)  # aliases are not facts


def test_different_things_with_similar_names_stay_apart(embedder):
    names = ["Type 1 diabetes", "Type 2 diabetes", "COX-1", "COX-2", "Federal Reserve", "Federal Reserve Act",
             "First Amendment", "Fifth Amendment", "Fourteenth Amendment"]
    extraction = ChunkExtraction("x#1", "x.md", [entity("x#1", "x.md", n, "ORG") for n in names], [])
    graph = fuse([extraction], encode=embedder.encode)
    assert len(graph.entities) == len(names)


def test_facts_aggregate_evidence_from_several_documents():
    mentions = [ChunkExtraction(f"{d}#1", f"{d}.md", [], [relation(f"{d}#1", f"{d}.md", "aspirin", "inhibit",
                                                                   "cyclooxygenase", 0.5)]) for d in ("a", "b")]
    curated = [relation(None, "triples.csv", "aspirin", "treat", "fever", 1.0, "curated")]
    graph = fuse(mentions, curated)
    inhibit = next(f for f in graph.facts if f.relation == "inhibit")
    assert inhibit.count == 2 and inhibit.confidence == pytest.approx(0.75)
    assert inhibit.doc_ids == ["a.md", "b.md"] and inhibit.chunk_ids == ["a#1", "b#1"] and not inhibit.curated
    treat = next(f for f in graph.facts if f.relation == "treat")
    assert treat.curated and treat.confidence == 1.0 and treat.chunk_ids == [] and treat.doc_ids == ["triples.csv"]


def test_one_off_terms_are_dropped_but_recurring_terms_and_named_entities_stay():
    chunks = [ChunkExtraction("a#1", "a.md", [entity("a#1", "a.md", "blood pressure"), entity("a#1", "a.md", "nice weather"),
                                              entity("a#1", "a.md", "Paris", "GPE")], []),
              ChunkExtraction("b#1", "b.md", [entity("b#1", "b.md", "blood pressure")], [])]
    graph = fuse(chunks)
    assert set(graph.entities) == {"blood pressure", "paris"}
    assert ("a#1", "nice weather") not in graph.mentions


def test_source_overlap_gamma():
    def chunk(source, names):
        return ChunkExtraction(f"{source}#1", f"{source}/doc.md", [entity(f"{source}#1", f"{source}/doc.md", n, "PRODUCT") for n in names], [])

    graph = fuse([chunk("u", ["aspirin", "fever", "pain"]), chunk("v", ["aspirin", "fever", "warfarin", "bleeding"])],
                 source_of=lambda doc_id: doc_id.split("/")[0], params=FusionParams())
    assert graph.source_overlap == {("u", "v"): pytest.approx(2 / 5)}
