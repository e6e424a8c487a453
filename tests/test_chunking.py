"""Chunking logic with a word counter standing in for the tokenizer (pure logic)."""

from __future__ import annotations

from indexing.chunking import chunk_document, chunk_id, split_sentences
from indexing.corpus import Document


def words(text: str) -> int:
    return len(text.split())


def make_doc(text, doc_id="d.md"):
    return Document(doc_id, "test", "T", text, doc_id)


SENTENCES = [f"Sentence number {i} says something about topic {i % 3}." for i in range(30)]  # 8 words each


def test_chunks_respect_the_budget_and_overlap():
    chunks = chunk_document(make_doc(" ".join(SENTENCES)), words, max_tokens=40, overlap_tokens=10)
    assert all(c.tokens <= 40 for c in chunks)
    assert len(chunks) > 5
    for previous, current in zip(chunks, chunks[1:]):
        last_sentence = split_sentences(previous.text)[-1]
        assert current.text.startswith(last_sentence)  # one 8-word sentence fits the 10-word overlap
    covered = " ".join(c.text for c in chunks)
    assert all(s in covered for s in SENTENCES)


def test_no_overlap_when_zero():
    chunks = chunk_document(make_doc(" ".join(SENTENCES)), words, max_tokens=40, overlap_tokens=0)
    assert sum(len(split_sentences(c.text)) for c in chunks) == len(SENTENCES)


def test_long_sentence_is_cut_to_fit():
    long = " ".join(f"w{i}" for i in range(95)) + "."
    chunks = chunk_document(make_doc(long), words, max_tokens=20, overlap_tokens=0)
    assert all(c.tokens <= 20 for c in chunks)
    assert " ".join(c.text for c in chunks).split() == long.split()


def test_ids_are_stable_and_depend_on_document_and_content():
    text = " ".join(SENTENCES)
    first = chunk_document(make_doc(text), words, 40, 10)
    again = chunk_document(make_doc(text), words, 40, 10)
    assert [c.id for c in first] == [c.id for c in again]
    edited = chunk_document(make_doc(text.replace("Sentence number 29", "Sentence number 290")), words, 40, 10)
    assert [c.id for c in edited][:-1] == [c.id for c in first][:-1]
    assert edited[-1].id != first[-1].id
    assert chunk_id("a.md", "same") != chunk_id("b.md", "same")
    assert first[0].id.startswith("d.md#")
