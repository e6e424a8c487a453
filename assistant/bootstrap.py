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
from indexing.pipeline import IndexReport, index_source, source_fingerprint
from indexing.versions import DomainVersions, read_manifest

log = logging.getLogger(__name__)


@dataclass
class BootstrapResult:
    graph: GraphConnection
    indexed: list[IndexReport] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)


def demo_sources(settings: Settings) -> list[Path]:
    root = settings.demo_corpora_dir
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def is_up_to_date(settings: Settings, source: Path) -> bool:
    """True when the domain's serving version was built from exactly these files."""
    current = DomainVersions(settings.domains_dir, source.name).current_path()
    if current is None:
        return False
    try:
        built_from = read_manifest(current).get("source", {}).get("fingerprint")
    except (OSError, ValueError):
        return False
    return built_from == source_fingerprint(source)


def bootstrap(settings: Settings, progress: bool = True) -> BootstrapResult:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    graph = GraphConnection.open(settings)
    result = BootstrapResult(graph)
    for source in demo_sources(settings):
        if is_up_to_date(settings, source):
            result.up_to_date.append(source.name)
            continue
        print(f"Indexing demo domain {source.name!r} from {source} ...", flush=True)
        report = index_source(settings, source, source.name, progress=progress)
        print(report.format(), flush=True)
        result.indexed.append(report)
    return result
