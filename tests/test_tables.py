"""Tables in text (indexing/tables.py): pipe rows parsed into headers and cells, numbers read from
cells, HTML tables turned into pipe rows, and chunks that keep rows as lines."""

from __future__ import annotations

import hashlib

import pytest

from indexing.chunking import chunk_document
from indexing.corpus import Document, read_corpus, read_html
from indexing.tables import (MAX_ROW_CHARS, header_line_for, is_separator_row, is_table_row, parse_number, parse_tables,
                             pipe_rows)

REPORT = """Results of the year.
TABLE:
 | 2019 | 2018
Cash and cash equivalents | 21,956 | 20,003
Dividend yield | 4.1% | 4.6%
Total revenue | $831.7 | (3.1)

TEXT:
[1] We utilized a new method.

Segment | Amount
Retail | 5"""


def words(text: str) -> int:
    return len(text.split())


def make_doc(text: str) -> Document:
    return Document("report.md", "finance", "Report", text, "report.md")


# --- rows and tables -----------------------------------------------------------------------------

@pytest.mark.parametrize("line,row", [
    ("Cash | 21,956 | 20,003", True), (" | 2019 | 2018", True), ("| a | b |", True), ("|---|:--|", True),
    ("| 2019", True),  # an empty first cell, once cleaning stripped the line
    ("Deferred tax assets |", True), ("Plain prose, no pipes.", False), ("a|b", False), ("|", False), ("", False),
    ("x | " + "y" * MAX_ROW_CHARS, False),  # too long to be a row: bounded work
])
def test_what_is_a_table_row(line, row):
    assert is_table_row(line) is row


def test_separator_rows_are_rows_without_cells():
    assert is_separator_row("|---|:--:|") and is_separator_row(" --- | --- ")
    assert not is_separator_row("Cash | 21,956") and not is_separator_row("a - b | c")


def test_consecutive_rows_form_a_table_whose_first_row_is_the_header():
    first, second = parse_tables(REPORT)
    assert first.header == ("", "2019", "2018")
    assert first.header_line == "| 2019 | 2018"
    assert first.rows == (("Cash and cash equivalents", "21,956", "20,003"), ("Dividend yield", "4.1%", "4.6%"),
                          ("Total revenue", "$831.7", "(3.1)"))
    assert first.row_lines[1] == "Dividend yield | 4.1% | 4.6%"
    assert second.header == ("Segment", "Amount") and second.rows == (("Retail", "5"),)  # a blank line ends a table


def test_markdown_tables_lose_their_frame_and_separator_but_empty_first_cells_stay():
    markdown = parse_tables("| Drug | Dose |\n|---|---|\n| Aspirin | 75 mg |\n| Warfarin | 5 mg |")[0]
    assert markdown.header == ("Drug", "Dose") and markdown.rows == (("Aspirin", "75 mg"), ("Warfarin", "5 mg"))
    # "| June 30, |" looks framed alone; the table is not (its other rows are not), so columns stay aligned
    report = parse_tables("| June 30, |\n| 2019 | 2018\nOther | 1 | 2")[0]
    assert report.header == ("", "June 30,", "") and report.rows[0] == ("", "2019", "2018")


def test_header_lines_continue_into_rows_of_years_and_span_their_columns():
    table = parse_tables("| 2019 | | 2018 |\n| United States | Foreign | United States | Foreign\n"
                         "Deferred tax assets | | | |\nPension obligation | 53.2 | 39.9 | 48.6 | 35.6\n"
                         "Other | 1 | 2 | 3 | 4")[0]
    assert table.header_lines == ("| 2019 | | 2018 |", "| United States | Foreign | United States | Foreign")
    assert table.column_headers() == ((), ("2019", "United States"), ("2019", "Foreign"), ("2018", "United States"),
                                      ("2018", "Foreign"))
    assert table.data_rows("start") == [(("Pension obligation", "53.2", "39.9", "48.6", "35.6"), "Deferred tax assets"),
                                        (("Other", "1", "2", "3", "4"), "Deferred tax assets")]
    # a row of figures is never taken for a header line
    assert parse_tables("| 2019 | 2018\n| 1,200 | 1,100")[0].header_lines == ("| 2019 | 2018",)


def test_a_row_gets_its_tables_header_line():
    text = "Intro.\nItem | 2019\nCash | 5\nDebt | 7\n\nSecond | Value\nRent | 3"
    assert header_line_for(text, "Debt | 7") == "Item | 2019"
    assert header_line_for(text, "  Rent | 3 ") == "Second | Value"
    assert header_line_for(text, "Item | 2019") is None  # the header itself
    assert header_line_for(text, "Intro.") is None and header_line_for(text, "Other | 9") is None
    # a header that continues on the next line comes whole: the first line alone names no year
    report = "| June 30, |\n| 2019 | 2018\nCash | 5 | 6"
    assert header_line_for(report, "Cash | 5 | 6") == "| June 30, |\n| 2019 | 2018"
    assert header_line_for(report, "| 2019 | 2018") == "| June 30, |"


@pytest.mark.parametrize("cell,value", [
    ("21,956", 21956.0), ("$831.7", 831.7), ("(3.1)", -3.1), ("4.1%", 4.1), ("4.1 %", 4.1), ("-5", -5.0),
    ("$(77,328)", -77328.0), ("$ (3.5)", -3.5), ("1,571.7", 1571.7), (".5", 0.5), ("\u22120.3", -0.3), ("0", 0.0),
    ("\u2014", None), ("-", None), ("", None), ("N/A", None), ("94th", None), ("1,2345", None), ("0.1 pts", None),
    ("1" * 65, None),  # a cell over 64 characters is never read
])
def test_numbers_read_from_cells(cell, value):
    assert parse_number(cell) == value


def test_pipe_rows_pad_to_the_widest_row_and_keep_one_column_tables_as_lines():
    assert pipe_rows([["", "2019", "2018"], ["Cash", "5"], ["", ""], ["a|b", "x\n y"]]) == \
        " | 2019 | 2018\nCash | 5 | \na/b | x y | "
    assert pipe_rows([["Just prose in a layout table."], ["More."]]) == "Just prose in a layout table.\nMore."


# --- HTML -----------------------------------------------------------------------------------

HTML = """<html><head><title>Annual report</title></head><body>
<p>Our cash grew.</p>
<table>
  <tr><th></th><th colspan="2">Year ended</th></tr>
  <tr><th></th><th>2019</th><th>2018</th></tr>
  <tr><td>Cash and <b>cash equivalents</b></td><td>21,956</td><td>20,003</td></tr>
  <tr><td>Notes<table><tr><td>inner</td><td>cell</td></tr></table></td><td colspan="2">7</td></tr>
</table>
<table><tr><td>A layout table of one column.</td></tr></table>
<p>After the table.</p>
</body></html>"""


def test_html_tables_become_pipe_rows_one_line_per_tr():
    title, text = read_html(HTML, fallback_title="x")
    assert title == "Annual report"
    lines = [line.strip() for line in text.split("\n") if line.strip()]  # as cleaning leaves them
    assert lines[0] == "Our cash grew."
    assert lines[1:5] == ["| Year ended |", "| 2019 | 2018", "Cash and cash equivalents | 21,956 | 20,003",
                          "Notes inner / cell | 7 |"]
    assert lines[5:] == ["A layout table of one column.", "After the table."]
    table = parse_tables(text)[0]
    assert table.column_headers()[1:] == (("Year ended", "2019"), ("Year ended", "2018"))


def test_a_huge_colspan_counts_as_twenty_columns():
    _, text = read_html('<table><tr><td>a</td><td colspan="99999999">b</td></tr></table>', fallback_title="x")
    assert parse_tables(text)[0].header == ("a", "b", *[""] * 19)


def test_an_html_file_reaches_the_corpus_with_its_rows(tmp_path):
    (tmp_path / "report.html").write_text(HTML)
    document = read_corpus(tmp_path, domain="finance").documents[0]
    assert "Cash and cash equivalents | 21,956 | 20,003" in document.text.split("\n")


# --- chunking -------------------------------------------------------------------------------

TABLE_TEXT = ("Results for the year. The table shows it.\n"
              "Item | 2019 | 2018\n"
              "Inventories . | 1,571.7 | 1,568.6\n"
              "Receivables | 831.7 | 840.4\n"
              "Prepaid expenses | 93.8 | 77.2\n"
              "Other accrued liabilities | 691.6 | 690.5\n"
              "Long-term debt | 1,951.8 | 1,949.3\n"
              "That is all. Nothing else happened.")


def test_rows_stay_lines_and_a_continuation_chunk_repeats_the_header():
    chunks = chunk_document(make_doc(TABLE_TEXT), words, max_tokens=16, overlap_tokens=0)
    assert [c.text for c in chunks] == [
        "Results for the year. The table shows it.\nItem | 2019 | 2018",
        "Item | 2019 | 2018\nInventories . | 1,571.7 | 1,568.6\nReceivables | 831.7 | 840.4",  # ". " kept the row whole
        "Item | 2019 | 2018\nPrepaid expenses | 93.8 | 77.2",
        "Item | 2019 | 2018\nOther accrued liabilities | 691.6 | 690.5",
        "Item | 2019 | 2018\nLong-term debt | 1,951.8 | 1,949.3\nThat is all.",
        "Nothing else happened."]
    assert [c.tokens for c in chunks] == [words(c.text) for c in chunks]  # the header is counted
    assert all(c.tokens <= 16 for c in chunks)


def test_the_header_comes_before_the_overlap_and_shortens_it():
    chunks = chunk_document(make_doc(TABLE_TEXT), words, max_tokens=16, overlap_tokens=6)
    assert chunks[2].text == "Item | 2019 | 2018\nReceivables | 831.7 | 840.4\nPrepaid expenses | 93.8 | 77.2"
    # header (5) + the overlap row (7) + this row (7) would not fit 16: the overlap goes, the header stays
    assert chunks[3].text == "Item | 2019 | 2018\nOther accrued liabilities | 691.6 | 690.5"
    assert chunks[-1].text == "That is all. Nothing else happened."


def test_a_header_that_leaves_no_room_for_the_row_is_left_out():
    chunks = chunk_document(make_doc(TABLE_TEXT), words, max_tokens=9, overlap_tokens=0)
    # header (5) + any row (5 to 7) > 9: each row stands alone rather than lose its chunk
    assert [c.text for c in chunks][1:6] == ["Item | 2019 | 2018", "Inventories . | 1,571.7 | 1,568.6",
                                             "Receivables | 831.7 | 840.4", "Prepaid expenses | 93.8 | 77.2",
                                             "Other accrued liabilities | 691.6 | 690.5"]
    wider = chunk_document(make_doc(TABLE_TEXT), words, max_tokens=12, overlap_tokens=0)
    assert "Item | 2019 | 2018\nOther accrued liabilities | 691.6 | 690.5" in [c.text for c in wider]  # 5 + 7 = 12


def test_text_without_tables_is_chunked_as_before():
    """Sentences joined by spaces, chunk ids unchanged (other indexes depend on them)."""
    text = "First sentence here. Second one follows!\nA heading\nThird sentence, e.g. this one. Fourth."
    chunks = chunk_document(make_doc(text), words, max_tokens=6, overlap_tokens=2)
    assert [c.text for c in chunks] == ["First sentence here. Second one follows!", "A heading Third sentence, e.g.",
                                        "this one. Fourth."]
    digest = hashlib.sha256(b"report.md\x00First sentence here. Second one follows!").hexdigest()[:16]
    assert chunks[0].id == f"report.md#{digest}"


def test_a_header_on_two_lines_is_repeated_whole():
    text = ("| June 30, |\n| 2019 | 2018\nDeferred tax assets | |\nLoss carryforwards | 161,119 | 129,436\n"
            "Capital losses | 155 | 417")
    chunks = chunk_document(make_doc(text), words, max_tokens=14, overlap_tokens=0)
    assert [c.text for c in chunks] == ["| June 30, |\n| 2019 | 2018\nDeferred tax assets | |",
                                        "| June 30, |\n| 2019 | 2018\nLoss carryforwards | 161,119 | 129,436",
                                        "| June 30, |\n| 2019 | 2018\nCapital losses | 155 | 417"]


def test_markdown_rule_rows_stay_in_the_chunk_but_are_not_repeated():
    text = "| Drug | Dose |\n|---|---|\n| Aspirin | 75 mg |\n| Warfarin | 5 mg |\n| Heparin | 5000 units |"
    chunks = chunk_document(make_doc(text), words, max_tokens=17, overlap_tokens=0)
    assert [c.text for c in chunks] == ["| Drug | Dose |\n|---|---|\n| Aspirin | 75 mg |",
                                        "| Drug | Dose |\n| Warfarin | 5 mg |\n| Heparin | 5000 units |"]
