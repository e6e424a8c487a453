"""Every Cypher statement the project runs, in one place, parameterised.

Values that come from a corpus, a user or an upload always travel as parameters, never
inside the query text. The two servers we speak to differ in a few places; those differences
live in the :class:`Dialect` classes at the bottom and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# --- health -------------------------------------------------------------------------------
PING = "RETURN 1 AS ok"

# --- dialects -----------------------------------------------------------------------------


def _escape_falkordb_string(value: str) -> str:
    # FalkorDB 4.16's Bolt layer pastes parameters into a `CYPHER name='value'` header
    # without escaping (checked here: a value with ' fails, 'a\nb' comes back with a real
    # newline). Escaping backslash and quote makes every string round-trip verbatim.
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _encode_nested(value: Any) -> Any:
    if isinstance(value, str):
        return _escape_falkordb_string(value)
    if isinstance(value, dict):
        return {key: _encode_nested(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_nested(item) for item in value]
    return value


@dataclass(frozen=True)
class Dialect:
    """What differs between the graph servers we support."""

    name: str

    def encode_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return params


@dataclass(frozen=True)
class FalkorDBDialect(Dialect):
    name: str = "falkordb"

    def encode_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return {key: _encode_nested(value) for key, value in params.items()}


@dataclass(frozen=True)
class Neo4jDialect(Dialect):
    name: str = "neo4j"


FALKORDB = FalkorDBDialect()
NEO4J = Neo4jDialect()
