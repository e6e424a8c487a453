"""What is indexed: one summary row per domain, read from the serving manifests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from indexing.vector_store import IndexUnavailable, verify_files
from indexing.versions import DomainVersions, list_domains, read_manifest


@dataclass(frozen=True)
class DomainSummary:
    domain: str
    version: str | None
    documents: int
    chunks: int
    index_type: str | None
    created: str | None
    source: str | None
    healthy: bool
    problem: str | None = None
    entities: int = 0
    relations: int = 0


def summarise_domain(domains_dir: Path, domain: str) -> DomainSummary:
    versions = DomainVersions(domains_dir, domain)
    version = versions.current()
    if version is None:
        return DomainSummary(domain, None, 0, 0, None, None, None, False, "no serving version")
    directory = versions.path(version)
    try:
        manifest = read_manifest(directory)
    except (OSError, ValueError) as exc:
        return DomainSummary(domain, version, 0, 0, None, None, None, False, f"manifest unreadable: {exc}")
    problem = None
    try:
        verify_files(directory, manifest)
    except IndexUnavailable as exc:
        problem = str(exc)
    graph = manifest.get("graph") or {}
    return DomainSummary(domain, version, manifest.get("doc_count", 0), manifest.get("chunk_count", 0),
                         manifest.get("index_type"), manifest.get("created"),
                         (manifest.get("source") or {}).get("path"), problem is None, problem,
                         graph.get("entities", 0), graph.get("relations", 0))


def summarise_domains(domains_dir: Path) -> list[DomainSummary]:
    return [summarise_domain(domains_dir, name) for name in list_domains(domains_dir)]
