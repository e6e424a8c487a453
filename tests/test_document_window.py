"""The best passage read on into its document's next chunks (assistant/answering/document_window.py):
the window's pure logic, and the real retrieval on the demo indexes."""

from __future__ import annotations

from assistant.answering.document_window import MIN_OVERLAP_CHARS, join_chunks, overlap_length, window_positions
from assistant.answering.retrieval import Retriever
from indexing.vector_store import VectorStore


def test_the_window_reads_on_after_the_best_chunk_then_back_before_it():
    document = [10, 11, 12, 13]
    assert window_positions(document, 10, 3) == [10, 11, 12]
    assert window_positions(document, 12, 3) == [11, 12, 13]  # one after, so one before
    assert window_positions(document, 13, 3) == [11, 12, 13]
    assert window_positions(document, 11, 9) == document
    assert window_positions(document, 11, 1) == [11]
    assert window_positions([], 5, 3) == [5]  # a chunk the document list does not hold stays alone


def test_chunks_that_overlap_are_joined_with_the_overlap_once():
    first = "BACKGROUND: Statins lower cholesterol. METHODS: We followed 200 patients for a year."
    second = "METHODS: We followed 200 patients for a year. RESULTS: LDL fell by 30% (p < 0.01)."
    assert overlap_length(first, second) == len("METHODS: We followed 200 patients for a year.")
    assert join_chunks([first, second]) == ("BACKGROUND: Statins lower cholesterol. METHODS: We followed 200 "
                                            "patients for a year. RESULTS: LDL fell by 30% (p < 0.01).")
    # no overlap, or a match too short to be the chunker's: joined whole
    assert join_chunks(["Alpha beta.", "Gamma delta."]) == "Alpha beta. Gamma delta."
    assert overlap_length("ends with a.", "a. starts") == 0 < MIN_OVERLAP_CHARS
    # table rows are lines, so chunks of a table meet at a line break
    assert join_chunks(["Year | Revenue\n2019 | 10", "2020 | 12\n2021 | 15"]) == "Year | Revenue\n2019 | 10\n2020 | 12\n2021 | 15"


def test_a_chunk_of_one_repeated_letter_overlaps_by_exactly_its_length():
    """The case a naive suffix search rescans per position (the prefix function does not)."""
    text = "a" * 3000
    assert overlap_length(text + "b", text) == 0
    assert overlap_length(text, text) == 3000


def test_the_best_passage_holds_its_documents_next_chunk(demo_env, embedder):
    vectors = VectorStore(demo_env.settings.domains_dir)
    question = "What reverses the effect of warfarin?"
    alone = Retriever(demo_env.settings.model_copy(update={"best_document_chunks": 1}), vectors, embedder,
                      demo_env.graph).retrieve(question, ["medicine"])
    read = Retriever(demo_env.settings.model_copy(update={"best_document_chunks": 3}), vectors, embedder,
                     demo_env.graph).retrieve(question, ["medicine"])
    best, best_alone = read.passages[0], alone.passages[0]
    assert best.chunk_id == best_alone.chunk_id and not best_alone.read_on
    index = vectors.get("medicine")
    document = [index.rows[p] for p in index.document_positions(best.doc_id)]
    assert len(document) == 2 and best.read_on  # every demo document is two chunks
    assert {row.chunk_id for row in document} == {best.chunk_id, *best.read_on}
    assert best.text == join_chunks([row.text for row in document])
    assert best_alone.text in best.text and len(best.text) > len(best_alone.text)
    # the chunk it took in is not a second passage, and the other documents keep their places
    assert not {p.chunk_id for p in read.passages[1:]} & set(best.read_on)
    assert [p.doc_id for p in read.passages] == [p.doc_id for p in alone.passages if p.chunk_id not in best.read_on]
