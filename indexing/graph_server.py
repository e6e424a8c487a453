"""The embedded graph server: FalkorDB (a Redis module) on a private Unix socket.

Started by the project itself when ``NEO4J_URI`` is unset. Facts that shaped this module
(see ../shared/DESIGN.md):

* No network port at all: Redis runs with ``--port 0`` and a Unix socket inside the graph data
  folder (folder mode 0700, socket mode 0700), and FalkorDB's Bolt listener is not enabled. That
  listener binds every interface whatever ``--bind`` says and lets in a client that sends no
  password (FalkorDB 4.16, checked here), so only the test suite and the benchmark, which need a
  real Bolt server for the Bolt transport, ever pass ``bolt_port``.
* The password (a random secret in a mode-0600 file) reaches redis-server on its standard
  input as configuration, never on its command line, where ``/proc/<pid>/cmdline`` would show it.
* AOF stays off (with AOF on, a query that errored over Bolt crashed the server); the graph is
  persisted with RDB snapshots (``--save 1 1``), an explicit one after each re-index's writes
  (:meth:`EmbeddedGraphServer.save`), and a final save on SIGTERM. The RDB file is the same as
  in the Bolt era, so an old data folder keeps working.
* The graph is derived data: the corpus plus the index manifests can always rebuild it.

A small state file records the running server's pid and socket so that a second process
(``assistant status`` beside a running app) attaches to it instead of starting a rival
server on the same data directory. Starting, restarting and stopping happen one at a time per
data folder (a thread lock, and an ``flock`` on a file in the folder for other processes), each
re-checking under the lock: two servers on one folder would each save their own snapshot over
the other's, and the one stopped last wins with whatever it held.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from indexing.atomic_files import write_text_atomic
from indexing.graph_server_config import (LOG_FILE, TEMP_SOCKET_PREFIX, password_config, private_dir,
                                          read_or_create_secret, server_command, socket_path_for)

log = logging.getLogger(__name__)

STATE_FILE = "server.json"
LOCK_FILE = "server.lock"  # flocked while a process starts, restarts or stops the folder's server
BOLT_USER = "falkordb"


class GraphServerError(RuntimeError):
    """The embedded graph server could not be started or reached; the message says why."""


@dataclass(frozen=True)
class ServerState:
    pid: int
    owner_pid: int
    socket: str
    bolt_port: int | None = None

    @property
    def uri(self) -> str:
        return "unix://" + quote(self.socket)


# FalkorDB 4.16 ignores a BOLT_PORT of 32768 or more (checked here: nothing listens), and Linux
# hands out ephemeral ports from 32768 up, so a Bolt port for a test server is drawn below that.
BOLT_PORT_RANGE = (20000, 32767)


def free_bolt_port() -> int:
    """A loopback TCP port nobody listens on right now, for a test or benchmark Bolt listener."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randint(*BOLT_PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise GraphServerError(f"no free TCP port in {BOLT_PORT_RANGE}")


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


class EmbeddedGraphServer:
    """Owns (or attaches to) one FalkorDB process whose files live in ``directory``.

    ``bolt_port`` also opens FalkorDB's Bolt listener on that port: for the tests and the benchmark
    of the Bolt transport only (see the module docstring); the app never sets it."""

    def __init__(self, directory: Path, *, start_timeout_s: float = 30.0, bolt_port: int | None = None):
        self.directory = Path(directory).resolve()
        self.start_timeout_s = start_timeout_s
        self.bolt_port = bolt_port
        self._process: subprocess.Popen | None = None
        self._state: ServerState | None = None
        self._owned = False
        # Every thread of a request that finds the server dead, and launch.py's once-a-second
        # check, may ask for a restart at the same moment: one of them restarts it, the others
        # wait here and then find it running (see _exclusive).
        self._lifecycle = threading.Lock()
        self.restarts = 0  # also the server's generation: a connection made before a restart reconnects

    # --- public surface ------------------------------------------------------------------
    @property
    def secret(self) -> str:
        return read_or_create_secret(self.directory)

    @property
    def uri(self) -> str:
        """``unix:///…/graph.sock``: where the Redis protocol reaches the server."""
        return self._started().uri

    @property
    def socket_path(self) -> Path:
        return Path(self._started().socket)

    @property
    def bolt_uri(self) -> str:
        state = self._started()
        if state.bolt_port is None:
            raise GraphServerError("this graph server has no Bolt listener (only tests and benchmarks open one)")
        return f"bolt://127.0.0.1:{state.bolt_port}"

    @property
    def bolt_auth(self) -> tuple[str, str]:
        return (BOLT_USER, self.secret)

    @property
    def owned(self) -> bool:
        return self._owned

    def start(self) -> "EmbeddedGraphServer":
        """Attach to a live server on this data dir, or start a new one; wait until it answers."""
        with self._exclusive():
            self._attach_or_launch()
        return self

    def is_running(self) -> bool:
        state, process = self._state, self._process
        if state is None:
            return False
        if process is not None and process.poll() is not None:  # reaps our own child once it exits
            return False
        # Also when poll() said None: it says so to every thread but one that asks at the same moment.
        return pid_alive(state.pid)

    def ensure_running(self) -> bool:
        """Restart the server if it died. Returns True when this call restarted it (or followed
        another process's restart); False when it was running, including when another thread's
        restart finished while this call waited for it."""
        if self.is_running():
            return False
        with self._exclusive():
            if self.is_running():  # restarted by whoever held the lock before us
                return False
            owned_socket = self._state.socket if self._owned and self._state else None
            if owned_socket:
                log.warning("graph server died (pid %s); restarting", self._state.pid)
            # A non-owner (or an owner whose server another process already replaced) attaches to
            # the live server recorded in the state file; otherwise the dead one is replaced.
            self._attach_or_launch(owned_socket)
            self.restarts += 1  # counted either way: writes made before the crash may be lost
            return True

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop a server this process owns; Redis writes a final RDB snapshot on SIGTERM."""
        with self._exclusive(required=False):
            self._stop(timeout_s)

    def _stop(self, timeout_s: float) -> None:
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
        socket_dir = Path(self._state.socket).parent
        if socket_dir != self.directory and socket_dir.name.startswith(TEMP_SOCKET_PREFIX):
            shutil.rmtree(socket_dir, ignore_errors=True)
        self._state, self._process, self._owned = None, None, False

    def save(self, timeout_s: float = 60.0) -> None:
        """Write an RDB snapshot now and wait until it is on disk, so what the graph holds
        survives a SIGKILL of the server (``--save 1 1`` alone leaves up to a second, or a
        whole re-index's last batches, unsaved). Redis's synchronous SAVE blocks the server
        for the write, which is milliseconds for graphs of this size; a background save
        already running (from ``--save``) may predate our writes, so it is waited out and ours
        follows it."""
        deadline = time.monotonic() + timeout_s
        client = self._client(self._started().socket, timeout_s)
        try:
            while True:
                try:
                    client.save()
                    return
                except redis.ResponseError as exc:
                    if "in progress" not in str(exc) or time.monotonic() > deadline:
                        raise GraphServerError(f"the graph server could not save its snapshot in {self.directory} "
                                               f"({exc}); see {self.directory / LOG_FILE}") from exc
                    time.sleep(0.05)
                except redis.RedisError as exc:
                    raise GraphServerError(f"could not ask the graph server to save its snapshot ({exc})") from exc
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL the server (for fault tests): no save, state file left behind."""
        if self._state is not None and pid_alive(self._state.pid):
            os.kill(self._state.pid, signal.SIGKILL)
            if self._process is not None:
                self._process.wait(timeout=10)

    # --- internals -------------------------------------------------------------------------
    @contextmanager
    def _exclusive(self, required: bool = True):
        """Hold this folder's lifecycle: this object's threads by its lock, other processes (the app
        and a CLI command beside it) by an exclusive flock on LOCK_FILE. ``required=False`` (for
        stop) goes on with the thread lock alone when the folder is gone or unusable."""
        with self._lifecycle:
            try:
                if required:
                    private_dir(self.directory)
                lock = open(self.directory / LOCK_FILE, "a")
            except OSError as exc:
                if required:
                    raise GraphServerError(f"cannot use the graph data folder {self.directory} ({exc})") from exc
                lock = None
            with lock or nullcontext():
                if lock is not None:
                    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
                yield

    def _attach_or_launch(self, socket_path: str | None = None) -> None:
        """With the folder held: adopt the live server the state file names, or launch one."""
        existing = self._read_state()
        if existing and pid_alive(existing.pid) and self._answers(existing.socket):
            # A server whose owner died (the app was killed) is adopted, so it is stopped later.
            owned = not pid_alive(existing.owner_pid) or existing.owner_pid == os.getpid()
            self._process, self._state, self._owned = None, existing, owned
            if owned:
                self._write_state(ServerState(existing.pid, os.getpid(), existing.socket, existing.bolt_port))
            log.info("attached to graph server pid %s at %s", existing.pid, existing.uri)
            return
        if existing and pid_alive(existing.pid):
            # Alive but not answering with our secret: not safe to share the data dir.
            raise GraphServerError(
                f"a graph server (pid {existing.pid}) holds {self.directory} but does not answer on "
                f"{existing.socket}; stop it or remove {self.directory / STATE_FILE}")
        self._launch(socket_path)

    def _started(self) -> ServerState:
        if self._state is None:
            raise GraphServerError("the embedded graph server is not started")
        return self._state

    def _launch(self, socket_path: str | None = None) -> None:
        private_dir(self.directory)
        socket_path = socket_path or socket_path_for(self.directory)
        attempts = 3
        for _ in range(attempts):
            Path(socket_path).unlink(missing_ok=True)  # left by a killed server
            process = subprocess.Popen(
                server_command(self.directory, socket_path, self.bolt_port),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,  # it says "Reading config from stdin" before the log file opens
                stderr=subprocess.DEVNULL,
                # Its own session: Ctrl-C in a terminal reaches the app, which then stops the
                # server with a save, instead of killing both at once.
                start_new_session=True,
            )
            try:
                if self._hand_over(process, socket_path):
                    return
            except BaseException:  # Ctrl-C or SIGTERM meanwhile: no server is left behind unrecorded
                process.kill()
                process.wait(timeout=10)
                raise
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
        raise GraphServerError(
            f"the embedded graph server did not start after {attempts} attempts; "
            f"see {self.directory / LOG_FILE}: {self._log_tail()}")

    def _hand_over(self, process: subprocess.Popen, socket_path: str) -> bool:
        """Give the new server its password, wait until it answers, and record it as ours.
        False when it did not come up (the caller kills it and tries again)."""
        try:
            process.stdin.write(password_config(self.secret))
            process.stdin.close()
        except OSError:
            pass  # it exited at once; the wait below reports that
        state = ServerState(process.pid, os.getpid(), socket_path, self.bolt_port)
        if not self._wait_until_answering(process, state):
            return False
        self._process, self._state, self._owned = process, state, True
        self._write_state(state)
        log.info("graph server pid %s listening on %s", process.pid, state.uri)
        return True

    def _wait_until_answering(self, process: subprocess.Popen, state: ServerState) -> bool:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            if self._answers(state.socket) and (state.bolt_port is None or self._bolt_listening(state.bolt_port)):
                return True
            time.sleep(0.05)
        return False

    def _answers(self, socket_path: str) -> bool:
        """Whether a server on this socket answers PING with our password."""
        if not os.path.exists(socket_path):
            return False
        client = self._client(socket_path, 1.0)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _client(self, socket_path: str, timeout_s: float) -> redis.Redis:
        return redis.Redis(unix_socket_path=socket_path, password=self.secret, socket_timeout=timeout_s,
                           socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0))

    @staticmethod
    def _bolt_listening(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return True
        except OSError:
            return False

    def _read_state(self) -> ServerState | None:
        try:
            data = json.loads((self.directory / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        if isinstance(data, dict) and "socket" not in data and pid_alive(int(data.get("pid", 0) or 0)):
            # Left by a Bolt-era server (pid, redis_port, bolt_port) that is still running.
            raise GraphServerError(
                f"a graph server from an older version of this app (pid {data['pid']}, listening on TCP) still "
                f"holds {self.directory}: stop it (kill {data['pid']}) and start again; the graph data is kept")
        try:
            return ServerState(**data)
        except TypeError:
            return None

    def _write_state(self, state: ServerState) -> None:
        write_text_atomic(self.directory / STATE_FILE, json.dumps(asdict(state)))

    def _log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join((self.directory / LOG_FILE).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
