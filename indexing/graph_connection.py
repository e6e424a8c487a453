"""One connection to the knowledge graph, through the official neo4j driver.

``NEO4J_URI`` set: connect there and start nothing. Unset: start (or attach to) the embedded
FalkorDB server in the data dir. Either way every query goes through :meth:`GraphConnection.query`,
which applies the server's dialect to the parameters, turns driver errors into a
:class:`GraphError` that says what was being done, and restarts a crashed embedded server.

One connection serves one database for its whole life: FalkorDB binds a Bolt connection to the
graph it first used and ignores the database named by later transactions (checked here), so
``settings.neo4j_database`` is read once.
"""

from __future__ import annotations

import logging
from typing import Any

from neo4j import Driver, GraphDatabase
from neo4j.exceptions import AuthError, Neo4jError, ServiceUnavailable, SessionExpired

from assistant.settings import Settings
from indexing import cypher
from indexing.graph_server import EmbeddedGraphServer, GraphServerError

log = logging.getLogger(__name__)

# FalkorDB 4.16 often leaves the next new connection hanging in its Bolt handshake after a
# client closed one (checked here; see graph_server.py). Short connect and acquisition
# timeouts turn that into a retry after a few seconds instead of the driver's default minute;
# one long-lived driver per process keeps closes, and so these waits, rare.
CONNECT_TIMEOUT_S = 2.0
ACQUISITION_TIMEOUT_S = 3.0
MAX_RETRY_TIME_S = 10.0


class GraphError(RuntimeError):
    """A graph operation failed; the message names the operation and the cause."""


class GraphConnection:
    def __init__(self, settings: Settings, server: EmbeddedGraphServer | None = None):
        self.settings = settings
        self.server = server
        self._database = settings.neo4j_database
        falkordb = settings.uses_embedded_graph or settings.neo4j_server == "falkordb"
        self.dialect: cypher.Dialect = cypher.FALKORDB if falkordb else cypher.NEO4J
        self._driver: Driver | None = None

    # --- lifecycle -------------------------------------------------------------------------
    @classmethod
    def open(cls, settings: Settings) -> "GraphConnection":
        """Connect to NEO4J_URI, or start/attach the embedded server in the data dir."""
        server = None
        if settings.uses_embedded_graph:
            server = EmbeddedGraphServer(settings.graph_dir, start_timeout_s=settings.graph_start_timeout_s).start()
        connection = cls(settings, server)
        connection.query(cypher.PING, what="checking the graph connection")
        return connection

    @property
    def database(self) -> str:
        return self._database

    @property
    def uri(self) -> str:
        return self.server.bolt_uri if self.server else str(self.settings.neo4j_uri)

    def close(self, stop_server: bool = True) -> None:
        if self._driver is not None:
            self._driver.close()
            self._driver = None
        if stop_server and self.server is not None:
            self.server.stop()

    def __enter__(self) -> "GraphConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- queries ---------------------------------------------------------------------------
    def query(self, statement: str, params: dict[str, Any] | None = None, *, what: str,
              read: bool = False) -> list[dict[str, Any]]:
        """Run one statement in a managed (retried) transaction; rows come back as dicts.

        ``what`` describes the operation for error messages ("writing entities of law");
        ``read`` lets a cluster route the statement to a reader.
        """
        encoded = self.dialect.encode_params(params or {})
        limit = self.dialect.max_inline_bytes
        if limit is not None and self.dialect.inline_size(statement, encoded) > limit:
            # Refuse here: sent, it would crash the embedded server (see cypher.FalkorDBDialect).
            raise GraphError(f"{what}: the query's parameters are too large for the {self.dialect.name} server "
                             f"({self.dialect.inline_size(statement, encoded)} bytes, limit {limit})")
        if self.server is not None and not self.server.is_running() and not self._recover():
            # A dead embedded server that would not restart: fail now, not after the driver's
            # retries against a closed port; the caller degrades and asks again later.
            raise GraphError(f"{what}: the embedded graph server is down and could not be restarted "
                             f"(see {self.server.directory})")
        for attempt in (1, 2):
            try:
                return self._run(statement, encoded, read)
            except AuthError as exc:
                raise GraphError(f"{what}: the graph server refused our credentials ({exc.message})") from exc
            except (ServiceUnavailable, SessionExpired) as exc:
                if attempt == 1 and self._recover():
                    continue
                raise GraphError(f"{what}: the graph server at {self.uri} is unreachable ({exc})") from exc
            except Neo4jError as exc:
                # FalkorDB reports most failures as a generic UnknownError; say what we were doing.
                raise GraphError(f"{what}: the graph server rejected the query ({exc.code}: {exc.message})") from exc
        raise AssertionError("unreachable")

    def fits(self, statement: str, params: dict[str, Any]) -> bool:
        """Whether one call with these parameters is within the server's size limit."""
        limit = self.dialect.max_inline_bytes
        return limit is None or self.dialect.inline_size(statement, self.dialect.encode_params(params)) <= limit

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
    def _run(self, statement: str, params: dict[str, Any], read: bool) -> list[dict[str, Any]]:
        # A session's transaction functions, not driver.execute_query: execute_query pipelines
        # BEGIN and RUN in one write, which FalkorDB 4.16 answers ~42 ms late every time
        # (bench/graph_write.py: 44 ms vs 0.8 ms for RETURN 1).
        def work(tx) -> list[dict[str, Any]]:
            return [record.data() for record in tx.run(statement, params)]

        with self._get_driver().session(database=self._database) as session:
            return session.execute_read(work) if read else session.execute_write(work)

    def _get_driver(self) -> Driver:
        if self._driver is None:
            self._driver = GraphDatabase.driver(
                self.uri,
                auth=self._auth(),
                connection_timeout=CONNECT_TIMEOUT_S,
                connection_acquisition_timeout=ACQUISITION_TIMEOUT_S,
                # Long-lived pooled connections: closing them is what upsets FalkorDB.
                max_connection_lifetime=24 * 3600,
                max_transaction_retry_time=MAX_RETRY_TIME_S,
            )
        return self._driver

    def _auth(self) -> tuple[str, str] | None:
        if self.server is not None:
            return self.server.auth
        if self.settings.neo4j_password is None:
            return None
        return (self.settings.neo4j_user, self.settings.neo4j_password.get_secret_value())

    def _recover(self) -> bool:
        """Restart a dead embedded server and reconnect. False when there is nothing to do."""
        if self.server is None:
            return False
        try:
            restarted = self.server.ensure_running()
        except Exception as exc:  # a failed restart is reported by the caller's GraphError
            log.error("could not restart the graph server: %s", exc)
            return False
        if restarted and self._driver is not None:
            self._driver.close()
            self._driver = None
        return restarted
