"""The embedded graph server: a real FalkorDB process on a private Unix socket, no network port."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import redis

from indexing import cypher
from indexing.graph_connection import GraphConnection, GraphError
from indexing.graph_server import STATE_FILE, EmbeddedGraphServer, GraphServerError, read_or_create_secret


def _pid(server: EmbeddedGraphServer) -> int:
    return json.loads((server.directory / STATE_FILE).read_text())["pid"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_server_listens_on_its_private_socket_and_no_tcp_port(graph_server):
    process = psutil.Process(_pid(graph_server))
    assert process.net_connections(kind="inet") == []  # no TCP or UDP socket at all, listening or not
    unix = [c.laddr for c in process.net_connections(kind="unix")]
    assert str(graph_server.socket_path) in unix
    assert graph_server.socket_path.parent == graph_server.directory
    assert _mode(graph_server.directory) == 0o700 and _mode(graph_server.socket_path) == 0o700
    assert _mode(graph_server.directory / "secret") == 0o600 and len(graph_server.secret) >= 32


def _client(server: EmbeddedGraphServer, password: str | None) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(server.socket_path), password=password, socket_timeout=5)


def test_server_answers_with_its_secret_and_refuses_without_it(graph_server):
    assert _client(graph_server, graph_server.secret).ping()
    for password in (None, "", "not-the-secret"):
        with pytest.raises(redis.AuthenticationError):
            _client(graph_server, password).execute_command("GRAPH.QUERY", "knowledge", "MATCH (n) RETURN count(n)")


def test_query_error_does_not_kill_the_server(settings, graph_server):
    connection = GraphConnection(settings.graph_params, graph_server)
    with pytest.raises(GraphError, match="testing a broken query.*rejected"):
        connection.query("MATCH (n RETURN n", what="testing a broken query")
    assert graph_server.is_running()
    assert connection.query(cypher.PING, what="ping after error") == [{"ok": 1}]
    connection.close(stop_server=False)


def test_no_size_limit_on_the_socket(settings, graph_server):
    """The Bolt layer's ~4 KB inline buffer is not on this path: a 200 KB string parameter and a
    500-row UNWIND of 2 KB rows go through, and the connection does not refuse them."""
    connection = GraphConnection(settings.graph_params, graph_server)
    assert connection.query("RETURN size($text) AS n", {"text": "x" * 200_000}, what="a huge parameter") == [{"n": 200_000}]
    rows = [{"i": i, "text": "é" * 2000} for i in range(500)]
    assert connection.fits("UNWIND $rows AS r RETURN count(r) AS n", {"rows": rows})
    assert connection.query("UNWIND $rows AS r RETURN count(r) AS n, sum(size(r.text)) AS chars", {"rows": rows},
                            what="a big batch") == [{"n": 500, "chars": 1_000_000}]
    connection.close(stop_server=False)


def test_crashed_server_is_restarted_with_its_data(settings, tmp_path):
    server = EmbeddedGraphServer(tmp_path / "graph").start()
    connection = GraphConnection(settings.graph_params, server)
    try:
        connection.query("CREATE (:Kept {name: $n})", {"n": "before"}, what="write")
        connection.persist("saving the write")
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
        "s = S(Path(sys.argv[1])).start(); print(s.uri, s.owned); s.stop()"
    )
    out = subprocess.run([sys.executable, "-c", script, str(graph_server.directory)],
                         capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert out == [graph_server.uri, "False"]  # attached, not owner
    assert graph_server.is_running()  # a non-owner's stop leaves the server running


def _watch_command_lines(secret: str, stop: threading.Event, seen: list[str]) -> None:
    """Every process's arguments, over and over until stopped; any that hold the secret are kept."""
    while not stop.is_set():
        for process in psutil.process_iter(["cmdline"]):
            arguments = " ".join(process.info["cmdline"] or ())
            if secret in arguments:
                seen.append(arguments)


def test_the_secret_is_in_no_process_arguments_during_start_and_restart(tmp_path):
    directory = tmp_path / "graph"
    secret = read_or_create_secret(directory)
    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=_watch_command_lines, args=(secret, stop, seen), daemon=True)
    watcher.start()
    server = EmbeddedGraphServer(directory)
    try:
        server.start()
        server.kill()
        assert server.ensure_running()
        time.sleep(0.3)
    finally:
        stop.set()
        watcher.join(timeout=30)
        server.stop()
    assert seen == []
    assert secret not in (directory / "server.log").read_text()


def test_a_data_folder_from_the_bolt_era_keeps_its_graph(settings, tmp_path):
    """Bolt-era servers wrote the same RDB file and a state file with TCP ports: a stale one is
    ignored, and one whose server still runs is refused with what to do."""
    directory = tmp_path / "graph"
    server = EmbeddedGraphServer(directory).start()
    connection = GraphConnection(settings.graph_params, server)
    connection.query("CREATE (:Old {name: $n})", {"n": "from before"}, what="writing")
    connection.close()  # stops the server with a final snapshot
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        legacy = {"pid": sleeper.pid, "owner_pid": sleeper.pid, "redis_port": 23456, "bolt_port": 23457}
        (directory / STATE_FILE).write_text(json.dumps(legacy))
        with pytest.raises(GraphServerError, match=f"older version.*kill {sleeper.pid}"):
            EmbeddedGraphServer(directory).start()
    finally:
        sleeper.kill()
        sleeper.wait()
    again = EmbeddedGraphServer(directory).start()  # the legacy state's pid is dead now
    connection = GraphConnection(settings.graph_params, again)
    try:
        assert connection.query("MATCH (o:Old) RETURN o.name AS name", what="reading") == [{"name": "from before"}]
    finally:
        connection.close()


def test_a_deep_data_folder_gets_its_socket_in_a_private_temporary_folder(settings, tmp_path):
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 5) / "graph"
    server = EmbeddedGraphServer(deep).start()
    try:
        socket_dir = server.socket_path.parent
        assert socket_dir != server.directory and _mode(socket_dir) == 0o700
        connection = GraphConnection(settings.graph_params, server)
        assert connection.query(cypher.PING, what="ping") == [{"ok": 1}]
        connection.close(stop_server=False)
    finally:
        server.stop()
    assert not socket_dir.exists()


def test_a_server_that_will_not_start_says_why(tmp_path):
    directory = tmp_path / "graph"
    directory.mkdir()
    (directory / "graph.rdb").write_bytes(b"not an RDB file")
    with pytest.raises(GraphServerError, match="did not start") as failed:
        EmbeddedGraphServer(directory, start_timeout_s=5).start()
    assert str(directory / "server.log") in str(failed.value)
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if str(directory) in " ".join(p.info["cmdline"] or ())]
    for process in leftovers:
        os.kill(process.pid, signal.SIGKILL)
    assert leftovers == []
