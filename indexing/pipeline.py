"""Index a corpus source: read → clean → dedup → chunk → diff → embed → FAISS (+ extract →
fuse → graph) → switch.

``index_source`` is the one entry point (CLI, launch.py, later the admin tab). Per domain it
compares the new chunks with the serving version's manifest, embeds only chunks it has not seen
before, writes a complete new version beside the old one and switches to it atomically. A dry
run stops after the diff and changes nothing. A domain whose documents did not change keeps its
version.
"""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from indexing.chunking import Chunk, chunk_document
from indexing.clean import clean_documents
from indexing.cooccurrence import cooccurrence_relations
from indexing.corpus import CURATED_TRIPLES_FILES, SUPPORTED_SUFFIXES, Document, Skipped, read_corpus
from indexing.document_diff import count_changes, document_entries
from indexing.embedding import Embedder, get_embedder
from indexing.entity_resolution import FusionParams, fuse
from indexing.extraction import CuratedTriplesError, Extractor, read_curated_triples
from indexing.graph_connection import GraphError
from indexing.graph_store import GraphStore
from indexing.graph_walk import WALK_FILE, build_walk_graph, write_walk_file
from indexing.index_report import DomainReport, IndexReport
from indexing.lexical import write_lexical_files
from indexing.params import IndexingParams
from indexing.spacy_extractor import SpacyExtractor
from indexing.stage_times import StageTimes
from indexing.vector_store import DomainIndex, IndexParams, IndexUnavailable, verify_files, write_vector_files
from indexing.version_reuse import (EXTRACTIONS_FILE, GRAPH_SUMMARY_FILE, NameEncoder, diff_graph, extract_with_reuse,
                                    load_graph_summary, save_extractions, save_graph_summary)
from indexing.versions import CURRENT_FILE, DomainVersions, IndexBusy, read_manifest, write_manifest

MANIFEST_SCHEMA = 1
log = logging.getLogger(__name__)


def source_fingerprint(source: Path) -> str:
    """A hash of every corpus file's relative path and bytes: equal means nothing to re-index."""
    source = Path(source)
    files = [source] if source.is_file() else sorted(
        p for p in source.rglob("*")
        if p.is_file() and (p.suffix.lower() in SUPPORTED_SUFFIXES or p.name.lower() in CURATED_TRIPLES_FILES)
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() if source.is_file() else path.relative_to(source).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def index_source(params: IndexingParams, source: Path, domain: str | None = None, *, dry_run: bool = False,
                 progress: bool = True, embedder: Embedder | None = None, graph: GraphStore | None = None,
                 extractor: Extractor | None = None) -> IndexReport:
    """Index every domain found in ``source``. With ``graph``, each new version also gets its
    knowledge graph (extracted with ``extractor``, spaCy by default), switched together."""
    started = time.perf_counter()
    source = Path(source).resolve()
    read = read_corpus(source, domain, params.max_file_bytes)
    report = IndexReport(str(source), dry_run, read.files_seen, list(read.skipped),
                         read_seconds=time.perf_counter() - started)
    by_domain: dict[str, list[Document]] = {}
    for document in read.documents:
        by_domain.setdefault(document.domain, []).append(document)
    if domain and not by_domain:
        report.domains.append(DomainReport(domain, dry_run, error="no readable documents in the source"))
    embedder = embedder or get_embedder(params.embedder, params.embed_batch_size)
    if graph is not None and extractor is None:
        extractor = SpacyExtractor()
    fingerprint = source_fingerprint(source)
    for name, documents in by_domain.items():
        curated = [path for path, curated_domain in read.curated_files if curated_domain == name]
        job = _DomainJob(params, name, embedder, graph, extractor, curated, dry_run, progress,
                         {"path": str(source), "fingerprint": fingerprint})
        try:
            report.domains.append(_index_domain(job, documents, report.skipped))
        except (GraphError, IndexBusy, OSError, CuratedTriplesError) as exc:
            # The serving version is untouched; say what failed and go on with other domains.
            error = f"could not write the new version ({exc})" if isinstance(exc, OSError) else str(exc)
            failed = DomainReport(name, dry_run, documents_read=len(documents), error=error)
            failed.previous_version = DomainVersions(params.domains_dir, name).current()
            report.domains.append(failed)
    report.seconds = time.perf_counter() - started
    return report


@dataclass
class _DomainJob:
    params: IndexingParams
    domain: str
    embedder: Embedder
    graph: GraphStore | None
    extractor: Extractor | None
    curated_files: list[Path]
    dry_run: bool
    progress: bool
    source: dict


def _index_domain(job: _DomainJob, documents: list[Document], skipped: list[Skipped]) -> DomainReport:
    params, domain = job.params, job.domain
    report = DomainReport(domain, job.dry_run, documents_read=len(documents))
    clock = report.stage_seconds
    documents = _drop_repeated_ids(documents, skipped)
    with clock.stage("clean"):
        cleaned = clean_documents(documents, near_duplicate_threshold=params.near_duplicate_threshold,
                                  words_per_shingle=params.shingle_words, permutations=params.minhash_permutations)
    report.empty_documents, report.duplicates = cleaned.empty, cleaned.duplicates
    report.documents_indexed = len(cleaned.documents)

    chunks: list[Chunk] = []
    with clock.stage("chunk"):
        for document in tqdm(cleaned.documents, desc=f"chunk {domain}", unit="doc", disable=not job.progress,
                             leave=False):
            chunks.extend(chunk_document(document, job.embedder.count_tokens, params.chunk_tokens,
                                         params.chunk_overlap_tokens))

    versions = DomainVersions(params.domains_dir, domain)
    previous = _serving_manifest(versions)
    report.previous_version = report.version = previous.get("version") if previous else None
    new_docs = document_entries(cleaned.documents, chunks)
    count_changes(report, previous.get("documents", {}) if previous else {}, new_docs)
    report.chunks_total = len(chunks)
    curated_fingerprint = _curated_fingerprint(job.curated_files)
    # A serving version with other settings, other curated facts, damaged files, or without
    # its graph is rebuilt: all derived data can be made again from the corpus.
    vectors_stale = previous is not None and (
        _index_settings(params, job.embedder) != previous.get("index_settings") or not _files_intact(versions, previous))
    graph_stale = previous is not None and job.graph is not None and (
        previous.get("curated") != curated_fingerprint or WALK_FILE not in previous.get("files", {})
        or not job.graph.has_version(domain, previous["version"]))
    rebuild = vectors_stale or graph_stale
    if job.dry_run:
        return report
    if not chunks:
        report.error = "no text left to index after cleaning"
        return report
    if previous is not None and not report.has_changes and not rebuild:
        report.index_type = previous.get("index_type")
        return report

    with versions.writer_lock():
        _clean_leftovers(params, versions, job.graph)
        extraction = _BackgroundExtraction(job, chunks, versions, previous, clock) if job.graph is not None else None
        try:
            with clock.stage("embed"):
                vectors = _embed_with_reuse(chunks, versions, previous, job.embedder, vectors_stale, report,
                                            job.progress)
            build_dir = versions.new_build_dir()
            with clock.stage("faiss"):
                vector_meta = write_vector_files(build_dir, chunks, vectors, _index_params(params))
            with clock.stage("bm25"):
                vector_meta["files"].update(write_lexical_files(build_dir, [chunk.text for chunk in chunks]))
            version = versions.next_version()
            if extraction is not None:
                vector_meta["files"].update(_build_graph(job, report, build_dir, version, chunks, new_docs,
                                                         versions, previous, extraction))
        finally:
            if extraction is not None:
                extraction.close()  # waits for it: no work of this run outlives it
        manifest = {
            "schema": MANIFEST_SCHEMA,
            "domain": domain,
            "version": version,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "index_settings": _index_settings(params, job.embedder),
            "dimension": job.embedder.dimension,
            "doc_count": len(new_docs),
            "chunk_count": len(chunks),
            "source": job.source,
            "documents": new_docs,
            "extractor": job.extractor.name if job.graph is not None else None,
            "curated": curated_fingerprint if job.graph is not None else None,
            "graph": _graph_counts(report) if job.graph is not None else None,
            **vector_meta,
        }
        write_manifest(build_dir, manifest)
        versions.commit(build_dir, version)
        versions.switch(version)
        _clean_leftovers(params, versions, job.graph)
    report.version, report.switched, report.index_type = version, True, vector_meta["index_type"]
    return report


def _clean_leftovers(params: IndexingParams, versions: DomainVersions, graph: GraphStore | None) -> list[str]:
    """Remove what a crashed run left (build folders, graph versions never switched to) and
    versions older than the kept ones, on disk and in the graph. Hold the writer lock."""
    removed = versions.cleanup(params.keep_index_versions)
    if graph is not None:
        removed += [f"graph {v}" for v in graph.delete_versions_except(versions.domain, versions.all_versions())]
    return removed


def clean_interrupted_builds(params: IndexingParams, graph: GraphStore | None = None) -> dict[str, list[str]]:
    """At start-up: remove what re-indexes killed half-way left behind (build folders, versions
    never switched to, their graph nodes) rather than keep them until that domain is next
    re-indexed. A domain whose writer lock is held (a re-index running in another process) is
    left alone. Returns what was removed per domain."""
    removed: dict[str, list[str]] = {}
    root = params.domains_dir
    if not root.is_dir():
        return removed
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        versions = DomainVersions(root, folder.name)
        if versions.current() is None and (folder / CURRENT_FILE).exists():
            # A damaged CURRENT would make every version look abandoned: leave them to a re-index.
            log.warning("%s: its CURRENT file names no version; not cleaning it", folder.name)
            continue
        try:
            with versions.writer_lock():
                gone = _clean_leftovers(params, versions, graph)
        except IndexBusy:
            continue
        except GraphError as exc:  # the files are cleaned; the graph's leftovers wait for the next run
            log.warning("could not remove leftover graph versions of %s: %s", folder.name, exc)
            continue
        if gone:
            log.info("removed leftovers of %s: %s", folder.name, ", ".join(gone))
            removed[folder.name] = gone
    return removed


class _BackgroundExtraction:
    """The graph's extraction (spaCy), started in a thread before the chunks are embedded. Both
    are CPU work, but they overlap: on 2 cores 7.1 s of embedding and 6.2 s of extraction took
    11.4 s together. Its stage time ("extract") is its own run, beside "embed"."""

    def __init__(self, job: _DomainJob, chunks: list[Chunk], versions: DomainVersions, previous: dict | None,
                 clock: StageTimes):
        self.previous_dir = versions.path(previous["version"]) if previous else None
        previous_extractor = previous.get("extractor") if previous else None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"extract-{job.domain}")

        def run() -> tuple[list, int]:
            with clock.stage("extract"):
                return extract_with_reuse(chunks, job.extractor, self.previous_dir, previous_extractor, job.progress)

        self._future = self._pool.submit(run)

    def result(self) -> tuple[list, int]:
        """(extractions in chunk order, how many were reused); raises what the extraction raised."""
        return self._future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _build_graph(job: _DomainJob, report: DomainReport, build_dir: Path, version: str, chunks: list[Chunk],
                 new_docs: dict[str, dict], versions: DomainVersions, previous: dict | None,
                 extraction: _BackgroundExtraction) -> dict[str, str]:
    """Fuse the extraction's results and write the version's graph; write its walk adjacency into
    the build folder and return that file's checksum for the manifest."""
    clock = report.stage_seconds
    previous_dir = extraction.previous_dir
    with clock.stage("extract wait"):
        extractions, reused = extraction.result()
    curated = [fact for path in job.curated_files for fact in read_curated_triples(path)]
    names = NameEncoder(job.embedder.encode, job.embedder.name, previous_dir)
    with clock.stage("fuse"):
        graph = fuse(extractions, curated, derived=cooccurrence_relations(extractions), encode=names,
                     params=_fusion_params(job.params), source_of=_source_of(job.source["path"], new_docs))
    save_extractions(build_dir / EXTRACTIONS_FILE, extractions)
    names.save(build_dir)
    report.names_embedded = names.encoded
    save_graph_summary(build_dir / GRAPH_SUMMARY_FILE, graph)
    documents = [{"doc_id": doc_id, "title": d["title"], "source": d["source"]} for doc_id, d in new_docs.items()]
    rows = len(documents) + len(chunks) + len(graph.entities) + len(graph.mentions) + len(graph.facts)
    with clock.stage("graph write"), tqdm(total=rows, desc=f"graph {job.domain}", unit="row",
                                          disable=not job.progress, leave=False) as bar:
        job.graph.write_version(job.domain, version, documents, chunks, graph, on_progress=bar.update)
    previous_summary = load_graph_summary(previous_dir / GRAPH_SUMMARY_FILE) if previous_dir else None
    for name, value in diff_graph(previous_summary, graph).items():
        setattr(report, name, value)
    report.graph_written = True
    report.chunks_extracted = len(chunks) - reused
    report.entities_total, report.relations_total = len(graph.entities), len(graph.facts)
    report.curated_facts = sum(f.curated for f in graph.facts)
    report.source_overlap = graph.source_overlap
    with clock.stage("walk"):
        return write_walk_file(build_dir, build_walk_graph(graph, chunks))


def _graph_counts(report: DomainReport) -> dict:
    return {"entities": report.entities_total, "relations": report.relations_total, "curated": report.curated_facts}


def _source_of(source_path: str, docs: dict[str, dict]):
    """A document's source for the overlap report: its top-level sub-folder or file under the
    indexed path (documents of one flat folder share one source)."""
    root = Path(source_path)

    def source_of(doc_id: str) -> str:
        source = docs.get(doc_id, {}).get("source", "")
        location, _, line = source.rpartition(":")
        path = Path(location if line.isdigit() else source)  # "corpus.jsonl:12" -> corpus.jsonl
        try:
            relative = path.relative_to(root if root.is_dir() else root.parent)
        except ValueError:
            return root.name
        return relative.parts[0] if len(relative.parts) > 1 else (path.name if path.suffix == ".jsonl" else root.name)

    return source_of


def _curated_fingerprint(paths: list[Path]) -> str | None:
    if not paths:
        return None
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _fusion_params(params: IndexingParams) -> FusionParams:
    return FusionParams(params.fusion_fuzzy_min_ratio, params.fusion_embedding_min_cosine)


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


def _index_settings(params: IndexingParams, embedder: Embedder) -> dict:
    return {"embedder": embedder.name, "chunk_tokens": params.chunk_tokens,
            "chunk_overlap_tokens": params.chunk_overlap_tokens}


def _index_params(params: IndexingParams) -> IndexParams:
    return IndexParams(params.hnsw_min_vectors, params.hnsw_m, params.hnsw_ef_construction, params.hnsw_ef_search)
