"""One connection to the knowledge graph, over the transport the settings call for.

``NEO4J_URI`` unset: start (or attach to) the embedded FalkorDB server in the data dir and speak
its Redis protocol over its private Unix socket. ``NEO4J_URI`` set: ``bolt://`` / ``neo4j://``
reach a Neo4j 5 server (or a FalkorDB run with Bolt) through the neo4j driver, ``unix://`` /
``redis://`` a FalkorDB run elsewhere through its own protocol (indexing/graph_transport.py).
Either way every query goes through :meth:`GraphConnection.query`, which turns transport errors
into a :class:`GraphError` that says what was being done, and restarts a crashed embedded server.

A broken connection leaves a statement's outcome unknown: the server may have run it and lost
only the reply. So a statement is sent again only when running it twice leaves the graph as
running it once (reads, and the statements ``cypher.is_idempotent`` lists: the version writes
MERGE on their keys); any other write fails with a :class:`GraphError` that says it may or may
not have happened.

One connection serves one database (graph name) for its whole life: FalkorDB binds a Bolt
connection to the graph it first used and ignores the database named by later transactions
(checked here), so ``neo4j_database`` is read once.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from indexing import cypher
from indexing.graph_server import EmbeddedGraphServer, GraphServerError
from indexing.graph_transport import (BoltTransport, FalkorDBTransport, GraphTransport, TransportAuthError,
                                      TransportQueryError, TransportUnavailable)
from indexing.params import GraphParams

log = logging.getLogger(__name__)


class GraphError(RuntimeError):
    """A graph operation failed; the message names the operation and the cause."""


class GraphConnection:
    def __init__(self, params: GraphParams, server: EmbeddedGraphServer | None = None):
        self.params = params
        self.server = server
        self._database = params.neo4j_database
        falkordb = server is not None or not params.graph_over_bolt or params.neo4j_server == "falkordb"
        self.dialect: cypher.Dialect = cypher.FALKORDB if falkordb else cypher.NEO4J
        # The transport and the server generation (its restart count) it was made for, swapped
        # as one reference so no thread sees one without the other.
        self._current: tuple[GraphTransport, int] | None = None
        self._transport_lock = threading.Lock()  # guards creating and replacing it, never a query

    # --- lifecycle -------------------------------------------------------------------------
    @classmethod
    def open(cls, params: GraphParams) -> "GraphConnection":
        """Connect to NEO4J_URI, or start/attach the embedded server in the data dir."""
        server = None
        if params.uses_embedded_graph:
            server = EmbeddedGraphServer(params.graph_dir, start_timeout_s=params.graph_start_timeout_s).start()
        connection = cls(params, server)
        try:
            connection.query(cypher.PING, what="checking the graph connection")
        except BaseException:  # a failed check, Ctrl-C or SIGTERM: stop the server this call started
            connection.close()
            raise
        return connection

    @property
    def database(self) -> str:
        return self._database

    @property
    def uri(self) -> str:
        """Where the graph is, without any password a URI may carry."""
        if self.server is not None:
            return self.server.uri
        parts = urlsplit(str(self.params.neo4j_uri))
        host = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit((parts.scheme, host, parts.path, "", ""))

    @property
    def transport_name(self) -> str:
        return self._get_current()[0].name

    def close(self, stop_server: bool = True) -> None:
        with self._transport_lock:
            current, self._current = self._current, None
        if current is not None:
            current[0].close()
        if stop_server and self.server is not None:
            self.server.stop()

    def __enter__(self) -> "GraphConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- queries ---------------------------------------------------------------------------
    def query(self, statement: str, params: dict[str, Any] | None = None, *, what: str,
              read: bool = False, idempotent: bool | None = None) -> list[dict[str, Any]]:
        """Run one statement; rows come back as dicts.

        ``what`` describes the operation for error messages ("writing entities of law");
        ``read`` marks the statement read-only (``GRAPH.RO_QUERY``, or a cluster's reader).
        ``idempotent`` says whether running it twice is harmless, so that it may be sent again
        after a broken connection; left out, reads and ``cypher.is_idempotent`` statements are.
        """
        params = params or {}
        if self.server is not None and not self.server.is_running() and not self._restart_server():
            # A dead embedded server that would not restart: fail now; the caller degrades and
            # asks again later.
            raise GraphError(f"{what}: the embedded graph server is down and could not be restarted "
                             f"(see {self.server.directory})")
        retry_safe = read or (cypher.is_idempotent(statement) if idempotent is None else idempotent)
        for attempt in (1, 2):
            transport, generation = self._get_current()
            try:
                return transport.run(statement, params, read=read, idempotent=retry_safe)
            except TransportAuthError as exc:
                raise GraphError(f"{what}: the graph server refused our credentials ({exc})") from exc
            except TransportUnavailable as exc:
                restarted = self._recover(generation)
                if not retry_safe:
                    raise GraphError(f"{what}: the connection to the graph server at {self.uri} broke before it "
                                     f"answered, so this write may or may not have happened ({exc})") from exc
                # Once more when the embedded server was restarted, or when the transport does not
                # retry by itself (the neo4j driver already did, for seconds).
                if attempt == 1 and (restarted or not transport.retries_itself):
                    continue
                raise GraphError(f"{what}: the graph server at {self.uri} is unreachable ({exc})") from exc
            except TransportQueryError as exc:
                raise GraphError(f"{what}: the graph server rejected the query ({exc})") from exc
        raise AssertionError("unreachable")

    def fits(self, statement: str, params: dict[str, Any]) -> bool:
        """Whether one call with these parameters is within what the transport carries."""
        return self._get_current()[0].fits(statement, params)

    @property
    def server_restarts(self) -> int:
        """How often the embedded server was restarted after dying; a change during a write
        means writes made before the crash may be lost (they were after its last snapshot)."""
        return self.server.restarts if self.server is not None else 0

    def persist(self, what: str) -> None:
        """Make everything written so far survive a crash of the embedded server: an RDB
        snapshot now. (A Neo4j server makes each committed transaction durable itself, and
        a separately run FalkorDB follows its own save policy.)"""
        if self.server is None:
            return
        try:
            self.server.save()
        except GraphServerError as exc:
            if not self.server.is_running():
                raise GraphError(f"{what}: {exc}") from exc
            # A live server that is slow to snapshot (a loaded machine) still holds the writes and
            # saves them within a second by its own --save policy: failing the re-index for that
            # would be worse than the one-second window it leaves.
            log.warning("%s: %s; the server's own save policy will write it shortly", what, exc)

    def ping(self) -> bool:
        try:
            self.query(cypher.PING, what="ping", read=True)
            return True
        except GraphError:
            return False

    # --- internals -------------------------------------------------------------------------
    def _get_current(self) -> tuple[GraphTransport, int]:
        """The transport for the server as it runs now, made anew after a restart (whoever did
        it: a request thread, or launch.py's once-a-second check)."""
        current = self._current
        if current is not None and current[1] == self.server_restarts:
            return current
        with self._transport_lock:
            if self._current is None or self._current[1] != self.server_restarts:
                # The stale one is dropped, not closed: a thread may still be reading a reply through
                # it (its pool reconnects to the same socket); its connections close when it is freed.
                self._current = (self._new_transport(), self.server_restarts)
            return self._current

    def _new_transport(self) -> GraphTransport:
        params = self.params
        if self.server is not None:
            return FalkorDBTransport(self.server.uri, self.server.secret, self._database)
        password = params.neo4j_password.get_secret_value() if params.neo4j_password else None
        if not params.graph_over_bolt:
            return FalkorDBTransport(str(params.neo4j_uri), password, self._database)
        auth = None if password is None else (params.neo4j_user, password)
        return BoltTransport(str(params.neo4j_uri), auth, self._database,
                             falkordb=self.dialect is cypher.FALKORDB)

    def _restart_server(self) -> bool:
        """Restart a dead embedded server (one restart, however many threads ask at once).
        Whether it runs now."""
        try:
            self.server.ensure_running()
        except Exception as exc:  # a failed restart is reported by the caller's GraphError
            log.error("could not restart the graph server: %s", exc)
            return False
        return True

    def _recover(self, generation: int) -> bool:
        """After a broken connection: restart the embedded server if it died. True when it runs
        now as a newer generation than the failed transport's (restarted here or elsewhere)."""
        if self.server is None:
            return False
        return self._restart_server() and self.server_restarts != generation
