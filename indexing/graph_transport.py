"""How a Cypher statement reaches a graph server: run (statement, parameters) -> rows.

Two transports, one contract (:class:`GraphTransport`):

* :class:`FalkorDBTransport` speaks FalkorDB's own Redis protocol (``GRAPH.QUERY``) through the
  official ``falkordb`` client: over a Unix socket for the embedded server (no network port at
  all), or ``redis://`` for a FalkorDB run elsewhere. The client writes parameters into a
  ``CYPHER name=value ...`` header with its own escaping, and the header has no size limit
  (checked here: 500-row UNWINDs and a 200 KB string round-trip).
* :class:`BoltTransport` speaks Bolt through the official ``neo4j`` driver: to a Neo4j 5 server,
  or to a FalkorDB that someone runs with its Bolt listener. FalkorDB 4.16's Bolt layer pastes
  parameters into the same header *without* escaping and into a ~4 KB buffer that aborts the
  whole server when overrun, so to a FalkorDB this transport escapes strings itself and refuses
  calls that would not fit (:func:`inline_size`).

Transports raise the three errors below and know nothing about what a statement is for;
:class:`indexing.graph_connection.GraphConnection` turns them into messages that do.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Protocol

import redis
from falkordb import FalkorDB
from neo4j import Driver, GraphDatabase
from neo4j.exceptions import AuthError, Neo4jError, ServiceUnavailable, SessionExpired
from redis.backoff import NoBackoff
from redis.retry import Retry

# A statement that has not answered in this long is reported as failed, not waited on forever.
QUERY_TIMEOUT_S = 120.0
CONNECT_TIMEOUT_S = 2.0
# FalkorDB 4.16 often leaves the next new Bolt connection hanging in its handshake after a client
# closed one (checked here). Short connect and acquisition timeouts turn that into a retry after a
# few seconds instead of the driver's default minute; one long-lived driver keeps closes rare.
ACQUISITION_TIMEOUT_S = 3.0
MAX_RETRY_TIME_S = 10.0


class TransportError(RuntimeError):
    """Base of what a transport raises; the message is the server's or the client's own."""


class TransportUnavailable(TransportError):
    """The server could not be reached, or the connection broke during the call."""


class TransportAuthError(TransportError):
    """The server refused our credentials."""


class TransportQueryError(TransportError):
    """The server received the statement and rejected it (syntax, types, a timeout)."""


class GraphTransport(Protocol):
    name: str  # how benchmarks and messages call it: "FalkorDB socket", "Bolt"
    retries_itself: bool  # whether it already retried a broken connection before raising

    def run(self, statement: str, params: dict[str, Any], *, read: bool, idempotent: bool) -> list[dict[str, Any]]:
        """Run one statement; ``read`` marks it read-only (a replica may serve it); a statement
        that is not ``idempotent`` must not be sent twice by the transport itself."""

    def fits(self, statement: str, params: dict[str, Any]) -> bool:
        """Whether one call with these parameters is within what the server takes."""

    def close(self) -> None: ...


# --- FalkorDB's Redis protocol ---------------------------------------------------------------

class FalkorDBTransport:
    """``GRAPH.QUERY`` / ``GRAPH.RO_QUERY`` on one named graph, through a pool of Redis connections
    (thread-safe: each call checks a connection out of the pool)."""

    def __init__(self, url: str, password: str | None, graph: str, *, timeout_s: float = QUERY_TIMEOUT_S):
        self.name = "FalkorDB socket" if url.startswith("unix://") else "FalkorDB Redis protocol"
        self.retries_itself = False
        # No client-side retries: a write whose reply was lost must not run twice. The caller
        # retries once after a broken connection, when it knows whether the server restarted.
        pool = redis.ConnectionPool.from_url(
            url, password=password, socket_timeout=timeout_s, socket_connect_timeout=CONNECT_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0), decode_responses=True, protocol=2)  # RESP2, as the client's own default
        self._pool = pool
        self._graph_name = graph
        self._graph = None

    def run(self, statement: str, params: dict[str, Any], *, read: bool, idempotent: bool) -> list[dict[str, Any]]:
        try:
            graph = self._graph or self._connect()
            result = graph.ro_query(statement, params) if read else graph.query(statement, params)
        except redis.AuthenticationError as exc:
            raise TransportAuthError(str(exc)) from exc
        except redis.TimeoutError as exc:
            raise TransportQueryError(f"no answer within {QUERY_TIMEOUT_S:.0f} s ({exc})") from exc
        except (redis.ConnectionError, OSError) as exc:
            raise TransportUnavailable(str(exc)) from exc
        except redis.ResponseError as exc:
            raise TransportQueryError(str(exc)) from exc
        names = [column[1] for column in result.header]
        return [dict(zip(names, row)) for row in result.result_set]

    def fits(self, statement: str, params: dict[str, Any]) -> bool:
        return True  # the Redis protocol carries a query of any size

    def close(self) -> None:
        self._pool.disconnect()

    def _connect(self):
        # The client's constructor asks the server whether it is a cluster or a sentinel, so it
        # needs a live server: made on first use, not at construction.
        self._graph = FalkorDB(connection_pool=self._pool).select_graph(self._graph_name)
        return self._graph


# --- Bolt --------------------------------------------------------------------------------------

class BoltTransport:
    """The official neo4j driver, one long-lived driver and its connection pool."""

    def __init__(self, uri: str, auth: tuple[str, str] | None, database: str, *, falkordb: bool):
        self.name = "Bolt"
        self.retries_itself = True  # managed transactions retry for up to MAX_RETRY_TIME_S
        self._uri = uri
        self._auth = auth
        self._database = database
        # FalkorDB behind Bolt: escape strings, and refuse calls its inline buffer cannot take.
        self._falkordb = falkordb
        self._driver: Driver | None = None

    def run(self, statement: str, params: dict[str, Any], *, read: bool, idempotent: bool) -> list[dict[str, Any]]:
        encoded = escape_for_falkordb_bolt(params) if self._falkordb else params
        if not self._fits_encoded(statement, encoded):
            raise TransportQueryError(
                f"the query's parameters are too large for a FalkorDB server over Bolt "
                f"({inline_size(statement, encoded)} bytes, limit {FALKORDB_BOLT_MAX_INLINE_BYTES})")

        # A session's transaction functions, not driver.execute_query: execute_query pipelines
        # BEGIN and RUN in one write, which FalkorDB 4.16 answers ~42 ms late every time.
        def work(tx) -> list[dict[str, Any]]:
            return [record.data() for record in tx.run(statement, encoded)]

        if not read and not idempotent and self._falkordb:
            # The driver runs a transaction function again after a broken connection. A Neo4j rolls
            # back a transaction that did not commit, and the driver never retries one whose commit
            # was under way (IncompleteCommit), so that is safe for any statement; a FalkorDB runs
            # each statement at once, outside any transaction, so there a write that is not
            # idempotent may be retried only until it has been handed to the server.
            work = _at_most_once(work)
        try:
            with self._get_driver().session(database=self._database) as session:
                return session.execute_read(work) if read else session.execute_write(work)
        except _SentAlready as exc:
            raise TransportUnavailable("the connection broke after the statement was sent; it was not sent again") from exc
        except AuthError as exc:
            raise TransportAuthError(exc.message or str(exc)) from exc
        except (ServiceUnavailable, SessionExpired) as exc:
            raise TransportUnavailable(str(exc)) from exc
        except Neo4jError as exc:
            # FalkorDB reports most failures as a generic UnknownError.
            raise TransportQueryError(f"{exc.code}: {exc.message}") from exc

    def fits(self, statement: str, params: dict[str, Any]) -> bool:
        return self._fits_encoded(statement, escape_for_falkordb_bolt(params) if self._falkordb else params)

    def close(self) -> None:
        if self._driver is not None:
            self._driver.close()
            self._driver = None

    def _fits_encoded(self, statement: str, encoded: dict[str, Any]) -> bool:
        return not self._falkordb or inline_size(statement, encoded) <= FALKORDB_BOLT_MAX_INLINE_BYTES

    def _get_driver(self) -> Driver:
        if self._driver is None:
            self._driver = GraphDatabase.driver(
                self._uri,
                auth=self._auth,
                connection_timeout=CONNECT_TIMEOUT_S,
                connection_acquisition_timeout=ACQUISITION_TIMEOUT_S,
                # Long-lived pooled connections: closing them is what upsets FalkorDB.
                max_connection_lifetime=24 * 3600,
                max_transaction_retry_time=MAX_RETRY_TIME_S,
            )
        return self._driver


class _SentAlready(Exception):
    """A transaction function was called again after it had sent its statement (not a driver
    error, so the driver stops retrying and raises it)."""


def _at_most_once(work: Callable[[Any], list[dict[str, Any]]]) -> Callable[[Any], list[dict[str, Any]]]:
    """``work`` for the driver's retry loop: retried freely while connecting (nothing sent yet),
    never once it has handed its statement to a server."""
    sent = False

    def once(tx) -> list[dict[str, Any]]:
        nonlocal sent
        if sent:
            raise _SentAlready()
        sent = True
        return work(tx)

    return once


# FalkorDB 4.16 over Bolt copies "CYPHER <params> <query>" into a fixed buffer: at about 4 KB the
# whole server aborts (checked here: a 4,072-character string parameter is the largest that
# survives, and a 3,000-character one fails beside a long query). Calls are kept below this.
FALKORDB_BOLT_MAX_INLINE_BYTES = 3800


def escape_for_falkordb_bolt(params: dict[str, Any]) -> dict[str, Any]:
    """FalkorDB 4.16's Bolt layer pastes parameters into a ``CYPHER name='value'`` header without
    escaping (checked here: a value with ' fails, 'a\\nb' comes back with a real newline).
    Escaping backslash and quote makes every string round-trip verbatim."""
    return {key: _escape_nested(value) for key, value in params.items()}


def _escape_nested(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("'", "\\'")
    if isinstance(value, dict):
        return {key: _escape_nested(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_escape_nested(item) for item in value]
    return value


def inline_size(statement: str, encoded_params: dict[str, Any]) -> int:
    """An upper estimate of the bytes FalkorDB's Bolt layer inlines for this call: the query text
    plus each parameter written out as it does (floats in %f notation, strings quoted).
    tests/test_graph_transport.py fuzzes it against a real server."""
    return len(statement.encode("utf-8")) + sum(len(name) + 2 + _inline_len(value)
                                               for name, value in encoded_params.items())


def _inline_len(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8")) + 2
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return len(str(value))
    if isinstance(value, float):
        return len(f"{value:f}") + 2  # FalkorDB writes floats with %f: 1e300 takes 300 digits
    if isinstance(value, dict):  # {k: v, k: v}
        return 2 + sum(len(str(k)) + 4 + _inline_len(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return 2 + sum(_inline_len(v) + 2 for v in value)
    return len(json.dumps(value, default=str)) + 8
