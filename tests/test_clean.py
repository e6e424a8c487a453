"""Cleaning and deduplication (pure logic, no models)."""

from __future__ import annotations

from indexing.clean import clean_documents, normalise_text
from indexing.corpus import Document

BASE = ("The Federal Reserve was created by the Federal Reserve Act of 1913. It sets monetary policy for the "
        "United States, supervises banks and maintains the stability of the financial system. Its Board of "
        "Governors sits in Washington, and twelve regional banks serve the districts of the country.")


def doc(doc_id, text, domain="finance"):
    return Document(doc_id, domain, doc_id, text, doc_id)


def test_normalise_text_unicode_whitespace_and_controls():
    raw = "ﬁnance\u00a0\u00a0rates\t\tand\u200b  more\r\n\r\n\r\n\r\nnext\x07 line  "
    assert normalise_text(raw) == "finance rates and more\n\nnext line"


def test_exact_and_near_duplicates_are_dropped_and_counted():
    near = BASE.replace("twelve regional banks", "twelve regional reserve banks")
    docs = [doc("a", BASE), doc("b", "  " + BASE.replace(" ", "  ") + "\n"), doc("c", near),
            doc("d", "The Bank of England was founded in 1694 and is the central bank of the United Kingdom."),
            doc("e", "   \n\t "), doc("a-other-domain", BASE, domain="law")]
    result = clean_documents(docs, near_duplicate_threshold=0.8)
    assert [d.id for d in result.documents] == ["a", "d", "a-other-domain"]
    assert result.empty == ["e"]
    kinds = {(d.doc_id, d.duplicate_of, d.kind) for d in result.duplicates}
    assert kinds == {("b", "a", "exact"), ("c", "a", "near")}
    assert result.exact_duplicates == 1 and result.near_duplicates == 1


def test_similar_but_different_documents_are_kept():
    other = ("The European Central Bank was created in 1998. It sets interest rates for the euro area and "
             "supervises the largest banks of the member states from its seat in Frankfurt.")
    result = clean_documents([doc("fed", BASE), doc("ecb", other)])
    assert len(result.documents) == 2 and result.duplicates == []
