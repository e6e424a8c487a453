"""Indexing end to end with the real embedder and real FAISS files."""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest

from assistant.settings import DEMO_CORPORA_DIR, load_settings
from indexing import pipeline
from indexing.domain_summary import summarise_domains
from indexing.pipeline import index_source
from indexing.vector_store import IndexUnavailable, VectorStore
from indexing.versions import DomainVersions, read_manifest

KNOWN_QUESTIONS = [
    ("medicine", "What class of drug is metformin?", "metformin.md"),
    ("medicine", "Which enzyme does aspirin block?", "aspirin.md"),
    ("finance", "Which law created the Federal Reserve?", "federal-reserve.md"),
    ("finance", "Who chaired the Fed and fought inflation in the 1980s?", "paul-volcker.md"),
    ("finance", "What does the S&P 500 track?", "s-and-p-500.md"),
    ("law", "Which case established judicial review?", "marbury-v-madison.md"),
    ("law", "When did the GDPR take effect?", "gdpr.md"),
]


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory, embedder):
    """All three demo domains indexed once into a module-wide data dir (read-only for tests)."""
    settings = load_settings(data_dir=tmp_path_factory.mktemp("demo") / "data", _env_file=None)
    reports = [index_source(settings.indexing_params, DEMO_CORPORA_DIR / d, d, progress=False, embedder=embedder)
               for d in ("medicine", "finance", "law")]
    return settings, reports


def test_demo_folders_index_with_expected_counts(demo_index):
    settings, reports = demo_index
    for report in reports:
        assert report.skipped == [] and report.ok
        (domain,) = report.domains
        assert domain.documents_read == 28 and domain.documents_indexed == 28
        assert domain.documents_added == 28 and domain.chunks_total == domain.chunks_added >= 28
        assert domain.chunks_embedded == domain.chunks_total
        assert domain.switched and domain.version == "v000001" and domain.index_type == "flat"
    rows = {row.domain: row for row in summarise_domains(settings.domains_dir)}
    assert set(rows) == {"medicine", "finance", "law"}
    assert all(row.healthy and row.documents == 28 for row in rows.values())


@pytest.mark.parametrize("domain,question,expected_doc", KNOWN_QUESTIONS)
def test_known_question_finds_its_document_first(demo_index, embedder, domain, question, expected_doc):
    settings, _ = demo_index
    hits = VectorStore(settings.domains_dir).search(domain, embedder.encode_query(question), k=5)
    assert hits[0].doc_id == expected_doc
    assert hits[0].domain == domain and hits[0].text and hits[0].chunk_id.startswith(expected_doc + "#")
    assert hits[0].score >= hits[-1].score


def test_corpus_jsonl_with_several_domains(settings, embedder, tmp_path):
    rows = []
    for domain in ("medicine", "law"):
        for path in sorted((DEMO_CORPORA_DIR / domain).glob("*.md"))[:5]:
            rows.append({"id": path.name, "domain": domain, "title": path.stem, "text": path.read_text()})
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps(r) for r in rows))
    report = index_source(settings.indexing_params, corpus, progress=False, embedder=embedder)
    assert {d.domain: d.documents_indexed for d in report.domains} == {"medicine": 5, "law": 5}
    first_law = rows[5]
    hits = VectorStore(settings.domains_dir).search("law", embedder.encode_query(first_law["text"][:200]), k=1)
    assert hits[0].doc_id == first_law["id"]


def test_reindex_after_edit_delete_add_reports_exact_counts(settings, embedder, demo_copy):
    law = demo_copy / "law"
    first = index_source(settings.indexing_params, law, "law", progress=False, embedder=embedder).domains[0]
    manifest = read_manifest(DomainVersions(settings.domains_dir, "law").current_path())
    deleted_chunks = len(manifest["documents"]["gideon-v-wainwright.md"]["chunks"])
    edited_chunks = len(manifest["documents"]["magna-carta.md"]["chunks"])
    deleted_text = (law / "gideon-v-wainwright.md").read_text()

    (law / "gideon-v-wainwright.md").unlink()
    magna = law / "magna-carta.md"
    magna.write_text(magna.read_text().rstrip() + " The charter is studied by law students in many countries.\n")
    (law / "hammurabi.md").write_text("# Code of Hammurabi\n\nThe Code of Hammurabi is a Babylonian legal text "
                                      "composed around 1754 BC. It contains 282 laws inscribed on a basalt stele.\n")
    second = index_source(settings.indexing_params, law, "law", progress=False, embedder=embedder).domains[0]

    assert (second.documents_added, second.documents_changed, second.documents_removed) == (1, 1, 1)
    assert second.documents_unchanged == 28 - 2
    # Appending to the last sentence changes only the document's last chunk.
    assert (second.chunks_added, second.chunks_changed, second.chunks_removed) == (1, 1, deleted_chunks)
    assert second.chunks_unchanged == first.chunks_total - deleted_chunks - 1
    assert second.chunks_embedded == 2  # only the new text is embedded again
    assert second.previous_version == "v000001" and second.version == "v000002"
    assert edited_chunks >= 1

    store = VectorStore(settings.domains_dir)
    hits = store.search("law", embedder.encode_query(deleted_text[:300]), k=10)
    assert all(h.doc_id != "gideon-v-wainwright.md" for h in hits)
    assert store.search("law", embedder.encode_query("Babylonian laws on a basalt stele"), k=1)[0].doc_id == "hammurabi.md"


def test_dry_run_and_unchanged_reindex_write_nothing(settings, embedder, demo_copy):
    finance = demo_copy / "finance"
    (finance / "extra.md").write_text("# Extra\n\nThe Federal Reserve Bank of New York holds gold for many nations.\n")
    dry = index_source(settings.indexing_params, finance, "finance", dry_run=True, progress=False, embedder=embedder).domains[0]
    assert dry.documents_added == 29 and not dry.switched
    assert DomainVersions(settings.domains_dir, "finance").current() is None
    index_source(settings.indexing_params, finance, "finance", progress=False, embedder=embedder)
    (finance / "extra.md").unlink()
    dry = index_source(settings.indexing_params, finance, "finance", dry_run=True, progress=False, embedder=embedder).domains[0]
    assert dry.documents_removed == 1 and DomainVersions(settings.domains_dir, "finance").current() == "v000001"
    (finance / "extra.md").write_text("# Extra\n\nThe Federal Reserve Bank of New York holds gold for many nations.\n")
    again = index_source(settings.indexing_params, finance, "finance", progress=False, embedder=embedder).domains[0]
    assert not again.switched and again.version == "v000001" and again.chunks_embedded == 0


def test_bad_files_are_reported_and_good_ones_indexed(settings, embedder, tmp_path):
    root = tmp_path / "medicine"
    shutil.copytree(DEMO_CORPORA_DIR / "medicine", root)
    (root / "zero.md").write_bytes(b"")
    (root / "blob.txt").write_bytes(bytes(range(256)) * 4)
    (root / "latin1.md").write_bytes("# Caf\xe9\nna\xefve".encode("latin-1"))
    (root / "broken.pdf").write_bytes(b"%PDF-1.4\n%%EOF garbage")
    (root / "lines.jsonl").write_text('{"id": "x1", "text": "Valid."}\n{"id": "x2", "text": \n')
    report = index_source(settings.indexing_params, root, "medicine", progress=False, embedder=embedder)
    assert len(report.skipped) == 5
    assert report.domains[0].documents_indexed == 28 + 1
    text = report.format()
    for name in ("zero.md", "blob.txt", "latin1.md", "broken.pdf", "lines.jsonl:2"):
        assert name in text


def test_search_during_reindex_sees_old_or_new_never_an_error(settings, embedder, demo_copy):
    law = demo_copy / "law"
    index_source(settings.indexing_params, law, "law", progress=False, embedder=embedder)
    store = VectorStore(settings.domains_dir)
    query = embedder.encode_query("judicial review")
    seen, errors, stop = set(), [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                hits = store.search("law", query, k=3)
                assert len(hits) == 3
                seen.add(hits[0].version)
            except Exception as exc:  # any failure is what this test exists to catch
                errors.append(repr(exc))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for round_number in range(3):
            (law / f"added-{round_number}.md").write_text(f"# Added {round_number}\n\nRound {round_number} adds a note on appellate courts.\n")
            index_source(settings.indexing_params, law, "law", progress=False, embedder=embedder)
        deadline = time.monotonic() + 30
        while "v000004" not in seen and time.monotonic() < deadline:  # the readers pick up the last switch
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    # the readers saw the versions change under them, up to the last one, and never anything else
    assert seen <= {"v000001", "v000002", "v000003", "v000004"} and "v000004" in seen and len(seen) >= 2
    assert DomainVersions(settings.domains_dir, "law").all_versions() == ["v000003", "v000004"]


def test_crash_before_switch_leaves_old_version_serving_and_next_run_cleans_up(settings, embedder, demo_copy, monkeypatch):
    law = demo_copy / "law"
    index_source(settings.indexing_params, law, "law", progress=False, embedder=embedder)
    (law / "new.md").write_text("# New\n\nThe Court of Appeals hears appeals from district courts.\n")

    def crash(*args, **kwargs):
        raise OSError("simulated crash while writing the manifest")

    monkeypatch.setattr(pipeline, "write_manifest", crash)
    failed = index_source(settings.indexing_params, law, "law", progress=False, embedder=embedder)
    assert not failed.ok and "simulated crash" in failed.domains[0].error
    assert "v000001 keeps serving" in failed.format()
    versions = DomainVersions(settings.domains_dir, "law")
    assert versions.current() == "v000001"
    assert any(p.name.startswith(".building-") for p in versions.versions_dir.iterdir())
    store = VectorStore(settings.domains_dir)
    assert store.search("law", embedder.encode_query("judicial review"), k=1)[0].version == "v000001"

    monkeypatch.undo()
    report = index_source(settings.indexing_params, law, "law", progress=False, embedder=embedder).domains[0]
    assert report.switched and report.version == "v000002" and report.documents_added == 1
    assert not any(p.name.startswith(".building-") for p in versions.versions_dir.iterdir())


def test_corrupted_index_is_detected_other_domains_serve_and_reindex_repairs(settings, embedder, demo_copy):
    for domain in ("law", "finance"):
        index_source(settings.indexing_params, demo_copy / domain, domain, progress=False, embedder=embedder)
    index_file = DomainVersions(settings.domains_dir, "law").current_path() / "index.faiss"
    data = bytearray(index_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    index_file.write_bytes(bytes(data))

    store = VectorStore(settings.domains_dir)
    with pytest.raises(IndexUnavailable, match="corrupted"):
        store.search("law", embedder.encode_query("judicial review"), k=1)
    assert store.search("finance", embedder.encode_query("Federal Reserve"), k=1)
    health = {row.domain: row for row in summarise_domains(settings.domains_dir)}
    assert not health["law"].healthy and "corrupted" in health["law"].problem and health["finance"].healthy

    repaired = index_source(settings.indexing_params, demo_copy / "law", "law", progress=False, embedder=embedder).domains[0]
    assert repaired.switched and repaired.chunks_embedded == repaired.chunks_total
    question = embedder.encode_query("Which case established judicial review?")
    assert store.search("law", question, k=1)[0].doc_id == "marbury-v-madison.md"


def test_counting_tokens_while_another_thread_encodes_breaks_neither(embedder):
    """The router counts a question's word pieces while retrieval, or a re-index, encodes padded
    batches: with one shared fast tokenizer the count reset the batch's padding ("Unable to
    create tensor"), and a chat failed with an internal error (seen in the cancellation test)."""
    texts = ["short", "a much longer sentence about the Federal Reserve Act of 1913, its banks and its board"] * 16
    errors, stop = [], threading.Event()

    def count():
        while not stop.is_set():
            try:
                assert embedder.count_tokens("warfarin reverses vitamin k antagonists") > 3
            except Exception as exc:  # noqa: BLE001 - the failure this test exists to catch
                errors.append(repr(exc))
                return

    counter = threading.Thread(target=count)
    counter.start()
    try:
        for _ in range(30):
            vectors = embedder.encode(texts)
            assert vectors.shape == (len(texts), embedder.dimension)
    finally:
        stop.set()
        counter.join()
    assert errors == []
