"""Index a corpus source: read → clean → dedup → chunk → diff → embed → FAISS → switch.

``index_source`` is the one entry point (CLI, launch.py, later the admin tab). Per domain it
compares the new chunks with the serving version's manifest, embeds only chunks it has not seen
before, writes a complete new version beside the old one and switches to it atomically. A dry
run stops after the diff and changes nothing. A domain whose documents did not change keeps its
version.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from assistant.settings import Settings
from indexing.chunking import Chunk, chunk_document
from indexing.clean import Duplicate, clean_documents, content_hash
from indexing.corpus import SUPPORTED_SUFFIXES, Document, Skipped, read_corpus
from indexing.embedding import Embedder, get_embedder
from indexing.vector_store import DomainIndex, IndexParams, IndexUnavailable, verify_files, write_vector_files
from indexing.versions import DomainVersions, read_manifest, write_manifest

MANIFEST_SCHEMA = 1


@dataclass
class DomainReport:
    domain: str
    dry_run: bool = False
    previous_version: str | None = None
    version: str | None = None  # serving after this run
    switched: bool = False
    documents_read: int = 0
    documents_indexed: int = 0
    empty_documents: list[str] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    documents_added: int = 0
    documents_changed: int = 0
    documents_removed: int = 0
    documents_unchanged: int = 0
    chunks_added: int = 0
    chunks_changed: int = 0
    chunks_removed: int = 0
    chunks_unchanged: int = 0
    chunks_total: int = 0
    chunks_embedded: int = 0
    index_type: str | None = None
    error: str | None = None

    @property
    def exact_duplicates(self) -> int:
        return sum(d.kind == "exact" for d in self.duplicates)

    @property
    def near_duplicates(self) -> int:
        return sum(d.kind == "near" for d in self.duplicates)

    @property
    def has_changes(self) -> bool:
        return bool(self.documents_added or self.documents_changed or self.documents_removed)


@dataclass
class IndexReport:
    source: str
    dry_run: bool
    files_seen: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    domains: list[DomainReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(d.error is None for d in self.domains)

    def format(self) -> str:
        lines = [f"{'Dry run' if self.dry_run else 'Indexed'} {self.source}: {self.files_seen} files seen, "
                 f"{len(self.skipped)} skipped, {self.seconds:.1f}s"]
        for s in self.skipped:
            lines.append(f"  skipped {s.source}: {s.reason}")
        for d in self.domains:
            lines.append(f"[{d.domain}] documents: {d.documents_read} read, {d.documents_indexed} kept, "
                         f"{d.exact_duplicates} exact and {d.near_duplicates} near duplicates dropped, "
                         f"{len(d.empty_documents)} empty")
            for dup in d.duplicates:
                lines.append(f"  duplicate ({dup.kind}, {dup.similarity:.2f}): {dup.doc_id} = {dup.duplicate_of}")
            lines.append(f"  documents: +{d.documents_added} added, ~{d.documents_changed} changed, "
                         f"-{d.documents_removed} removed, {d.documents_unchanged} unchanged")
            lines.append(f"  chunks: +{d.chunks_added} added, ~{d.chunks_changed} changed, -{d.chunks_removed} removed, "
                         f"{d.chunks_unchanged} unchanged; {d.chunks_total} in index, {d.chunks_embedded} embedded now")
            if d.error:
                lines.append(f"  ERROR: {d.error}; version {d.previous_version or '(none)'} keeps serving")
            elif d.dry_run:
                lines.append(f"  dry run: nothing written; {d.previous_version or 'no version'} keeps serving")
            elif d.switched:
                lines.append(f"  switched {d.previous_version or '(none)'} -> {d.version} ({d.index_type} index)")
            else:
                lines.append(f"  no changes; {d.version} keeps serving")
        return "\n".join(lines)


def source_fingerprint(source: Path) -> str:
    """A hash of every corpus file's relative path and bytes: equal means nothing to re-index."""
    source = Path(source)
    files = [source] if source.is_file() else sorted(
        p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() if source.is_file() else path.relative_to(source).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def index_source(settings: Settings, source: Path, domain: str | None = None, *, dry_run: bool = False,
                 progress: bool = True, embedder: Embedder | None = None) -> IndexReport:
    started = time.perf_counter()
    source = Path(source).resolve()
    read = read_corpus(source, domain, settings.max_file_bytes)
    report = IndexReport(str(source), dry_run, read.files_seen, list(read.skipped))
    by_domain: dict[str, list[Document]] = {}
    for document in read.documents:
        by_domain.setdefault(document.domain, []).append(document)
    if domain and not by_domain:
        report.domains.append(DomainReport(domain, dry_run, error="no readable documents in the source"))
    embedder = embedder or get_embedder(settings.embedder, settings.embed_batch_size)
    fingerprint = source_fingerprint(source)
    for name, documents in by_domain.items():
        report.domains.append(_index_domain(settings, name, documents, report.skipped, embedder,
                                            dry_run=dry_run, progress=progress,
                                            source={"path": str(source), "fingerprint": fingerprint}))
    report.seconds = time.perf_counter() - started
    return report


def _index_domain(settings: Settings, domain: str, documents: list[Document], skipped: list[Skipped],
                  embedder: Embedder, *, dry_run: bool, progress: bool, source: dict) -> DomainReport:
    report = DomainReport(domain, dry_run, documents_read=len(documents))
    documents = _drop_repeated_ids(documents, skipped)
    cleaned = clean_documents(documents, near_duplicate_threshold=settings.near_duplicate_threshold,
                              words_per_shingle=settings.shingle_words, permutations=settings.minhash_permutations)
    report.empty_documents, report.duplicates = cleaned.empty, cleaned.duplicates
    report.documents_indexed = len(cleaned.documents)

    chunks: list[Chunk] = []
    for document in tqdm(cleaned.documents, desc=f"chunk {domain}", unit="doc", disable=not progress, leave=False):
        chunks.extend(chunk_document(document, embedder.count_tokens, settings.chunk_tokens, settings.chunk_overlap_tokens))

    versions = DomainVersions(settings.domains_dir, domain)
    previous = _serving_manifest(versions)
    report.previous_version = report.version = previous.get("version") if previous else None
    new_docs = _document_entries(cleaned.documents, chunks)
    _diff(report, previous.get("documents", {}) if previous else {}, new_docs)
    report.chunks_total = len(chunks)
    # A serving version with other settings, or damaged files, is rebuilt from scratch.
    rebuild = previous is not None and (
        _index_settings(settings, embedder) != previous.get("index_settings") or not _files_intact(versions, previous))
    if dry_run:
        return report
    if not chunks:
        report.error = "no text left to index after cleaning"
        return report
    if previous is not None and not report.has_changes and not rebuild:
        report.index_type = previous.get("index_type")
        return report

    with versions.writer_lock():
        versions.cleanup(settings.keep_index_versions)  # leftovers of a crashed earlier run
        vectors = _embed_with_reuse(chunks, versions, previous, embedder, rebuild, report, progress)
        build_dir = versions.new_build_dir()
        vector_meta = write_vector_files(build_dir, chunks, vectors, _index_params(settings))
        version = versions.next_version()
        manifest = {
            "schema": MANIFEST_SCHEMA,
            "domain": domain,
            "version": version,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "index_settings": _index_settings(settings, embedder),
            "dimension": embedder.dimension,
            "doc_count": len(new_docs),
            "chunk_count": len(chunks),
            "source": source,
            "documents": new_docs,
            **vector_meta,
        }
        write_manifest(build_dir, manifest)
        versions.commit(build_dir, version)
        versions.switch(version)
        versions.cleanup(settings.keep_index_versions)
    report.version, report.switched, report.index_type = version, True, vector_meta["index_type"]
    return report


def _drop_repeated_ids(documents: list[Document], skipped: list[Skipped]) -> list[Document]:
    seen, kept = set(), []
    for document in documents:
        if document.id in seen:
            skipped.append(Skipped(document.source, f"document id {document.id!r} appears more than once; first kept"))
            continue
        seen.add(document.id)
        kept.append(document)
    return kept


def _serving_manifest(versions: DomainVersions) -> dict | None:
    path = versions.current_path()
    if path is None:
        return None
    try:
        return read_manifest(path)
    except (OSError, ValueError):
        return None  # unreadable: rebuild everything, which also repairs the domain


def _document_entries(documents: list[Document], chunks: list[Chunk]) -> dict[str, dict]:
    chunk_ids: dict[str, list[str]] = {}
    for chunk in chunks:
        chunk_ids.setdefault(chunk.doc_id, []).append(chunk.id)
    return {
        d.id: {"title": d.title, "source": d.source, "content_hash": content_hash(d.text), "chunks": chunk_ids.get(d.id, [])}
        for d in documents
    }


def _diff(report: DomainReport, old_docs: dict[str, dict], new_docs: dict[str, dict]) -> None:
    """Document and chunk deltas. Within a changed document, a new chunk that takes the place
    of a vanished one counts as changed; the surplus on either side as added or removed."""
    for doc_id, new in new_docs.items():
        old = old_docs.get(doc_id)
        if old is None:
            report.documents_added += 1
            report.chunks_added += len(new["chunks"])
            continue
        old_ids, new_ids = set(old["chunks"]), set(new["chunks"])
        report.chunks_unchanged += len(old_ids & new_ids)
        if old["content_hash"] == new["content_hash"]:
            report.documents_unchanged += 1
            continue
        report.documents_changed += 1
        gone, fresh = len(old_ids - new_ids), len(new_ids - old_ids)
        report.chunks_changed += min(gone, fresh)
        report.chunks_added += max(fresh - gone, 0)
        report.chunks_removed += max(gone - fresh, 0)
    for doc_id, old in old_docs.items():
        if doc_id not in new_docs:
            report.documents_removed += 1
            report.chunks_removed += len(old["chunks"])


def _files_intact(versions: DomainVersions, manifest: dict) -> bool:
    try:
        verify_files(versions.path(manifest["version"]), manifest)
        return True
    except (IndexUnavailable, KeyError):
        return False


def _embed_with_reuse(chunks: list[Chunk], versions: DomainVersions, previous: dict | None, embedder: Embedder,
                      rebuild: bool, report: DomainReport, progress: bool) -> np.ndarray:
    reusable: dict[str, np.ndarray] = {}
    if previous is not None and not rebuild:
        try:
            old = DomainIndex(versions.domain, previous["version"], versions.path(previous["version"]))
            old_vectors = old.vectors()
            reusable = {row.chunk_id: old_vectors[i] for i, row in enumerate(old.rows)}
        except (IndexUnavailable, OSError, ValueError):
            reusable = {}  # a damaged previous version: embed everything again
    vectors = np.zeros((len(chunks), embedder.dimension), dtype=np.float32)
    todo = [i for i, chunk in enumerate(chunks) if chunk.id not in reusable]
    for i, chunk in enumerate(chunks):
        if chunk.id in reusable:
            vectors[i] = reusable[chunk.id]
    batch = embedder.batch_size
    with tqdm(total=len(todo), desc=f"embed {versions.domain}", unit="chunk", disable=not progress, leave=False) as bar:
        for start in range(0, len(todo), batch):
            positions = todo[start:start + batch]
            vectors[positions] = embedder.encode([chunks[i].text for i in positions])
            bar.update(len(positions))
    report.chunks_embedded = len(todo)
    return vectors


def _index_settings(settings: Settings, embedder: Embedder) -> dict:
    return {"embedder": embedder.name, "chunk_tokens": settings.chunk_tokens,
            "chunk_overlap_tokens": settings.chunk_overlap_tokens}


def _index_params(settings: Settings) -> IndexParams:
    return IndexParams(settings.hnsw_min_vectors, settings.hnsw_m, settings.hnsw_ef_construction, settings.hnsw_ef_search)
