"""The graph connection under faults: a server that dies under several request threads at once
is restarted once, by one of them (and processes starting together share one server), and a
write whose reply is lost is never applied twice.

Real embedded graph servers (a test that kills one starts its own); the one fault injector here
sits inside the Redis client, where it loses the server's reply to a statement the server ran.
The last test is a unit test of the retry decision against a fake transport (pure logic)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
import redis

from indexing import cypher
from indexing.chunking import Chunk
from indexing.entity_resolution import DomainGraph, EntityRecord, FactRecord
from indexing.graph_connection import GraphConnection, GraphError
from indexing.graph_server import STATE_FILE, EmbeddedGraphServer
from indexing.graph_transport import TransportUnavailable

READERS = 8  # as 8 questions' retrieval would, through the app's one connection
HANG_GUARD_S = 120  # an upper bound against a hang, never a wait for an event


def _servers_of(directory: Path) -> list[psutil.Process]:
    """Every live redis-server whose working folder or arguments name ``directory``."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd", "status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        arguments = " ".join(process.info["cmdline"] or ())
        if process.info["cwd"] == str(directory) or str(directory) in arguments:
            if "redis" in arguments or "redis" in process.name():
                found.append(process)
    return found


def _sigkill_and_wait(pid: int) -> None:
    process = psutil.Process(pid)
    os.kill(pid, signal.SIGKILL)
    process.wait(timeout=HANG_GUARD_S)  # the crash has happened before the readers start


# --- item 18: one restart for every thread that finds the server dead --------------------------

def test_a_crash_under_concurrent_reads_is_restarted_once_and_every_read_is_answered(settings, tmp_path):
    server = EmbeddedGraphServer(tmp_path / "graph").start()
    connection = GraphConnection(settings.graph_params, server)
    try:
        connection.query("UNWIND range(1, 50) AS i CREATE (:Saved {i: i})", what="writing")
        connection.persist("saving the write")
        _sigkill_and_wait(_pid_of(server))

        start = threading.Barrier(READERS + 1)
        answers: dict[int, object] = {}

        def read(n: int) -> None:
            start.wait(timeout=HANG_GUARD_S)
            try:
                answers[n] = connection.query("MATCH (s:Saved) RETURN count(s) AS n, sum(s.i) AS total",
                                              what=f"reader {n}", read=True)
            except Exception as exc:  # recorded, so the assertion shows which reader failed and why
                answers[n] = exc

        def launch_py_poll() -> None:  # launch.py checks the server once a second beside the requests
            start.wait(timeout=HANG_GUARD_S)
            server.ensure_running()

        threads = [threading.Thread(target=read, args=(n,)) for n in range(READERS)]
        threads.append(threading.Thread(target=launch_py_poll))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=HANG_GUARD_S)

        assert answers == {n: [{"n": 50, "total": 1275}] for n in range(READERS)}
        assert server.restarts == 1 and server.is_running()
        assert [p.pid for p in _servers_of(server.directory)] == [_pid_of(server)]
    finally:
        rivals = [p for p in _servers_of(server.directory) if p.pid != _pid_of(server)]
        connection.close()
        for rival in rivals:  # only when the test failed: no orphan outlives it
            rival.kill()


def _pid_of(server: EmbeddedGraphServer) -> int:
    return _pid_of_folder(server.directory)


def _pid_of_folder(directory: Path) -> int:
    """The pid the state file records: the server every process on this data folder uses."""
    return json.loads((directory / STATE_FILE).read_text())["pid"]


_START_WHEN_TOLD = """
import sys
from pathlib import Path
from indexing.graph_server import EmbeddedGraphServer
print("ready", flush=True)
sys.stdin.readline()  # all processes start at once, when the test tells them
server = EmbeddedGraphServer(Path(sys.argv[1])).start()
print(server.socket_path, flush=True)
"""


def test_processes_starting_on_one_folder_at_once_share_one_server(tmp_path):
    """The app and a CLI command beside it (or two commands) starting together: one of them
    starts the server, the others attach to it (an flock on the folder, then the state file)."""
    directory = tmp_path / "graph"
    starters = [subprocess.Popen([sys.executable, "-c", _START_WHEN_TOLD, str(directory)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        assert [starter.stdout.readline().strip() for starter in starters] == ["ready"] * 3
        for starter in starters:
            starter.stdin.write("go\n")
            starter.stdin.flush()
        sockets = {starter.communicate(timeout=HANG_GUARD_S)[0].strip() for starter in starters}
        assert [p.pid for p in _servers_of(directory.resolve())] == [_pid_of_folder(directory)]
        assert sockets == {str(directory.resolve() / "graph.sock")}
        assert all(starter.returncode == 0 for starter in starters)
    finally:
        for starter in starters:
            starter.kill()
        for server in _servers_of(directory.resolve()):
            server.kill()  # their starters exited without stopping them


# --- item 19: a lost reply never makes a write run twice ---------------------------------------

@contextmanager
def replies_lost(monkeypatch, statements: set[str], times: int = 1):
    """The server's reply to the first ``times`` runs of each of ``statements`` is lost on its way:
    the server runs the statement and answers, the answer is read off the socket and thrown away,
    and the connection is dropped, so the client sees a broken connection and cannot know whether
    the statement ran. Yields the list of statements whose reply was lost."""
    real = redis.Redis._send_command_parse_response
    remaining = {statement: times for statement in statements}
    lost: list[str] = []

    def send_and_lose(client, connection, command_name, *args, **options):
        reply = real(client, connection, command_name, *args, **options)
        if command_name == "GRAPH.QUERY":
            for statement, left in remaining.items():
                if left and statement in str(args[2]):
                    remaining[statement] -= 1
                    lost.append(statement)
                    connection.disconnect()
                    raise redis.ConnectionError("the reply was lost (test fault)")
        return reply

    with monkeypatch.context() as patched:
        patched.setattr(redis.Redis, "_send_command_parse_response", send_and_lose)
        yield lost


def _version(n_docs: int = 3) -> tuple[list[dict], list[Chunk], DomainGraph]:
    documents = [{"doc_id": f"d{i}.md", "title": f"D{i}", "source": f"d{i}.md"} for i in range(n_docs)]
    chunks = [Chunk(f"d{i}.md#{j}", f"d{i}.md", "law", f"D{i}", j, "text", 1) for i in range(n_docs) for j in range(2)]
    entities = {key: EntityRecord(key, key.title(), "CONCEPT", [], 1) for key in ("court", "law", "review")}
    facts = [FactRecord("court", "apply", "law", 0.9, 2, ["d0.md#0"], ["d0.md"], False, ["svo"]),
             FactRecord("court", "exercise", "review", 0.8, 1, ["d1.md#1"], ["d1.md"], False, ["svo"]),
             FactRecord("court", "apply", "review", 0.7, 1, ["d2.md#0"], ["d2.md"], False, ["svo"])]
    mentions = [(chunk.id, key) for chunk in chunks for key in ("court", "law")]
    return documents, chunks, DomainGraph(entities=entities, facts=facts, mentions=mentions)


WRITES = {cypher.WRITE_DOCUMENTS, cypher.WRITE_CHUNKS, cypher.WRITE_ENTITIES, cypher.WRITE_MENTIONS, cypher.WRITE_FACTS}


def test_a_version_write_whose_replies_are_lost_is_retried_without_duplicates(store, monkeypatch):
    documents, chunks, graph = _version()
    with replies_lost(monkeypatch, WRITES) as lost:
        store.write_version("law", "v000001", documents, chunks, graph)
    assert sorted(lost) == sorted(WRITES)  # every statement's first reply was lost, and each was sent again
    assert store.stats("law", "v000001") == {"version": "v000001", "documents": 3, "chunks": 6, "entities": 3,
                                             "relations": 3, "mentions": 12}
    has_chunk = store.connection.query(
        "MATCH (:Document {domain: $domain, version: $version})-[r:HAS_CHUNK]->() RETURN count(r) AS n",
        {"domain": "law", "version": "v000001"}, what="counting HAS_CHUNK edges", read=True)
    assert has_chunk == [{"n": 6}]


def test_a_write_that_is_not_idempotent_is_never_sent_twice(graph_connection, monkeypatch):
    create = "CREATE (:Once {tag: $tag})"
    try:
        with replies_lost(monkeypatch, {create}) as lost:
            with pytest.raises(GraphError, match="adding a node: .* may or may not have happened"):
                graph_connection.query(create, {"tag": "lost reply"}, what="adding a node")
        assert lost == [create]
        count = graph_connection.query("MATCH (o:Once {tag: $tag}) RETURN count(o) AS n", {"tag": "lost reply"},
                                       what="counting", read=True)
        assert count == [{"n": 1}]  # the server ran it once; the connection did not send it again
    finally:
        graph_connection.query("MATCH (o:Once) DELETE o", what="cleaning up")


# --- the retry decision (unit, fake transport) -------------------------------------------------

class BrokenOnce:
    """A transport whose first call breaks the connection after sending; later calls answer."""

    name, retries_itself = "fake", False

    def __init__(self):
        self.calls: list[tuple[str, bool, bool]] = []

    def run(self, statement, params, *, read, idempotent):
        self.calls.append((statement, read, idempotent))
        if len(self.calls) == 1:
            raise TransportUnavailable("connection reset after sending")
        return [{"ok": 1}]

    def fits(self, statement, params):
        return True

    def close(self):
        pass


@pytest.mark.parametrize("statement, read, idempotent, retried", [
    (cypher.ENTITY_CATALOG, True, None, True),  # a read
    (cypher.WRITE_FACTS, False, None, True),  # MERGEs on its keys: cypher.is_idempotent
    (cypher.DELETE_VERSION_BATCH["Entity"], False, None, True),  # deletes what is left
    (cypher.FALKORDB.index_statements()[0], False, None, True),  # an existing index is refused, and ignored
    ("CREATE (:X {n: $n})", False, None, False),  # anything else that writes
    ("MATCH (x:X) SET x.n = x.n + 1", False, None, False),
    ("MERGE (x:X {n: $n})", False, True, True),  # the caller vouches for it
    (cypher.WRITE_FACTS, False, False, False),  # or forbids it
])
def test_only_statements_that_may_run_twice_are_sent_again(settings, statement, read, idempotent, retried):
    connection = GraphConnection(replace(settings.graph_params, neo4j_uri="redis://graph.invalid:6379"))
    transport = BrokenOnce()
    connection._new_transport = lambda: transport
    if retried:
        assert connection.query(statement, {}, what="testing", read=read, idempotent=idempotent) == [{"ok": 1}]
        assert transport.calls == [(statement, read, True)] * 2
    else:
        with pytest.raises(GraphError, match="testing: .* may or may not have happened"):
            connection.query(statement, {}, what="testing", read=read, idempotent=idempotent)
        assert transport.calls == [(statement, read, False)]
