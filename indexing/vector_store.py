"""FAISS passage indexes, one per domain and version, and search over the serving version.

Files in a version folder (see versions.py): ``index.faiss``; ``chunks.jsonl`` (row i of the
index is line i: chunk id, doc id, title, text); ``vectors.npy`` (the normalised embeddings,
reused by the next re-index for unchanged chunks); ``bm25/`` (the lexical index, see lexical.py);
``manifest.json`` with their checksums.

Small domains get an exact ``IndexFlatIP``; from ``hnsw_min_vectors`` chunks on, an
``IndexHNSWFlat`` (inner product on normalised vectors = cosine).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import faiss
import numpy as np

from indexing.chunking import Chunk
from indexing.lexical import LexicalIndex
from indexing.graph_walk import WALK_FILE, WalkGraph, read_walk_file
from indexing.versions import DomainVersions, read_manifest, sha256_file

INDEX_FILE = "index.faiss"
CHUNKS_FILE = "chunks.jsonl"
VECTORS_FILE = "vectors.npy"
DATA_FILES = (INDEX_FILE, CHUNKS_FILE, VECTORS_FILE)


class IndexUnavailable(RuntimeError):
    """A domain has no serving index, or its files fail their checksums; the message says which."""


@dataclass(frozen=True)
class IndexParams:
    hnsw_min_vectors: int = 50_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 64


@dataclass(frozen=True)
class ChunkRow:
    chunk_id: str
    doc_id: str
    title: str
    text: str


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    doc_id: str
    title: str
    text: str
    score: float
    domain: str
    version: str


def build_faiss_index(vectors: np.ndarray, params: IndexParams) -> faiss.Index:
    dimension = vectors.shape[1]
    if len(vectors) >= params.hnsw_min_vectors:
        index = faiss.IndexHNSWFlat(dimension, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params.hnsw_ef_construction
        index.hnsw.efSearch = params.hnsw_ef_search
    else:
        index = faiss.IndexFlatIP(dimension)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def index_type(index: faiss.Index) -> str:
    return "hnsw" if isinstance(index, faiss.IndexHNSWFlat) else "flat"


def write_vector_files(directory: Path, chunks: list[Chunk], vectors: np.ndarray, params: IndexParams) -> dict:
    """Write the FAISS index, id map and vectors; return their checksums and the index type.
    The BM25 files (``lexical.write_lexical_files``) are written beside them by the caller."""
    if len(chunks) != len(vectors):
        raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
    index = build_faiss_index(vectors, params)
    # Through a Python file rather than faiss.write_index(index, path): faiss only prints the
    # error of its final close, so a small index "written" to a full disk raised nothing
    # (checked here) and its truncated file would have been checksummed and served. Python
    # raises OSError (no space, permission denied), which fails the version cleanly.
    with open(directory / INDEX_FILE, "wb") as f:
        faiss.write_index(index, faiss.PyCallbackIOWriter(f.write))
    with open(directory / CHUNKS_FILE, "w", encoding="utf-8") as f:
        for chunk in chunks:
            row = ChunkRow(chunk.id, chunk.doc_id, chunk.title, chunk.text)
            f.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
    np.save(directory / VECTORS_FILE, np.ascontiguousarray(vectors, dtype=np.float32))
    files = {name: sha256_file(directory / name) for name in DATA_FILES}
    return {"index_type": index_type(index), "files": files}


def verify_files(directory: Path, manifest: dict) -> None:
    for name, expected in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file():
            raise IndexUnavailable(f"{path} is missing")
        if sha256_file(path) != expected:
            raise IndexUnavailable(f"{path} is corrupted (checksum mismatch); re-index the domain to repair it")


class DomainIndex:
    """One loaded, immutable version of a domain's passage index."""

    def __init__(self, domain: str, version: str, directory: Path, ef_search: int = 64):
        self.domain, self.version, self.directory = domain, version, directory
        try:
            self.manifest = read_manifest(directory)
        except (OSError, ValueError) as exc:
            raise IndexUnavailable(f"{domain} {version}: manifest unreadable ({exc})") from exc
        verify_files(directory, self.manifest)
        try:
            self.index = faiss.read_index(str(directory / INDEX_FILE))
            with open(directory / CHUNKS_FILE, encoding="utf-8") as f:
                self.rows = [ChunkRow(**json.loads(line)) for line in f]
        except (RuntimeError, OSError, ValueError, TypeError) as exc:
            raise IndexUnavailable(f"{domain} {version}: index files unreadable ({exc})") from exc
        if isinstance(self.index, faiss.IndexHNSWFlat):
            self.index.hnsw.efSearch = ef_search
        if self.index.ntotal != len(self.rows):
            raise IndexUnavailable(f"{domain} {version}: {self.index.ntotal} vectors but {len(self.rows)} chunk rows")

    @cached_property
    def lexical(self) -> LexicalIndex:
        return LexicalIndex.load(self.directory, [row.text for row in self.rows])

    def search_lexical(self, query: str, k: int) -> list[Hit]:
        return [self.hit_at(position, score) for position, score in self.lexical.search(query, k)]

    @cached_property
    def walk_graph(self) -> WalkGraph | None:
        """The version's entity-chunk adjacency for the graph walk (checked with the other files
        at load); None for a version built without a graph."""
        if WALK_FILE not in self.manifest.get("files", {}):
            return None
        try:
            walk_graph = read_walk_file(self.directory)
        except (OSError, ValueError, KeyError) as exc:
            raise IndexUnavailable(f"{self.domain} {self.version}: walk graph unreadable ({exc})") from exc
        if walk_graph.chunk_ids != [row.chunk_id for row in self.rows]:
            raise IndexUnavailable(f"{self.domain} {self.version}: walk graph and chunk rows disagree")
        return walk_graph

    def position_of(self, chunk_id: str) -> int | None:
        return self._positions.get(chunk_id)

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {row.chunk_id: i for i, row in enumerate(self.rows)}

    def document_positions(self, doc_id: str) -> list[int]:
        """The positions of a document's chunks, in the document's order (a document's chunks are
        written together, in order)."""
        return self._document_positions.get(doc_id, [])

    @cached_property
    def _document_positions(self) -> dict[str, list[int]]:
        positions: dict[str, list[int]] = {}
        for i, row in enumerate(self.rows):
            positions.setdefault(row.doc_id, []).append(i)
        return positions

    def hit_at(self, position: int, score: float) -> Hit:
        row = self.rows[position]
        return Hit(row.chunk_id, row.doc_id, row.title, row.text, score, self.domain, self.version)

    def vectors(self) -> np.ndarray:
        return np.load(self.directory / VECTORS_FILE)

    def search(self, query_vec: np.ndarray, k: int) -> list[Hit]:
        if self.index.ntotal == 0 or k <= 0:
            return []
        query = np.ascontiguousarray(query_vec, dtype=np.float32).reshape(1, -1)
        scores, positions = self.index.search(query, min(k, self.index.ntotal))
        hits = []
        for score, position in zip(scores[0], positions[0]):
            if position < 0:
                continue
            hits.append(self.hit_at(int(position), float(score)))
        return hits


class VectorStore:
    """Search over every domain's serving version; follows re-index switches automatically."""

    def __init__(self, domains_dir: Path, ef_search: int = 64):
        self.domains_dir = Path(domains_dir)
        self.ef_search = ef_search
        self._loaded: dict[str, DomainIndex] = {}
        self._lock = threading.Lock()

    def get(self, domain: str) -> DomainIndex:
        """The serving version, loaded once and reloaded when CURRENT names a new one."""
        versions = DomainVersions(self.domains_dir, domain)
        for attempt in (1, 2):
            version = versions.current()
            if version is None:
                raise IndexUnavailable(f"domain {domain!r} has no index yet")
            loaded = self._loaded.get(domain)
            if loaded is not None and loaded.version == version:
                return loaded
            try:
                return self._load(domain, version, versions)
            except IndexUnavailable:
                # Two switches in quick succession can prune the version we just read from
                # CURRENT; read CURRENT again once before calling the domain broken.
                if attempt == 2 or versions.current() == version:
                    raise
        raise AssertionError("unreachable")

    def _load(self, domain: str, version: str, versions: DomainVersions) -> DomainIndex:
        with self._lock:
            loaded = self._loaded.get(domain)
            if loaded is None or loaded.version != version:
                loaded = DomainIndex(domain, version, versions.path(version), self.ef_search)
                self._loaded[domain] = loaded
            return loaded

    def search(self, domain: str, query_vec: np.ndarray, k: int = 5) -> list[Hit]:
        return self.get(domain).search(query_vec, k)
