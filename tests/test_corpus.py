"""Corpus readers: every format, domains and ids, and bad files skipped with a reason."""

from __future__ import annotations

import json

import pytest
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from indexing.corpus import CorpusError, read_corpus


def write_pdf(path, lines):
    pdf = canvas.Canvas(str(path), pagesize=A4)
    pdf.setTitle("Warfarin leaflet")
    y = 800
    for line in lines:
        pdf.drawString(72, y, line)
        y -= 20
    pdf.save()


@pytest.fixture
def mixed_folder(tmp_path):
    root = tmp_path / "pharmacy"
    root.mkdir()
    (root / "aspirin.md").write_text("# Aspirin\n\nAspirin inhibits cyclooxygenase.\n")
    (root / "notes.txt").write_text("Ibuprofen notes\nIbuprofen is an NSAID.\n")
    (root / "page.html").write_text(
        "<html><head><title>Heparin</title><script>var tracking = 1;</script></head>"
        "<body><nav>Home | About</nav><h1>Heparin</h1><p>Heparin is an anticoagulant.</p>"
        "<ul><li>Given by injection.</li></ul><footer>Copyright</footer></body></html>")
    write_pdf(root / "leaflet.pdf", ["Warfarin is a vitamin K antagonist.", "It is taken by mouth."])
    sub = root / "more"
    sub.mkdir()
    (sub / "extra.jsonl").write_text(
        json.dumps({"id": "j1", "title": "Statins", "text": "Statins lower LDL cholesterol."}) + "\n")
    (root / ".hidden.md").write_text("# Hidden\nnot read")
    return root


def test_reads_every_format_with_ids_titles_and_domain(mixed_folder):
    result = read_corpus(mixed_folder)
    docs = {d.id: d for d in result.documents}
    assert set(docs) == {"aspirin.md", "notes.txt", "page.html", "leaflet.pdf", "j1"}
    assert result.skipped == []
    assert {d.domain for d in result.documents} == {"pharmacy"}
    assert docs["aspirin.md"].title == "Aspirin"
    assert docs["notes.txt"].title == "Ibuprofen notes"
    assert docs["page.html"].title == "Heparin"
    assert "anticoagulant" in docs["page.html"].text and "Given by injection." in docs["page.html"].text
    assert "tracking" not in docs["page.html"].text and "Home | About" not in docs["page.html"].text
    assert "Copyright" not in docs["page.html"].text
    assert "vitamin K antagonist" in docs["leaflet.pdf"].text
    assert docs["leaflet.pdf"].title == "Warfarin leaflet"
    assert docs["j1"].title == "Statins"


def test_domain_flag_overrides_folder_name(mixed_folder):
    assert {d.domain for d in read_corpus(mixed_folder, domain="Clinical Pharmacology").documents} == {"clinical-pharmacology"}


def test_corpus_jsonl_takes_domain_per_line(tmp_path):
    path = tmp_path / "corpus.jsonl"
    rows = [
        {"id": "m1", "domain": "medicine", "title": "A", "text": "Insulin lowers blood glucose."},
        {"id": "f1", "domain": "finance", "title": "B", "text": "The ECB sets rates for the euro area."},
        {"id": 7, "domain": "finance", "text": "Numeric ids are kept as strings."},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    docs = read_corpus(path).documents
    assert [(d.id, d.domain) for d in docs] == [("m1", "medicine"), ("f1", "finance"), ("7", "finance")]
    assert docs[2].title == "7"


def test_bad_files_are_skipped_with_reasons_and_the_rest_is_read(tmp_path):
    root = tmp_path / "law"
    root.mkdir()
    (root / "good.md").write_text("# Good\nThe First Amendment protects freedom of speech.")
    (root / "good2.txt").write_text("Second good file\nMagna Carta was sealed in 1215.")
    (root / "binary.txt").write_bytes(b"\x00\x01\x02\x03binary\x00")
    (root / "empty.md").write_bytes(b"")
    (root / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (root / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ntruncated")
    (root / "picture.png").write_bytes(b"\x89PNG\r\n")
    (root / "mixed.jsonl").write_text(
        json.dumps({"id": "ok1", "text": "Valid line."}) + "\n{not json\n" + json.dumps({"id": "no-text"}) + "\n"
        + json.dumps(["a", "list"]) + "\n")
    result = read_corpus(root)
    assert sorted(d.id for d in result.documents) == ["good.md", "good2.txt", "ok1"]
    reasons = {s.source.rsplit("/", 1)[-1]: s.reason for s in result.skipped}
    assert "binary" in reasons["binary.txt"]
    assert "empty" in reasons["empty.md"]
    assert "UTF-8" in reasons["latin1.txt"]
    assert "PDF" in reasons["broken.pdf"]
    assert "unsupported" in reasons["picture.png"]
    assert "invalid JSON" in reasons["mixed.jsonl:2"]
    assert "text" in reasons["mixed.jsonl:3"]
    assert "object" in reasons["mixed.jsonl:4"]
    assert len(result.skipped) == 8


def test_oversized_file_is_skipped(tmp_path):
    root = tmp_path / "big"
    root.mkdir()
    (root / "huge.txt").write_text("word " * 1000)
    result = read_corpus(root, max_file_bytes=100)
    assert result.documents == [] and "limit" in result.skipped[0].reason


def test_missing_source_and_bad_domain_name_are_errors(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        read_corpus(tmp_path / "nope")
    (tmp_path / "x.md").write_text("# X\ntext")
    with pytest.raises(CorpusError, match="domain"):
        read_corpus(tmp_path, domain="!!!")
