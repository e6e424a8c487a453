"""First-run setup: the graph connection and the demo domains, each step reporting progress.

launch.py calls :func:`bootstrap`; later runs find everything in place and return in seconds
(a demo domain is re-indexed only when its files changed since the serving version was built).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from assistant.settings import Settings
from indexing.graph_connection import GraphConnection
from indexing.graph_store import GraphStore
from indexing.graph_walk import WALK_FILE
from indexing.pipeline import IndexReport, clean_interrupted_builds, index_source, source_fingerprint
from indexing.versions import DomainVersions, read_manifest

log = logging.getLogger(__name__)


@dataclass
class BootstrapResult:
    connection: GraphConnection
    graph: GraphStore
    indexed: list[IndexReport] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)


def demo_sources(settings: Settings) -> list[Path]:
    root = settings.demo_corpora_dir
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def is_up_to_date(settings: Settings, graph: GraphStore, source: Path) -> bool:
    """True when the domain's serving version was built from exactly these files, has its graph
    walk file and the graph still holds it (the graph is derived data: a lost graph, or one
    built before the walk existed, is rebuilt from the corpus)."""
    versions = DomainVersions(settings.domains_dir, source.name)
    current = versions.current_path()
    if current is None:
        return False
    try:
        manifest = read_manifest(current)
    except (OSError, ValueError):
        return False
    return (manifest.get("source", {}).get("fingerprint") == source_fingerprint(source)
            and manifest.get("graph") is not None and WALK_FILE in manifest.get("files", {})
            and graph.has_version(source.name, manifest["version"]))


def bootstrap(settings: Settings, progress: bool = True) -> BootstrapResult:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    connection = GraphConnection.open(settings.graph_params)
    try:
        return _prepare(settings, connection, progress)
    except BaseException:  # Ctrl-C or SIGTERM while indexing too: stop the graph server it started, with a save
        connection.close()
        raise


def _prepare(settings: Settings, connection: GraphConnection, progress: bool) -> BootstrapResult:
    graph = GraphStore(connection, settings.domains_dir)
    graph.ensure_indexes()
    clean_interrupted_builds(settings.indexing_params, graph)  # what a re-index killed half-way left behind
    result = BootstrapResult(connection, graph)
    for source in demo_sources(settings):
        if is_up_to_date(settings, graph, source):
            result.up_to_date.append(source.name)
            continue
        print(f"Indexing demo domain {source.name!r} from {source} ...", flush=True)
        report = index_source(settings.indexing_params, source, source.name, progress=progress, graph=graph)
        print(report.format(), flush=True)
        result.indexed.append(report)
    return result
