"""The embedded graph server: a real FalkorDB process reached over Bolt with the neo4j driver."""

from __future__ import annotations

import stat
import subprocess
import sys
import time

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


def test_server_answers_over_bolt_with_its_secret(graph_server):
    with GraphDatabase.driver(graph_server.bolt_uri, auth=graph_server.auth, connection_timeout=2,
                              connection_acquisition_timeout=3) as driver:
        records = driver.execute_query(cypher.PING, database_="fixture_check").records
    assert records[0]["ok"] == 1


def test_secret_file_is_private(graph_server):
    mode = stat.S_IMODE((graph_server.directory / "secret").stat().st_mode)
    assert mode == 0o600
    assert len(graph_server.secret) >= 32


@pytest.mark.parametrize("auth", [("falkordb", "wrong-password"), ("someone", "x")])
def test_wrong_credentials_are_refused(graph_server, auth):
    # FalkorDB answers a bad login with a generic failure rather than an AuthError.
    with GraphDatabase.driver(graph_server.bolt_uri, auth=auth, connection_timeout=2,
                              connection_acquisition_timeout=3, max_transaction_retry_time=3) as driver:
        with pytest.raises((Neo4jError, DriverError)):
            driver.execute_query(cypher.PING, database_="fixture_check")


def test_query_error_does_not_kill_the_server(settings, graph_server):
    connection = GraphConnection(settings, graph_server)
    with pytest.raises(GraphError, match="testing a broken query"):
        connection.query("MATCH (n RETURN n", what="testing a broken query")
    assert graph_server.is_running()
    assert connection.query(cypher.PING, what="ping after error") == [{"ok": 1}]
    connection.close(stop_server=False)


HOSTILE_NAMES = [
    "it's", "back\\slash", "ends with \\", "quote ' and \\' mix", 'double "quotes"', "braces {x: 1}",
    "})-[:X]->(n) DETACH DELETE n //", "line\nbreak", "tab\tin", "\\n literally", "中文 名字", "Ελληνικά", "emoji 🧪",
    "'; MATCH (n) DETACH DELETE n //",
]


def test_parameters_round_trip_verbatim(settings, graph_server):
    """FalkorDB pastes parameters into the query header; the dialect's escaping must make every
    string come back exactly, and nothing in a value may act as Cypher."""
    connection = GraphConnection(settings.model_copy(update={"neo4j_database": "roundtrip"}), graph_server)
    connection.query("CREATE (:Probe {name: $name})", {"name": "sentinel"}, what="writing a sentinel")
    rows = connection.query(
        "UNWIND $names AS name CREATE (p:Probe {name: name}) RETURN p.name AS name", {"names": HOSTILE_NAMES},
        what="writing hostile names")
    assert [row["name"] for row in rows] == HOSTILE_NAMES
    for name in HOSTILE_NAMES:
        found = connection.query("MATCH (p:Probe {name: $name}) RETURN p.name AS name", {"name": name}, what="reading one")
        assert found == [{"name": name}]
    sentinel = connection.query("MATCH (p:Probe {name: $n}) RETURN count(p) AS c", {"n": "sentinel"}, what="sentinel")
    assert sentinel == [{"c": 1}]
    connection.close(stop_server=False)


def test_crashed_server_is_restarted_with_its_data(settings, tmp_path):
    server = EmbeddedGraphServer(tmp_path / "graph").start()
    connection = GraphConnection(settings, server)
    try:
        connection.query("CREATE (:Kept {name: $n})", {"n": "before"}, what="write")
        # Wait for the RDB snapshot (save 1 1) so the write survives a SIGKILL.
        server_file = server.directory / "graph.rdb"
        deadline = time.monotonic() + 10
        while not server_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)
        server.kill()
        assert not server.is_running()
        rows = connection.query("MATCH (k:Kept) RETURN k.name AS name", what="read after crash")
        assert rows == [{"name": "before"}]
        assert server.restarts == 1 and server.is_running()
    finally:
        connection.close()


def test_second_process_attaches_instead_of_starting_a_rival(graph_server):
    script = (
        "import sys; from pathlib import Path; from indexing.graph_server import EmbeddedGraphServer as S;"
        "s = S(Path(sys.argv[1])).start(); print(s.bolt_uri, s.owned); s.stop()"
    )
    out = subprocess.run([sys.executable, "-c", script, str(graph_server.directory)],
                         capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert out == [graph_server.bolt_uri, "False"]  # attached, not owner
    assert graph_server.is_running()  # a non-owner's stop leaves the server running


def test_oversized_parameters_are_refused_before_they_reach_the_server(settings, graph_server):
    """FalkorDB aborts on ~4 KB of inlined parameters; the connection must refuse such a call
    with a clear error instead of sending it, and the server must keep serving."""
    connection = GraphConnection(settings, graph_server)
    with pytest.raises(GraphError, match="too large"):
        connection.query("RETURN size($text) AS n", {"text": "x" * 100_000}, what="sending a huge parameter")
    assert graph_server.is_running()
    assert connection.query("RETURN size($text) AS n", {"text": "y" * 3000}, what="a large but allowed one") == [{"n": 3000}]
    connection.close(stop_server=False)


_scalars = st.one_of(st.text(max_size=60), st.integers(-10**12, 10**12), st.floats(allow_nan=False, allow_infinity=False),
                     st.booleans(), st.none())
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=10) | st.dictionaries(
    st.from_regex(r"[a-z]{1,8}", fullmatch=True), inner, max_size=5), max_leaves=40)


@pytest.fixture(scope="module")
def shared_connection(graph_server, tmp_path_factory):
    connection = GraphConnection(load_settings(data_dir=tmp_path_factory.mktemp("fuzz"), _env_file=None), graph_server)
    yield connection
    connection.close(stop_server=False)


@settings_hypothesis(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_values, min_size=1, max_size=80))
def test_any_payload_the_dialect_accepts_leaves_the_server_running(shared_connection, graph_server, rows):
    """The size guard is an estimate; this checks it errs on the safe side for arbitrary values."""
    connection = shared_connection
    statement = "UNWIND $rows AS r RETURN count(r) AS n"
    while rows and not connection.fits(statement, {"rows": rows}):
        rows = rows[:-1]
    if rows:
        try:
            connection.query(statement, {"rows": rows}, what="fuzzing the size guard")
        except GraphError:
            pass  # a value FalkorDB cannot take is fine; crashing the server is not
    assert graph_server.is_running()
