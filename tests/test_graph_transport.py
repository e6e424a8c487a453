"""Both graph transports against real servers: FalkorDB's own protocol on the embedded server's
socket (what the app uses), and Bolt through the neo4j driver (for NEO4J_URI), on a FalkorDB
that the suite starts with its Bolt listener on loopback for these tests only."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_hypothesis
from hypothesis import strategies as st
from neo4j import GraphDatabase
from neo4j.exceptions import DriverError, Neo4jError

from assistant.settings import load_settings
from indexing import cypher
from indexing.graph_connection import GraphConnection, GraphError
from indexing.graph_server import EmbeddedGraphServer
from indexing.graph_store import GraphStore
from indexing.graph_transport import FALKORDB_BOLT_MAX_INLINE_BYTES

HOSTILE_NAMES = [
    "it's", "back\\slash", "ends with \\", "quote ' and \\' mix", 'double "quotes"', 'ends with "', "braces {x: 1}",
    "})-[:X]->(n) DETACH DELETE n //", "} RETURN 1 //", "line\nbreak", "crlf\r\nbreak", "tab\tin", "\\n literally",
    "\\\" escaped quote", "$name", "`backtick`", "中文 名字", "Ελληνικά", "emoji 🧪", "", " ",
    "'; MATCH (n) DETACH DELETE n //", '"; MATCH (n) DETACH DELETE n //',
]


def _bolt_settings(tmp_path, server: EmbeddedGraphServer, database: str):
    user, password = server.bolt_auth
    return load_settings(data_dir=tmp_path / "data", _env_file=None, neo4j_uri=server.bolt_uri, neo4j_server="falkordb",
                         neo4j_user=user, neo4j_password=password, neo4j_database=database)


@pytest.fixture(params=["socket", "bolt"])
def connection(request, tmp_path, graph_server, bolt_graph_server):
    """A fresh graph (its own name) on one transport; dropped afterwards."""
    database = f"transport_{request.param}_{abs(hash(request.node.name)) % 10**8}"
    if request.param == "socket":
        settings = load_settings(data_dir=tmp_path / "data", _env_file=None, neo4j_database=database)
        made = GraphConnection(settings.graph_params, graph_server)
    else:
        made = GraphConnection(_bolt_settings(tmp_path, bolt_graph_server, database).graph_params)
    assert made.transport_name == {"socket": "FalkorDB socket", "bolt": "Bolt"}[request.param]
    yield made
    made.query("MATCH (n) DETACH DELETE n", what="cleaning up")
    made.close(stop_server=False)


def test_parameters_round_trip_verbatim(connection):
    """FalkorDB pastes parameters into a query header on both transports: strings must come back
    exactly, and nothing in a value may act as Cypher."""
    connection.query("CREATE (:Probe {name: $name})", {"name": "sentinel"}, what="writing a sentinel")
    rows = connection.query("UNWIND $names AS name CREATE (p:Probe {name: name}) RETURN p.name AS name",
                            {"names": HOSTILE_NAMES}, what="writing hostile names")
    assert [row["name"] for row in rows] == HOSTILE_NAMES
    for name in HOSTILE_NAMES:
        found = connection.query("MATCH (p:Probe {name: $name}) RETURN p.name AS name", {"name": name}, what="reading one")
        assert found == [{"name": name}]
    sentinel = connection.query("MATCH (p:Probe {name: $n}) RETURN count(p) AS c", {"n": "sentinel"}, what="sentinel")
    assert sentinel == [{"c": 1}]


def test_batches_of_hostile_rows_round_trip_through_the_store(connection, tmp_path):
    """GraphStore's own batching: 500 rows a statement on the socket, as many as fit on Bolt."""
    store = GraphStore(connection, tmp_path / "domains")
    statement = "UNWIND $rows AS r CREATE (p:Probe {i: r.i, name: r.name, tags: r.tags}) RETURN count(p) AS n"
    rows = [{"i": i, "name": HOSTILE_NAMES[i % len(HOSTILE_NAMES)] + f" #{i}", "tags": HOSTILE_NAMES[:3]}
            for i in range(1000)]
    batches = list(store._batches(statement, {}, rows))
    if connection.transport_name == "FalkorDB socket":
        assert [len(b) for b in batches] == [500, 500]
    else:
        assert len(batches) > 20  # the ~4 KB inline buffer of FalkorDB's Bolt layer
    for batch in batches:
        assert connection.query(statement, {"rows": batch}, what="writing a batch") == [{"n": len(batch)}]
    back = connection.query("MATCH (p:Probe) RETURN p.i AS i, p.name AS name, p.tags AS tags ORDER BY i",
                            what="reading back", read=True)
    assert back == rows


def test_a_broken_query_is_reported_with_what_was_being_done(connection):
    with pytest.raises(GraphError, match="testing a broken query: the graph server rejected the query"):
        connection.query("MATCH (n RETURN n", what="testing a broken query")
    assert connection.query(cypher.PING, what="ping after error") == [{"ok": 1}]


# --- Bolt only ---------------------------------------------------------------------------------

def test_bolt_answers_with_the_secret(bolt_graph_server):
    with GraphDatabase.driver(bolt_graph_server.bolt_uri, auth=bolt_graph_server.bolt_auth, connection_timeout=2,
                              connection_acquisition_timeout=3) as driver:
        records = driver.execute_query(cypher.PING, database_="fixture_check").records
    assert records[0]["ok"] == 1


@pytest.mark.parametrize("auth", [("falkordb", "wrong-password"), ("someone", "x")])
def test_bolt_refuses_wrong_credentials(bolt_graph_server, auth):
    # FalkorDB answers a bad login with a generic failure rather than an AuthError.
    with GraphDatabase.driver(bolt_graph_server.bolt_uri, auth=auth, connection_timeout=2,
                              connection_acquisition_timeout=3, max_transaction_retry_time=3) as driver:
        with pytest.raises((Neo4jError, DriverError)):
            driver.execute_query(cypher.PING, database_="fixture_check")


def test_bolt_refuses_oversized_parameters_before_they_reach_a_falkordb(tmp_path, bolt_graph_server):
    """FalkorDB's Bolt layer aborts on ~4 KB of inlined parameters; the transport must refuse such
    a call with a clear error instead of sending it, and the server must keep serving."""
    connection = GraphConnection(_bolt_settings(tmp_path, bolt_graph_server, "oversize").graph_params)
    with pytest.raises(GraphError, match="sending a huge parameter.*too large"):
        connection.query("RETURN size($text) AS n", {"text": "x" * 100_000}, what="sending a huge parameter")
    assert bolt_graph_server.is_running()
    assert connection.query("RETURN size($text) AS n", {"text": "y" * 3000}, what="a large but allowed one") == [{"n": 3000}]
    assert not connection.fits("RETURN $t", {"t": "z" * FALKORDB_BOLT_MAX_INLINE_BYTES})
    connection.close()


_scalars = st.one_of(st.text(max_size=60), st.integers(-10**12, 10**12), st.floats(allow_nan=False, allow_infinity=False),
                     st.booleans(), st.none())
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=10) | st.dictionaries(
    st.from_regex(r"[a-z]{1,8}", fullmatch=True), inner, max_size=5), max_leaves=40)


@pytest.fixture(scope="module")
def bolt_connection(bolt_graph_server, tmp_path_factory):
    connection = GraphConnection(_bolt_settings(tmp_path_factory.mktemp("fuzz"), bolt_graph_server, "fuzz").graph_params)
    yield connection
    connection.close()


@settings_hypothesis(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_values, min_size=1, max_size=80))
def test_any_payload_the_bolt_guard_accepts_leaves_the_server_running(bolt_connection, bolt_graph_server, rows):
    """The size guard is an estimate; this checks it errs on the safe side for arbitrary values."""
    statement = "UNWIND $rows AS r RETURN count(r) AS n"
    while rows and not bolt_connection.fits(statement, {"rows": rows}):
        rows = rows[:-1]
    if rows:
        try:
            bolt_connection.query(statement, {"rows": rows}, what="fuzzing the size guard")
        except GraphError:
            pass  # a value FalkorDB cannot take is fine; crashing the server is not
    assert bolt_graph_server.is_running()
