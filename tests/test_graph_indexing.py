"""The graph side of indexing, end to end: spaCy extraction, fusion, versioned graph writes on
the real server, switched together with FAISS."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from assistant.settings import DEMO_CORPORA_DIR
from indexing.domain_summary import summarise_domains
from indexing.graph_connection import GraphConnection, GraphError
from indexing.graph_store import GraphStore
from indexing.pipeline import index_source
from indexing.vector_store import VectorStore
from indexing.version_reuse import NAME_VECTORS_FILE
from indexing.versions import DomainVersions


def triples(facts):
    return {(f.head.lower(), f.relation, f.tail.lower()) for f in facts}


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def test_demo_domain_builds_a_graph_with_provenance(settings, embedder, store, demo_copy):
    report = index_source(settings.indexing_params, demo_copy / "law", "law", progress=False, embedder=embedder, graph=store)
    law = report.domains[0]
    assert law.graph_written and law.entities_total > 100 and law.relations_total > 50
    assert law.entities_added == law.entities_total and law.chunks_extracted == law.chunks_total
    stats = store.stats("law")
    assert stats["documents"] == 28 and stats["chunks"] == law.chunks_total
    assert stats["entities"] == law.entities_total and stats["relations"] == law.relations_total
    links = store.link_entities("law", "What did Marbury v. Madison establish?")
    assert links and "marbury" in links[0].key
    facts = store.facts("law", [links[0].key], hops=1)
    assert facts and all(f.doc_ids and f.chunk_ids for f in facts)
    assert any("marbury-v-madison.md" in f.doc_ids for f in facts)
    chunk_ids = {row.chunk_id for row in VectorStore(settings.domains_dir).get("law").rows}
    assert all(set(f.chunk_ids) <= chunk_ids for f in facts)  # provenance points at indexed chunks
    summary = {row.domain: row for row in summarise_domains(settings.domains_dir)}["law"]
    assert (summary.entities, summary.relations) == (law.entities_total, law.relations_total)


def test_deleting_or_changing_a_document_removes_only_its_contributions(settings, embedder, store, tmp_path):
    corpus = tmp_path / "pharma"
    write(corpus, "a.md", "# A\n\nAspirin inhibits cyclooxygenase. Warfarin prevents blood clots.\n")
    write(corpus, "b.md", "# B\n\nAspirin inhibits cyclooxygenase. Metformin lowers blood glucose.\n")
    write(corpus, "c.md", "# C\n\nPenicillin kills bacteria. Fleming discovered penicillin.\n")
    index_source(settings.indexing_params, corpus, progress=False, embedder=embedder, graph=store)
    facts = triples(store.facts("pharma", [l.key for l in store.link_entities("pharma", "aspirin warfarin penicillin")], limit=50))
    assert ("aspirin", "inhibit", "cyclooxygenase") in facts and ("warfarin", "prevent", "blood clots") in facts
    shared = next(f for f in store.facts("pharma", ["aspirin"]) if f.relation == "inhibit")
    assert shared.doc_ids == ("a.md", "b.md") and shared.count == 2

    (corpus / "a.md").unlink()
    write(corpus, "c.md", "# C\n\nPenicillin kills bacteria. Alexander Fleming discovered penicillin in 1928.\n")
    second = index_source(settings.indexing_params, corpus, progress=False, embedder=embedder, graph=store).domains[0]
    assert second.relations_removed >= 1 and second.entities_removed >= 1
    shared = next(f for f in store.facts("pharma", ["aspirin"]) if f.relation == "inhibit")
    assert shared.doc_ids == ("b.md",) and shared.count == 1  # still supported by b.md
    assert store.link_entities("pharma", "warfarin") == []  # its only mention was in a.md
    assert not any("a.md" in f.doc_ids for f in store.facts("pharma", [l.key for l in store.link_entities("pharma", "aspirin metformin penicillin")], hops=2, limit=100))
    assert second.chunks_extracted == 1  # only the changed chunk of c.md went through spaCy again
    first_names = DomainVersions(settings.domains_dir, "pharma").path("v000001") / NAME_VECTORS_FILE
    assert first_names.is_file()
    # only names the changed chunk brought ("alexander fleming", "1928"...) were embedded again
    assert 0 < second.names_embedded < 4
    assert store.versions("pharma") == ["v000001", "v000002"]  # previous kept for open readers


def test_crash_between_graph_batches_leaves_previous_version_answering(settings, embedder, store, demo_copy, monkeypatch):
    law = demo_copy / "law"
    index_source(settings.indexing_params, law, "law", progress=False, embedder=embedder, graph=store)
    key = store.link_entities("law", "Marbury v. Madison")[0].key
    before = store.facts("law", [key])
    write(law, "extra.md", "# Extra\n\nThe Court of Appeals reviews decisions of district courts.\n")

    real_query, calls = store.connection.query, {"writes": 0}

    def failing_query(statement, params=None, *, what, read=False):
        if what.startswith("writing graph"):
            calls["writes"] += 1
            if calls["writes"] == 3:
                raise GraphError("writing graph law: simulated crash between batches")
        return real_query(statement, params, what=what, read=read)

    monkeypatch.setattr(store.connection, "query", failing_query)
    failed = index_source(settings.indexing_params, law, "law", progress=False, embedder=embedder, graph=store)
    monkeypatch.undo()
    assert "simulated crash" in failed.domains[0].error and failed.domains[0].previous_version == "v000001"
    assert DomainVersions(settings.domains_dir, "law").current() == "v000001"
    assert store.facts("law", [key]) == before
    assert "v000002" in store.versions("law")  # the half-written version is there, but unused

    report = index_source(settings.indexing_params, law, "law", progress=False, embedder=embedder, graph=store).domains[0]
    assert report.switched and report.version == "v000002"
    assert store.versions("law") == ["v000001", "v000002"] and store.stats("law")["documents"] == 29


def test_curated_triples_are_imported_as_curated_facts(settings, embedder, store, tmp_path):
    corpus = tmp_path / "finance"
    write(corpus, "fed.md", "# Fed\n\nThe Federal Reserve sets monetary policy for the United States.\n")
    write(corpus, "triples.csv", "head,relation,tail,source\nFederal Reserve,created by,Federal Reserve Act,almanac\n"
                                 "Federal Reserve Act,signed by,Woodrow Wilson,almanac\n")
    report = index_source(settings.indexing_params, corpus, progress=False, embedder=embedder, graph=store)
    assert report.files_seen == 2 and report.skipped == [] and report.domains[0].documents_indexed == 1
    assert report.domains[0].curated_facts == 2
    facts = store.facts("finance", ["federal reserve"], hops=2)
    curated = [f for f in facts if f.curated]
    assert {(f.head, f.relation, f.tail) for f in curated} == {("Federal Reserve", "created_by", "Federal Reserve Act"),
                                                               ("Federal Reserve Act", "signed_by", "Woodrow Wilson")}
    assert all(f.confidence == 1.0 and f.doc_ids == ("almanac",) for f in curated)


def test_lost_graph_is_rebuilt_from_the_corpus(settings, embedder, store, demo_copy):
    law = demo_copy / "law"
    index_source(settings.indexing_params, law, "law", progress=False, embedder=embedder, graph=store)
    store.delete_versions_except("law", keep=[])  # as if the graph server lost its data
    report = index_source(settings.indexing_params, law, "law", progress=False, embedder=embedder, graph=store).domains[0]
    assert report.switched and report.chunks_embedded == 0 and report.chunks_extracted == 0  # all reused
    assert report.names_embedded == 0
    assert store.stats("law")["relations"] == report.relations_total > 0


def test_reused_name_vectors_merge_as_fresh_ones_do(settings, embedder, store, demo_copy):
    """A re-index takes the previous version's name vectors; a damaged file is embedded again,
    and either way the same entities come out."""
    law = demo_copy / "law"
    first = index_source(settings.indexing_params, law, "law", progress=False, embedder=embedder, graph=store).domains[0]
    assert first.names_embedded > 500
    versions = DomainVersions(settings.domains_dir, "law")
    fresh = (versions.current_path() / "graph.json").read_text()
    store.delete_versions_except("law", keep=[])  # forces a rebuild of the graph from the same corpus
    reused = index_source(settings.indexing_params, law, "law", progress=False, embedder=embedder, graph=store).domains[0]
    assert reused.names_embedded == 0 and (versions.current_path() / "graph.json").read_text() == fresh
    (versions.current_path() / NAME_VECTORS_FILE).write_bytes(b"not a numpy file")
    store.delete_versions_except("law", keep=[])
    repaired = index_source(settings.indexing_params, law, "law", progress=False, embedder=embedder, graph=store).domains[0]
    assert repaired.names_embedded == first.names_embedded
    assert (versions.current_path() / "graph.json").read_text() == fresh


def test_cli_graph_draws_a_png(tmp_path):
    env = {"ASSISTANT_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    source = tmp_path / "medicine"
    shutil.copytree(DEMO_CORPORA_DIR / "medicine", source)
    cli = [sys.executable, "-m", "assistant.cli"]
    indexed = subprocess.run(cli + ["index", "--source", str(source), "--quiet"], env=env, capture_output=True,
                             text=True, timeout=600, cwd=Path(__file__).resolve().parent.parent)
    assert indexed.returncode == 0, indexed.stderr
    assert "graph:" in indexed.stdout
    out = tmp_path / "aspirin.png"
    drawn = subprocess.run(cli + ["graph", "--domain", "medicine", "--entity", "aspirin", "--hops", "2", "--out", str(out)],
                           env=env, capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parent.parent)
    assert drawn.returncode == 0, drawn.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert "relations around" in drawn.stdout


def test_unreachable_graph_server_fails_the_reindex_clearly_and_keeps_serving(settings, embedder, store, demo_copy):
    law = demo_copy / "law"
    index_source(settings.indexing_params, law, "law", progress=False, embedder=embedder, graph=store)
    write(law, "extra.md", "# Extra\n\nThe Court of Appeals reviews decisions of district courts.\n")
    dead_settings = settings.model_copy(update={"neo4j_uri": "bolt://127.0.0.1:9"})  # nothing listens there
    dead = GraphStore(GraphConnection(dead_settings.graph_params), settings.domains_dir)
    report = index_source(settings.indexing_params, law, "law", progress=False, embedder=embedder, graph=dead)
    assert not report.ok and "unreachable" in report.domains[0].error
    assert DomainVersions(settings.domains_dir, "law").current() == "v000001"
    assert store.stats("law")["documents"] == 28  # the serving graph is untouched


def test_a_version_built_before_the_graph_walk_gets_one_at_the_next_index(settings, embedder, store, tmp_path):
    from indexing.graph_walk import WALK_FILE
    from indexing.versions import read_manifest, write_manifest

    corpus = tmp_path / "pharma"
    write(corpus, "a.md", "# A\n\nAspirin inhibits cyclooxygenase. Warfarin prevents blood clots.\n")
    write(corpus, "b.md", "# B\n\nWarfarin is reversed by vitamin K.\n")
    index_source(settings.indexing_params, corpus, progress=False, embedder=embedder, graph=store)
    versions = DomainVersions(settings.domains_dir, "pharma")
    old = versions.current_path()
    manifest = read_manifest(old)  # make it look like a version written before walk.npz existed
    del manifest["files"][WALK_FILE]
    (old / WALK_FILE).unlink()
    write_manifest(old, manifest)
    assert VectorStore(settings.domains_dir).get("pharma").walk_graph is None  # still serves, without a walk
    report = index_source(settings.indexing_params, corpus, progress=False, embedder=embedder, graph=store).domains[0]
    assert report.switched and report.chunks_extracted == 0  # rebuilt from the reused extractions
    walk_graph = VectorStore(settings.domains_dir).get("pharma").walk_graph
    assert walk_graph is not None and "warfarin" in walk_graph.entity_keys


def test_extraction_beside_embedding_fails_the_reindex_cleanly(settings, embedder, store, tmp_path):
    """Extraction runs in a thread while the chunks are embedded: its error reaches the caller,
    the serving version stays, and no thread of the run is left behind."""
    import threading

    import pytest

    from indexing.spacy_extractor import SpacyExtractor

    class BrokenExtractor(SpacyExtractor):
        def extract(self, chunks):
            raise RuntimeError("the extractor broke")

    corpus = tmp_path / "pharma"
    write(corpus, "a.md", "# A\n\nAspirin inhibits cyclooxygenase.\n")
    first = index_source(settings.indexing_params, corpus, progress=False, embedder=embedder, graph=store).domains[0]
    write(corpus, "b.md", "# B\n\nMetformin lowers blood glucose.\n")
    with pytest.raises(RuntimeError, match="the extractor broke"):
        index_source(settings.indexing_params, corpus, progress=False, embedder=embedder, graph=store, extractor=BrokenExtractor())
    assert DomainVersions(settings.domains_dir, "pharma").current() == first.version
    assert not [t for t in threading.enumerate() if t.name.startswith("extract-")]
    assert store.link_entities("pharma", "aspirin")  # the graph of the serving version still answers
