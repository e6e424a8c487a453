"""What one indexing run reports: per domain, the documents and chunks read, kept, added, changed
and removed, the graph's counts, the stage times and any error (``DomainReport``), and for the
whole source the files seen and skipped (``IndexReport``, with ``format()`` for the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field

from indexing.clean import Duplicate, DuplicateCounts
from indexing.corpus import Skipped
from indexing.stage_times import StageTimes


@dataclass
class DomainReport(DuplicateCounts):
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
    graph_written: bool = False
    chunks_extracted: int = 0
    names_embedded: int = 0  # entity names fusion embedded now (the others came from the previous version)
    entities_total: int = 0
    relations_total: int = 0
    entities_added: int = 0
    entities_removed: int = 0
    relations_added: int = 0
    relations_removed: int = 0
    curated_facts: int = 0
    source_overlap: dict[tuple[str, str], float] = field(default_factory=dict)
    stage_seconds: StageTimes = field(default_factory=StageTimes)  # clean ... walk, this domain's run
    error: str | None = None

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
    read_seconds: float = 0.0  # reading and parsing the source's files, all domains together

    def stage_seconds(self) -> StageTimes:
        """Every domain's stage times added up, with the read."""
        total = StageTimes(read=self.read_seconds)
        for domain in self.domains:
            total.add(domain.stage_seconds)
        return total

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
            if d.graph_written:
                lines.append(f"  graph: {d.entities_total} entities (+{d.entities_added} -{d.entities_removed}), "
                             f"{d.relations_total} relations (+{d.relations_added} -{d.relations_removed}), "
                             f"{d.curated_facts} curated facts; {d.chunks_extracted} chunks extracted and "
                             f"{d.names_embedded} entity names embedded now")
                for (u, v), gamma in sorted(d.source_overlap.items()):
                    lines.append(f"  source overlap gamma({u}, {v}) = {gamma:.3f}")
            if d.error:
                lines.append(f"  ERROR: {d.error}; version {d.previous_version or '(none)'} keeps serving")
            elif d.dry_run:
                lines.append(f"  dry run: nothing written; {d.previous_version or 'no version'} keeps serving")
            elif d.switched:
                lines.append(f"  switched {d.previous_version or '(none)'} -> {d.version} ({d.index_type} index)")
            else:
                lines.append(f"  no changes; {d.version} keeps serving")
        return "\n".join(lines)
