"""What changed between the serving version and the new one, document by document: each
document's title, source, content hash and chunk ids (``document_entries``, kept in the
manifest), and the counts of documents and chunks added, changed, removed and unchanged."""

from __future__ import annotations

from indexing.chunking import Chunk
from indexing.clean import content_hash
from indexing.corpus import Document
from indexing.index_report import DomainReport


def document_entries(documents: list[Document], chunks: list[Chunk]) -> dict[str, dict]:
    chunk_ids: dict[str, list[str]] = {}
    for chunk in chunks:
        chunk_ids.setdefault(chunk.doc_id, []).append(chunk.id)
    return {
        d.id: {"title": d.title, "source": d.source, "content_hash": content_hash(d.text), "chunks": chunk_ids.get(d.id, [])}
        for d in documents
    }


def count_changes(report: DomainReport, old_docs: dict[str, dict], new_docs: dict[str, dict]) -> None:
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
