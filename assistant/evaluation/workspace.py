"""The evaluation's own data dir: the corpus indexed (FAISS, BM25, graph) apart from the served
domains, on a graph server of its own, and reused while the corpus is unchanged.

``data/eval/<corpus name>-<hash of its path>/`` holds domains/, graph/, adapters/, datasets/;
models/ links to the app's converted base model so it is not converted twice. Nothing under the
app's own domains/ or adapters/ is written: served adapters are *copied* in when wanted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from assistant.settings import Settings
from indexing.corpus import SUPPORTED_SUFFIXES, normalise_domain
from indexing.graph_connection import GraphConnection
from indexing.graph_store import GraphStore
from indexing.chunking import CHUNKING_VERSION
from indexing.pipeline import index_source, source_fingerprint
from indexing.versions import DomainVersions, list_domains, read_manifest

log = logging.getLogger(__name__)

STATE_FILE = "workspace.json"


class WorkspaceError(RuntimeError):
    """The corpus could not be indexed for evaluation."""


@dataclass
class Workspace:
    settings: Settings
    connection: GraphConnection
    graph: GraphStore
    corpus: Path
    fingerprint: str
    reused: bool
    reports: list[str] = field(default_factory=list)  # indexing reports, as printed

    @property
    def domains(self) -> list[str]:
        return list_domains(self.settings.domains_dir)

    def describe(self) -> dict:
        """Each domain's serving version and counts, for the report."""
        described = {}
        for domain in self.domains:
            current = DomainVersions(self.settings.domains_dir, domain).current_path()
            manifest = read_manifest(current) if current else {}
            described[domain] = {"version": manifest.get("version"), "documents": manifest.get("doc_count"),
                                 "chunks": manifest.get("chunk_count"), "graph": manifest.get("graph")}
        return described

    def close(self) -> None:
        self.connection.close()  # stops this workspace's own graph server (with a save)


def workspace_settings(app: Settings, corpus: Path) -> Settings:
    """The app's settings pointed at the corpus's workspace and its own embedded graph server."""
    corpus = Path(corpus).resolve()
    slug = re.sub(r"[^a-z0-9_-]+", "-", corpus.stem.lower()).strip("-") or "corpus"
    folder = app.data_dir / "eval" / f"{slug}-{hashlib.sha256(str(corpus).encode()).hexdigest()[:8]}"
    values = app.model_dump()
    values.update(data_dir=folder, neo4j_uri=None)  # never the served graph: a server of its own
    return Settings(_env_file=None, **values)


def corpus_sources(corpus: Path) -> list[tuple[Path, str | None]]:
    """(source, domain) pairs: a corpus.jsonl (domains from its lines), a folder whose sub-folders
    are domains (like the demo corpora), or a folder that is one domain."""
    corpus = Path(corpus)
    if not corpus.exists():
        raise WorkspaceError(f"no corpus at {corpus}")
    if corpus.is_file():
        return [(corpus, None)]
    entries = [p for p in corpus.iterdir() if not p.name.startswith(".")]
    top_files = [p for p in entries if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES]
    folders = sorted(p for p in entries if p.is_dir())
    if folders and not top_files:
        return [(folder, normalise_domain(folder.name)) for folder in folders]
    return [(corpus, None)]


def open_workspace(app: Settings, corpus: Path, *, progress: bool = True, embedder=None) -> Workspace:
    """Start the workspace's graph server and index the corpus, unless the last build of exactly
    these files is still there (manifests, FAISS files and graph versions all present)."""
    settings = workspace_settings(app, corpus)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _link_models(app, settings)
    fingerprint = f"{source_fingerprint(Path(corpus))}:chunking-{CHUNKING_VERSION}"
    connection = GraphConnection.open(settings.graph_params)
    try:
        graph = GraphStore(connection, settings.domains_dir)
        graph.ensure_indexes()
        workspace = Workspace(settings, connection, graph, Path(corpus).resolve(), fingerprint, reused=False)
        if _is_current(workspace):
            workspace.reused = True
            return workspace
        for source, domain in corpus_sources(Path(corpus)):
            report = index_source(settings.indexing_params, source, domain, progress=progress, graph=graph, embedder=embedder)
            workspace.reports.append(report.format())
            if not report.ok:
                raise WorkspaceError(f"indexing {source} for evaluation failed:\n{report.format()}")
        (settings.data_dir / STATE_FILE).write_text(json.dumps(
            {"corpus": str(workspace.corpus), "fingerprint": fingerprint, "domains": workspace.domains}, indent=2))
        return workspace
    except BaseException:
        connection.close()
        raise


def _is_current(workspace: Workspace) -> bool:
    try:
        state = json.loads((workspace.settings.data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return False
    if state.get("fingerprint") != workspace.fingerprint or sorted(state.get("domains", [])) != workspace.domains:
        return False
    for domain in workspace.domains:
        current = DomainVersions(workspace.settings.domains_dir, domain).current()
        if current is None or not workspace.graph.has_version(domain, current):
            return False
    return bool(workspace.domains)


def _link_models(app: Settings, settings: Settings) -> None:
    """The workspace shares the app's converted base model (hundreds of MB, half a minute)."""
    link = settings.models_dir
    if link.is_symlink() or link.exists():
        return
    app.models_dir.mkdir(parents=True, exist_ok=True)
    link.symlink_to(app.models_dir, target_is_directory=True)
