"""Graph writes and the read API against the real graph server (session fixture)."""

from __future__ import annotations

import pytest

from indexing.chunking import Chunk
from indexing.entity_keys import canonical_key
from indexing.entity_resolution import fuse
from indexing.extraction import ChunkExtraction, EntityMention, RelationMention
from indexing.graph_connection import GraphError
from indexing.versions import DomainVersions, write_manifest


def mention(chunk, doc, name, type_="CONCEPT"):
    return EntityMention(chunk, doc, name, canonical_key(name), type_, 0)


def fact(chunk, doc, head, rel, tail, confidence=0.7):
    return RelationMention(chunk, doc, head, canonical_key(head), rel, tail, canonical_key(tail), confidence, "svo")


def publish(store, domain, version, triples, extra_mentions=()):
    """Write a version made of (doc, head, relation, tail) triples and make it the serving one."""
    extractions, chunks, docs = [], [], {}
    for i, (doc, head, rel, tail) in enumerate(triples):
        chunk_id = f"{doc}#{i}"
        chunks.append(Chunk(chunk_id, doc, domain, doc.title(), i, f"{head} {rel} {tail}.", 5))
        extractions.append(ChunkExtraction(chunk_id, doc, [mention(chunk_id, doc, head), mention(chunk_id, doc, tail)],
                                           [fact(chunk_id, doc, head, rel, tail)]))
        docs[doc] = {"doc_id": doc, "title": f"Title of {doc}", "source": doc}
    for chunk_id, doc, name in extra_mentions:
        extractions.append(ChunkExtraction(chunk_id, doc, [mention(chunk_id, doc, name)], []))
    graph = fuse(extractions)
    store.write_version(domain, version, list(docs.values()), chunks, graph)
    versions = DomainVersions(store.domains_dir, domain)
    versions.path(version).mkdir(parents=True, exist_ok=True)
    write_manifest(versions.path(version), {"version": version})
    versions.switch(version)
    return graph


MEDICINE = [("aspirin.md", "aspirin", "inhibit", "cyclooxygenase"),
            ("aspirin.md", "aspirin", "treat", "fever"),
            ("cox.md", "cyclooxygenase", "produce", "prostaglandins"),
            ("nsaid.md", "ibuprofen", "inhibit", "cyclooxygenase"),
            ("type2.md", "metformin", "treat", "type 2 diabetes"),
            ("type1.md", "insulin", "treat", "type 1 diabetes")]


def test_stats_and_facts_with_provenance(store):
    publish(store, "medicine", "v000001", MEDICINE)
    stats = store.stats("medicine")
    assert stats == {"version": "v000001", "documents": 5, "chunks": 6, "entities": 9, "relations": 6, "mentions": 12}
    one_hop = store.facts("medicine", ["aspirin"], hops=1)
    assert {(f.head, f.relation, f.tail) for f in one_hop} == {("aspirin", "inhibit", "cyclooxygenase"),
                                                               ("aspirin", "treat", "fever")}
    inhibit = next(f for f in one_hop if f.relation == "inhibit")
    assert inhibit.doc_ids == ("aspirin.md",) and inhibit.chunk_ids == ("aspirin.md#0",) and inhibit.hop == 1
    two_hop = store.facts("medicine", ["aspirin"], hops=2)
    assert ("cyclooxygenase", "produce", "prostaglandins") in {(f.head, f.relation, f.tail) for f in two_hop}
    assert ("ibuprofen", "inhibit", "cyclooxygenase") in {(f.head, f.relation, f.tail) for f in two_hop}
    assert all(f.hop == 2 for f in two_hop if f.head != "aspirin")
    assert [f.hop for f in two_hop] == sorted(f.hop for f in two_hop)
    assert store.document_titles("medicine", ["cox.md"]) == {"cox.md": "Title of cox.md"}
    with pytest.raises(ValueError):
        store.facts("medicine", ["aspirin"], hops=3)


def test_link_entities_exact_alias_fuzzy_and_longest_match(store):
    publish(store, "medicine", "v000001", MEDICINE)
    links = store.link_entities("medicine", "Does metformin help with Type 2 diabetes or does asprin lower fevers?")
    by_key = {link.key: link for link in links}
    assert by_key["metformin"].score == 1.0
    assert "type 2 diabetes" in by_key and "type 1 diabetes" not in by_key
    assert by_key["aspirin"].score < 1.0 and by_key["aspirin"].matched_text == "asprin"  # fuzzy
    assert by_key["fever"].score == 1.0  # plural folded by the canonical key
    assert store.link_entities("medicine", "the and of what is") == []


def test_subgraph_for_pictures(store):
    publish(store, "medicine", "v000001", MEDICINE)
    sub = store.subgraph("medicine", ["cyclooxygenase"], hops=1)
    assert {n["key"] for n in sub.nodes} == {"cyclooxygenase", "aspirin", "ibuprofen", "prostaglandin"}
    assert len(sub.edges) == 3


HOSTILE = ["O'Brien's \"law\"", "back\\slash \\", "})-[:X]->(n) DETACH DELETE n //", "multi\nline", "中文 名字",
           "{curly}", "'; MATCH (n) DETACH DELETE n //"]


def test_hostile_names_are_stored_and_read_back_verbatim(store):
    triples = [("evil.md", name, "mention", "ordinary thing") for name in HOSTILE]
    publish(store, "law", "v000001", triples)
    facts = store.facts("law", ["ordinary thing"], hops=1, limit=50)
    assert sorted(f.head for f in facts) == sorted(HOSTILE)
    for name in HOSTILE:
        [found] = store.facts("law", [canonical_key(name)], hops=1)  # keys derived from them work as parameters
        assert found.head == name
        store.link_entities("law", name)  # linking text like this never breaks a query
    names = {n["name"] for n in store.subgraph("law", ["ordinary thing"], hops=1, limit=50).nodes}
    assert names == set(HOSTILE) | {"ordinary thing"}
    assert store.stats("law")["entities"] == len(HOSTILE) + 1


def test_domains_are_isolated(store):
    publish(store, "medicine", "v000001", MEDICINE)
    publish(store, "law", "v000001", [("marbury.md", "Marbury v. Madison", "establish", "judicial review")])
    before = store.stats("medicine")
    assert store.domains() == ["law", "medicine"]
    assert store.delete_domain("law") == ["v000001"]
    assert store.stats("medicine") == before
    assert store.stats("law")["entities"] == 0
    assert store.facts("medicine", ["aspirin"])  # still answering


def test_only_the_serving_version_is_read_and_stale_versions_are_deleted(store):
    publish(store, "medicine", "v000001", MEDICINE)
    publish(store, "medicine", "v000002", MEDICINE[:2])
    assert store.stats("medicine")["relations"] == 2
    assert store.versions("medicine") == ["v000001", "v000002"]
    assert store.delete_versions_except("medicine", ["v000002"]) == ["v000001"]
    assert store.versions("medicine") == ["v000002"] and store.stats("medicine", "v000001")["entities"] == 0


def test_unindexed_domain_is_a_clear_error(store):
    with pytest.raises(GraphError, match="not been indexed"):
        store.facts("astronomy", ["moon"])


def test_names_starting_with_a_stop_word_are_linked_whole(store):
    publish(store, "law", "v000001", [("first.md", "First Amendment", "protect", "freedom of speech"),
                                      ("amend.md", "amendment", "change", "constitution")])
    links = store.link_entities("law", "What does the First Amendment protect?")
    assert links[0].key == "first amendment" and links[0].score == 1.0
    assert "amendment" not in {link.key for link in links}  # inside the longer match


class _RecordingConnection:
    """Just enough of GraphConnection to see which statements a write sends, in order."""

    def __init__(self):
        from indexing.cypher import FALKORDB

        self.dialect, self.statements, self.server_restarts = FALKORDB, [], 0

    def query(self, statement, params=None, what="", read=False):
        self.statements.append(statement)
        return []

    def fits(self, statement, params):
        return True

    def persist(self, what):
        self.statements.append("persist")


def test_a_store_creates_its_indexes_before_its_first_write(tmp_path):
    """Without them every MATCH of a write scans the label: 54 s instead of 0.6 s for a version
    of 19k mentions. index_source with a GraphStore nobody called ensure_indexes on was that slow."""
    from indexing.cypher import FALKORDB, WRITE_DOCUMENTS
    from indexing.graph_store import GraphStore

    connection = _RecordingConnection()
    store = GraphStore(connection, tmp_path)
    graph = fuse([ChunkExtraction("a.md#0", "a.md", [mention("a.md#0", "a.md", "aspirin")], [])])
    chunks = [Chunk("a.md#0", "a.md", "medicine", "A", 0, "aspirin", 1)]
    documents = [{"doc_id": "a.md", "title": "A", "source": "a.md"}]
    indexes = FALKORDB.index_statements()
    store.write_version("medicine", "v1", documents, chunks, graph)
    assert connection.statements[:len(indexes)] == indexes
    assert connection.statements[len(indexes)] == WRITE_DOCUMENTS
    connection.statements.clear()
    store.write_version("medicine", "v2", documents, chunks, graph)
    assert not set(indexes) & set(connection.statements)  # once per server start, not per write
    connection.server_restarts = 1  # a restarted server may have lost what was not yet saved
    connection.statements.clear()
    store.write_version("medicine", "v3", documents, chunks, graph)
    assert connection.statements[:len(indexes)] == indexes
