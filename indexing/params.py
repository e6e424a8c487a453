"""What the indexing layer is told, as small typed groups.

``indexing`` never imports the app's settings: the app builds these groups from its own
``Settings`` (whose fields have the same names, so ``assistant.settings`` fills them by name)
and passes them down. Plain data, no imports beyond the standard library, so reading them
costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

BOLT_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")
FALKORDB_SCHEMES = ("unix", "redis", "rediss")


class Secret(Protocol):
    """A password that does not print itself (pydantic's SecretStr)."""

    def get_secret_value(self) -> str: ...


def uri_scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


@dataclass(frozen=True)
class GraphParams:
    """Where the knowledge graph is: ``neo4j_uri`` (unset: the embedded FalkorDB in ``graph_dir``)."""
    neo4j_uri: str | None
    neo4j_server: Literal["neo4j", "falkordb"]
    neo4j_user: str
    neo4j_password: Secret | None
    neo4j_database: str
    graph_dir: Path
    graph_start_timeout_s: float

    @property
    def uses_embedded_graph(self) -> bool:
        return not self.neo4j_uri

    @property
    def graph_over_bolt(self) -> bool:
        """Whether NEO4J_URI is reached with Bolt (the neo4j driver) rather than FalkorDB's protocol."""
        return bool(self.neo4j_uri) and uri_scheme(self.neo4j_uri) in BOLT_SCHEMES


@dataclass(frozen=True)
class IndexingParams:
    """How a corpus becomes an index version in ``domains_dir`` (see indexing/pipeline.py)."""
    domains_dir: Path
    max_file_bytes: int
    embedder: str
    embed_batch_size: int
    near_duplicate_threshold: float
    shingle_words: int
    minhash_permutations: int
    chunk_tokens: int
    chunk_overlap_tokens: int
    keep_index_versions: int
    fusion_fuzzy_min_ratio: float
    fusion_embedding_min_cosine: float
    hnsw_min_vectors: int
    hnsw_m: int
    hnsw_ef_construction: int
    hnsw_ef_search: int
