"""GraphStore's reads and writes against a recording fake connection, no server: each call sends
the statement cypher.py defines and exactly the parameters expected, and text from a corpus or a
question (a name with quotes, braces and Cypher in it) travels only as a parameter value, never
inside a statement. The same reads and writes against a real server are in test_graph_store.py."""

from __future__ import annotations

import pytest

from indexing import cypher
from indexing.chunking import Chunk
from indexing.entity_linking import EntityLink
from indexing.entity_resolution import DomainGraph, EntityRecord, FactRecord
from indexing.graph_connection import GraphError
from indexing.graph_store import DELETE_BATCH, WRITE_BATCH, Fact, GraphStore
from indexing.versions import DomainVersions, write_manifest

HOSTILE = "O'Brien's \"law\" })-[:X]->(n) DETACH DELETE n //"
# Every statement a store may send: the module's constants, its two tables and the index statements.
KNOWN_STATEMENTS = ({value for name, value in vars(cypher).items() if name.isupper() and isinstance(value, str)}
                    | set(cypher.STATS.values()) | set(cypher.DELETE_VERSION_BATCH.values())
                    | set(cypher.FALKORDB.index_statements()))


class RecordingConnection:
    """Just enough of GraphConnection: every call recorded as (statement, params, what, read),
    answered with the rows queued for its statement (none queued: no rows)."""

    dialect = cypher.FALKORDB
    server_restarts = 0

    def __init__(self):
        self.calls: list[tuple] = []
        self.replies: dict[str, list[list[dict]]] = {}
        self.max_list = None  # a transport limit: longer lists in one call do not fit

    def reply(self, statement: str, *row_lists: list[dict]) -> None:
        self.replies.setdefault(statement, []).extend(row_lists)

    def query(self, statement, params=None, *, what, read=False):
        self.calls.append((statement, params, what, read))
        queued = self.replies.get(statement)
        return queued.pop(0) if queued else []

    def fits(self, statement, params):
        return self.max_list is None or all(len(v) <= self.max_list for v in params.values() if isinstance(v, list))

    def persist(self, what):
        self.calls.append(("persist", None, what, False))


@pytest.fixture
def connection() -> RecordingConnection:
    return RecordingConnection()


@pytest.fixture
def store(connection, tmp_path) -> GraphStore:
    store = GraphStore(connection, tmp_path / "domains")
    store.ensure_indexes()  # so a first write sends its own statements only
    connection.calls.clear()
    return store


def serve(store: GraphStore, domain: str, version: str) -> None:
    """Make ``version`` the domain's serving one (its CURRENT file), as a finished re-index does."""
    versions = DomainVersions(store.domains_dir, domain)
    versions.path(version).mkdir(parents=True, exist_ok=True)
    write_manifest(versions.path(version), {"version": version})
    versions.switch(version)


def assert_only_parameters(connection: RecordingConnection, *texts: str) -> None:
    """Each call sent a statement of cypher.py, none of ``texts`` is inside one, and each of them
    did travel, as a parameter value."""
    sent = [statement for statement, *_ in connection.calls if statement != "persist"]
    assert sent and set(sent) <= KNOWN_STATEMENTS
    assert not [text for text in texts for statement in sent if text in statement]
    params = repr([call[1] for call in connection.calls])
    assert all(repr(text)[1:-1] in params for text in texts)


def fact_row(head_key, head, relation, tail_key, tail, confidence, count=1, doc="a.md"):
    return {"head_key": head_key, "head": head, "relation": relation, "tail_key": tail_key, "tail": tail,
            "confidence": confidence, "count": count, "chunk_ids": [f"{doc}#0"], "doc_ids": [doc], "curated": False}


# --- writes --------------------------------------------------------------------------------------

def test_a_version_is_written_part_by_part_with_its_rows_as_parameters(store, connection):
    # More aliases and evidence ids than an entity and a fact keep (12 and 8: graph_store.MAX_*).
    aliases, evidence = [f"alias {i}" for i in range(15)], [f"a.md#{i}" for i in range(10)]
    graph = DomainGraph(
        entities={"o brien law": EntityRecord("o brien law", HOSTILE, "PERSON", aliases, 7),
                  "warfarin": EntityRecord("warfarin", "Warfarin", "DRUG", [], 2)},
        facts=[FactRecord("o brien law", "cite }", "warfarin", 0.75, 9, evidence, ["a.md", "b.md"], True, ["svo"])],
        mentions=[("a.md#0", "o brien law"), ("a.md#0", "warfarin")])
    documents = [{"doc_id": "a.md", "title": HOSTILE, "source": "/corpus/a.md", "size": 123}]
    chunks = [Chunk("a.md#0", "a.md", "law", HOSTILE, 0, f"{HOSTILE} cites warfarin.", 9)]
    progress = []
    store.write_version("law", "v000003", documents, chunks, graph, on_progress=progress.append)

    scope, what = {"domain": "law", "version": "v000003"}, "writing graph law v000003"
    assert connection.calls == [
        (cypher.WRITE_DOCUMENTS, {**scope, "rows": [{"doc_id": "a.md", "title": HOSTILE, "source": "/corpus/a.md"}]},
         what, False),
        (cypher.WRITE_CHUNKS, {**scope, "rows": [{"chunk_id": "a.md#0", "doc_id": "a.md", "ordinal": 0}]}, what, False),
        (cypher.WRITE_ENTITIES, {**scope, "rows": [
            {"key": "o brien law", "name": HOSTILE, "type": "PERSON", "aliases": aliases[:12], "mentions": 7},
            {"key": "warfarin", "name": "Warfarin", "type": "DRUG", "aliases": [], "mentions": 2}]}, what, False),
        (cypher.WRITE_MENTIONS, {**scope, "rows": [{"chunk_id": "a.md#0", "key": "o brien law"},
                                                   {"chunk_id": "a.md#0", "key": "warfarin"}]}, what, False),
        (cypher.WRITE_FACTS, {**scope, "rows": [
            {"head": "o brien law", "tail": "warfarin", "type": "cite }", "confidence": 0.75, "count": 9,
             "chunk_ids": evidence[:8], "doc_ids": ["a.md", "b.md"], "curated": True}]}, what, False),
        ("persist", None, "saving graph law v000003", False),  # durable before anyone switches to it
    ]
    assert progress == [1, 1, 2, 2, 1]
    assert_only_parameters(connection, HOSTILE, "cite }")


def test_writes_are_batched_by_count_and_by_what_the_transport_carries(store, connection):
    documents = [{"doc_id": f"d{i}.md", "title": f"D{i}", "source": f"d{i}.md"} for i in range(WRITE_BATCH + 1)]
    progress = []
    store.write_version("law", "v000001", documents, [], DomainGraph(), on_progress=progress.append)
    sent = [(statement, [row["doc_id"] for row in params["rows"]]) for statement, params, *_ in connection.calls[:-1]]
    assert sent == [(cypher.WRITE_DOCUMENTS, [d["doc_id"] for d in documents[:WRITE_BATCH]]),
                    (cypher.WRITE_DOCUMENTS, [documents[-1]["doc_id"]])]  # nothing to write: no statement
    assert progress == [WRITE_BATCH, 1] and connection.calls[-1][0] == "persist"

    connection.calls.clear()
    connection.max_list = 2
    entities = {f"e{i}": EntityRecord(f"e{i}", f"E{i}", "CONCEPT", [], 1) for i in range(5)}
    store.write_version("law", "v000002", [], [], DomainGraph(entities=entities))
    assert [[row["key"] for row in params["rows"]] for statement, params, *_ in connection.calls[:-1]] == \
        [["e0", "e1"], ["e2", "e3"], ["e4"]]
    assert {statement for statement, *_ in connection.calls[:-1]} == {cypher.WRITE_ENTITIES}


def test_a_version_is_deleted_label_by_label_in_bounded_batches(store, connection):
    entity, chunk, document = (cypher.DELETE_VERSION_BATCH[label] for label in ("Entity", "Chunk", "Document"))
    connection.reply(entity, [{"deleted": DELETE_BATCH}], [{"deleted": 3}])  # a full batch: there may be more
    connection.reply(chunk, [{"deleted": 4}])
    assert store.delete_version("law", "v000002") == DELETE_BATCH + 7
    params = {"domain": "law", "version": "v000002", "batch": DELETE_BATCH}
    assert connection.calls == [(entity, params, "deleting Entity nodes of law v000002", False),
                                (entity, params, "deleting Entity nodes of law v000002", False),
                                (chunk, params, "deleting Chunk nodes of law v000002", False),
                                (document, params, "deleting Document nodes of law v000002", False)]


def test_stale_versions_are_listed_then_only_they_are_deleted(store, connection):
    connection.reply(cypher.LIST_VERSIONS, [{"version": "v000002"}, {"version": None}, {"version": "v000001"}])
    assert store.delete_versions_except(HOSTILE, keep=["v000002"]) == ["v000001"]
    assert connection.calls[0] == (cypher.LIST_VERSIONS, {"domain": HOSTILE}, f"listing graph versions of {HOSTILE}", True)
    assert [(statement, params) for statement, params, *_ in connection.calls[1:]] == \
        [(statement, {"domain": HOSTILE, "version": "v000001", "batch": DELETE_BATCH})
         for statement in cypher.DELETE_VERSION_BATCH.values()]
    assert_only_parameters(connection, HOSTILE)


def test_domains_and_version_checks_are_read_only_queries(store, connection):
    connection.reply(cypher.LIST_DOMAINS, [{"domain": "medicine"}, {"domain": None}, {"domain": "law"}])
    connection.reply(cypher.COUNT_VERSION, [{"documents": 0}], [{"documents": 3}])
    assert store.domains() == ["law", "medicine"]
    assert not store.has_version("law", "v000001") and store.has_version("law", "v000002")
    assert connection.calls == [
        (cypher.LIST_DOMAINS, None, "listing graph domains", True),
        (cypher.COUNT_VERSION, {"domain": "law", "version": "v000001"}, "checking graph version law v000001", True),
        (cypher.COUNT_VERSION, {"domain": "law", "version": "v000002"}, "checking graph version law v000002", True),
    ]


def test_every_statement_a_store_sends_may_be_sent_again_after_a_lost_reply(connection, tmp_path):
    """GraphConnection sends a statement again after a broken connection only when it is a read or
    cypher.is_idempotent says running it twice leaves the graph as once (the version writes MERGE
    on their keys): every statement a store sends is one of those; a plain CREATE is not."""
    store = GraphStore(connection, tmp_path / "domains")
    store.ensure_indexes()
    graph = DomainGraph(entities={"warfarin": EntityRecord("warfarin", "Warfarin", "DRUG", [], 2),
                                  "vkor": EntityRecord("vkor", "VKOR", "GENE", [], 1)},
                        facts=[FactRecord("warfarin", "inhibit", "vkor", 0.8, 1, ["a.md#0"], ["a.md"], False, ["svo"])],
                        mentions=[("a.md#0", "warfarin")])
    store.write_version("medicine", "v000001", [{"doc_id": "a.md", "title": "A", "source": "a.md"}],
                        [Chunk("a.md#0", "a.md", "medicine", "A", 0, "Warfarin inhibits VKOR.", 5)], graph)
    connection.reply(cypher.LIST_VERSIONS, [{"version": "v000001"}], [{"version": "v000001"}])
    store.delete_versions_except("medicine", keep=())
    serve(store, "medicine", "v000001")
    store.stats("medicine")
    store.facts("medicine", ["warfarin"], hops=2)
    store.all_facts("medicine")
    store.document_titles("medicine", ["a.md"])
    store.link_entities("medicine", "warfarin")
    sent = [(statement, read) for statement, _, _, read in connection.calls if statement != "persist"]
    writes = {statement for statement, read in sent if not read}
    assert writes == ({cypher.WRITE_DOCUMENTS, cypher.WRITE_CHUNKS, cypher.WRITE_ENTITIES, cypher.WRITE_MENTIONS,
                       cypher.WRITE_FACTS} | set(cypher.DELETE_VERSION_BATCH.values())
                      | set(cypher.FALKORDB.index_statements()))
    assert all(cypher.is_idempotent(statement) for statement in writes)
    assert all("CREATE (" not in statement for statement in writes)  # nodes and edges are MERGEd on their keys
    assert not cypher.is_idempotent("CREATE (:Probe {name: $name})")
    assert not cypher.is_idempotent(cypher.WRITE_FACTS.replace("MERGE", "CREATE"))


# --- reads ---------------------------------------------------------------------------------------

def test_reads_of_an_unindexed_domain_fail_before_any_query(store, connection):
    with pytest.raises(GraphError, match="not been indexed"):
        store.facts("astronomy", ["moon"])
    with pytest.raises(ValueError, match="hops"):
        store.facts("astronomy", ["moon"], hops=3)
    assert connection.calls == []


def test_stats_count_each_part_of_the_serving_version_or_a_named_one(store, connection):
    serve(store, "medicine", "v000002")
    for n, statement in enumerate(cypher.STATS.values(), 1):
        connection.reply(statement, [{"n": n}], [{"n": 10 * n}])
    assert store.stats("medicine") == {"version": "v000002", "documents": 1, "chunks": 2, "entities": 3,
                                       "relations": 4, "mentions": 5}
    assert store.stats("medicine", "v000001")["mentions"] == 50
    assert connection.calls == (
        [(statement, {"domain": "medicine", "version": "v000002"}, f"counting {name} of medicine", True)
         for name, statement in cypher.STATS.items()]
        + [(statement, {"domain": "medicine", "version": "v000001"}, f"counting {name} of medicine", True)
           for name, statement in cypher.STATS.items()])


def test_facts_are_read_both_ways_from_the_linked_entities_then_one_hop_further(store, connection):
    serve(store, "medicine", "v000002")
    connection.reply(cypher.FACTS_FROM, [fact_row("warfarin", "Warfarin", "inhibit", "vkor", "VKOR", 0.8)], [])
    connection.reply(cypher.FACTS_TO, [fact_row("vitamin k", "vitamin K", "reverse", "warfarin", "Warfarin", 0.9)],
                     [fact_row("kale", HOSTILE, "contain", "vitamin k", "vitamin K", 0.6, count=2, doc="kale.md")])
    facts = store.facts("medicine", ["warfarin", "warfarin"], hops=2, limit=7)

    scope, what = {"domain": "medicine", "version": "v000002", "limit": 7}, "reading facts of medicine"
    assert connection.calls == [
        (cypher.FACTS_FROM, {**scope, "keys": ["warfarin"]}, what, True),
        (cypher.FACTS_TO, {**scope, "keys": ["warfarin"]}, what, True),
        (cypher.FACTS_FROM, {**scope, "keys": ["vitamin k", "vkor"]}, what, True),  # the new entities, once each
        (cypher.FACTS_TO, {**scope, "keys": ["vitamin k", "vkor"]}, what, True),
    ]
    assert facts == [  # nearest first, then the most confident
        Fact("vitamin K", "vitamin k", "reverse", "Warfarin", "warfarin", 0.9, 1, ("a.md#0",), ("a.md",), False, 1),
        Fact("Warfarin", "warfarin", "inhibit", "VKOR", "vkor", 0.8, 1, ("a.md#0",), ("a.md",), False, 1),
        Fact(HOSTILE, "kale", "contain", "vitamin K", "vitamin k", 0.6, 2, ("kale.md#0",), ("kale.md",), False, 2),
    ]


def test_many_entity_keys_are_sent_in_batches_the_transport_carries(store, connection):
    serve(store, "medicine", "v000001")
    connection.max_list = 2
    store.facts("medicine", ["a", "b", "c"], hops=1)
    assert [(statement, params["keys"]) for statement, params, *_ in connection.calls] == [
        (cypher.FACTS_FROM, ["a", "b"]), (cypher.FACTS_FROM, ["c"]), (cypher.FACTS_TO, ["a", "b"]), (cypher.FACTS_TO, ["c"])]


def test_all_facts_are_read_page_by_page_until_a_short_page(store, connection):
    serve(store, "finance", "v000004")
    rows = [fact_row(f"h{i}", f"H{i}", "own", f"t{i}", f"T{i}", 0.5) for i in range(3)]
    connection.reply(cypher.ALL_FACTS_PAGE, rows[:2], rows[2:])
    facts = store.all_facts("finance", page=2)
    assert [(f.head_key, f.hop) for f in facts] == [("h0", 0), ("h1", 0), ("h2", 0)]
    scope = {"domain": "finance", "version": "v000004", "limit": 2}
    assert connection.calls == [(cypher.ALL_FACTS_PAGE, {**scope, "skip": 0}, "reading the facts of finance", True),
                                (cypher.ALL_FACTS_PAGE, {**scope, "skip": 2}, "reading the facts of finance", True)]


def test_document_titles_send_the_document_ids_as_a_list(store, connection):
    serve(store, "law", "v000001")
    connection.reply(cypher.DOCUMENT_TITLES, [{"doc_id": HOSTILE, "title": "Hostile"}, {"doc_id": "b.md", "title": "B"}])
    assert store.document_titles("law", [HOSTILE, "b.md"]) == {HOSTILE: "Hostile", "b.md": "B"}
    assert connection.calls == [(cypher.DOCUMENT_TITLES, {"domain": "law", "version": "v000001", "doc_ids": [HOSTILE, "b.md"]},
                                 "reading document titles of law", True)]
    assert_only_parameters(connection, HOSTILE)


def test_entity_linking_reads_the_catalog_once_per_version_and_never_sends_the_question(store, connection):
    catalog = [{"key": "warfarin", "name": "Warfarin", "type": "DRUG", "aliases": ["Coumadin"], "mentions": 5},
               {"key": "o brien", "name": HOSTILE, "type": "PERSON", "aliases": None, "mentions": 1}]
    connection.reply(cypher.ENTITY_CATALOG, catalog, catalog)
    serve(store, "medicine", "v000001")
    question = f"Does Coumadin interact with {HOSTILE}?"
    expected = [EntityLink("warfarin", "Warfarin", "DRUG", 1.0, "Coumadin")]
    assert [link for link in store.link_entities("medicine", question) if link.key == "warfarin"] == expected
    assert [link for link in store.link_entities("medicine", question) if link.key == "warfarin"] == expected
    serve(store, "medicine", "v000002")  # a re-index switched: the next link reads the new version's catalog
    store.link_entities("medicine", question)
    # One catalog read per version and nothing else: the question is matched here, never sent.
    assert connection.calls == [
        (cypher.ENTITY_CATALOG, {"domain": "medicine", "version": version}, "loading the entity catalog of medicine", True)
        for version in ("v000001", "v000002")]
