"""Table answers (assistant/answering/table_answers.py): the cells a question names, or the value computed
from them, as one cited sentence; and nothing at all when the table does not say for sure."""

from __future__ import annotations

import pytest

from adapters.prompts import EvidenceItem
from assistant.answering.table_answers import format_number, table_lead

REPORT = """TABLE:
 | 2019 | 2018
Cash and cash equivalents | 21,956 | 20,003
Dividend yield | 4.1% | 4.6%
Gross deferred tax assets | 124,387 | 131,128
Accrued taxes | $8,002 | $6,268
Interest expense | (717) | (596)

TEXT:
[1] The company's cash position improved while the dividend yield fell. Deferred tax assets and accrued
taxes are shown above."""

REGIONS = """TABLE:
Region | 2019 | 2018
Europe | 1,250 | 1,100
Asia | 830 | 760
Americas | 2,015 | 1,900
Total | 4,095 | 3,760

TEXT:
[1] Revenue by region: Europe, Asia and the Americas."""

ITEMS = [EvidenceItem(1, "fact", "Dividend yield – measures → cash returned"),
         EvidenceItem(3, "passage", REPORT, "Annual report excerpt"),
         EvidenceItem(4, "passage", REGIONS, "Revenue by region")]


def lead(question: str, items=ITEMS):
    return table_lead(question, items)


def test_a_lookup_gives_the_cell_with_its_column_and_citation():
    found = lead("What was the dividend yield in 2019?")
    assert found.text == "Dividend yield: 4.1% in 2019 [3]."
    assert (found.numbers, found.label, found.kind, found.computed) == ((3,), None, "table", ("4.1%",))


def test_respective_values_come_in_the_order_asked():
    assert lead("What were the respective dividend yields in 2018 and 2019?").text == \
        "Dividend yield: 4.6%, 4.1% in 2018 and 2019 respectively [3]."
    assert lead("What was the dividend yield in 2019 and 2018 respectively?").computed == ("4.1%", "4.6%")


@pytest.mark.parametrize("question,text,computed", [
    ("What was the percentage change in gross deferred tax assets between 2018 and 2019?",  # (124387-131128)/131128
     "The percentage change in Gross deferred tax assets from 2018 (131,128) to 2019 (124,387) was -5.14% [3].",
     "-5.14%"),
    ("What was the % change in interest expense from 2018 to 2019?",  # (-717 - -596) / -596: accountants' negatives
     "The percentage change in Interest expense from 2018 (596) to 2019 (717) was 20.3% [3].", "20.3%"),
    ("What was the change in accrued taxes from 2019 to 2018?",  # new − old, the later year being new
     "The change in Accrued taxes from 2018 ($6,268) to 2019 ($8,002) was 1734 [3].", "1734"),
    ("What was the increase in accrued taxes in 2019?",  # one year named: from the year before
     "The change in Accrued taxes from 2018 ($6,268) to 2019 ($8,002) was 1734 [3].", "1734"),
    ("What was the change in the dividend yield from 2018 to 2019?",  # percentages stay percentages
     "The change in Dividend yield from 2018 (4.6%) to 2019 (4.1%) was -0.5% [3].", "-0.5%"),
    ("What was the average cash and cash equivalents in 2018 and 2019?",
     "The average of Cash and cash equivalents over 2018 (20,003) and 2019 (21,956) was 20979.5 [3].", "20979.5"),
    ("What was the average cash and cash equivalents?",  # no year named: the year columns
     "The average of Cash and cash equivalents over 2019 (21,956) and 2018 (20,003) was 20979.5 [3].", "20979.5"),
    ("What was the total interest expense in 2018 and 2019?",
     "The total of Interest expense over 2018 (596) and 2019 (717) was -1313 [3].", "-1313"),
    ("What was the difference between Europe and Asia in 2019?",
     "The difference between Europe (1,250) and Asia (830) in 2019 was 420 [4].", "420"),
    ("What was the ratio of Europe to Asia in 2018?", "The ratio of Europe (1,100) to Asia (760) in 2018 was 1.45 [4].",
     "1.45"),
    ("What was the percentage of Europe out of the total in 2019?",  # 1250 / 4095
     "Europe (1,250) as a percentage of Total (4,095) in 2019 was 30.53% [4].", "30.53%"),
    ("What was the proportion of Asia in the total in 2018?",  # 760 / 3760: a fraction
     "Asia (760) as a proportion of Total (3,760) in 2018 was 0.2 [4].", "0.2"),
    ("What was the total revenue from Europe and Asia in 2019?",
     "The total of Europe (1,250) and Asia (830) in 2019 was 2080 [4].", "2080"),
    ("What was the average revenue from Europe and Asia in 2018?",
     "The average of Europe (1,100) and Asia (760) in 2018 was 930 [4].", "930"),
])
def test_each_operation_gives_its_exact_value_with_the_cells_it_used(question, text, computed):
    found = lead(question)
    assert found is not None, question
    assert (found.text, found.computed[0], found.numbers) == (text, computed, (int(text[-3]),))
    if found.text.count("(") == 2 and " from " not in found.text and " over " not in found.text:
        # two rows: attribution compares each row alone, so the cells count as given beside the value
        assert len(found.computed) == 3 and all(cell.strip("()$") in found.text for cell in found.computed[1:])


def test_a_footnote_mark_is_not_part_of_a_rows_name():
    from assistant.answering.table_wording import row_label as _label

    assert _label("Total(2)") == "Total" and _label("Daina Middleton (5)") == "Daina Middleton"
    assert _label("Inventories .") == "Inventories" and _label("Revenue (2019)") == "Revenue (2019)"


def test_two_rows_named_one_after_the_other_are_both_read():
    assert lead("What was the revenue from Europe and Asia in 2019?").text == "Europe: 1,250 and Asia: 830 in 2019 [4]."


@pytest.mark.parametrize("question", [
    "What was the inventory in 2019?",  # no row
    "What was the dividend yield in 2017?",  # no such column
    "Which region had the higher revenue in 2019?",  # a name, not a cell
    "Which year had the higher and the lower dividend yield?",  # both directions: unclear
    "Why did the dividend yield fall in 2019?",  # a reason
    "Was the dividend yield higher in 2018?",  # a yes/no question
    "What was the dividend yield?",  # two columns and none named
    "What was the average change in the dividend yield from 2018 to 2019?",  # two operations
    "What was the change in cash and cash equivalents as a percentage of revenue in 2019?",  # unclear: no guess
    "What is the average interest rate on the notes issued in 2019?",  # a row sharing one word is not the answer
])
def test_no_answer_when_the_table_does_not_say_for_sure(question):
    assert lead(question) is None


def test_two_rows_that_fit_equally_give_no_answer_but_a_section_tells_them_apart():
    twice = """Item | 2019 | 2018
Deferred tax assets | |
Other | 59,584 | 57,461
Deferred tax liabilities | |
Other | (72,599) | (82,668)"""
    items = [EvidenceItem(2, "passage", twice, "Deferred taxes")]
    assert table_lead("What was other in 2019?", items) is None
    found = table_lead("What were the other deferred tax liabilities in 2019?", items)
    assert found.text == "Other (Deferred tax liabilities): (72,599) in 2019 [2]."


def test_equally_good_rows_in_two_passages_that_disagree_give_no_answer():
    other = EvidenceItem(5, "passage", "Item | 2019\nDividend yield | 3.9%", "Another company's report")
    assert lead("What was the dividend yield in 2019?", [*ITEMS, other]) is None


def test_the_chunks_of_one_table_are_read_as_one_and_cited_where_each_row_is():
    first = "Region | 2019 | 2018\nEurope | 1,250 | 1,100\nAsia | 830 | 760"
    second = "Region | 2019 | 2018\nAsia | 830 | 760\nAmericas | 2,015 | 1,900"  # the overlap repeats Asia
    items = [EvidenceItem(6, "passage", second, "Revenue by region"),
             EvidenceItem(7, "passage", first, "Revenue by region")]
    found = table_lead("What was the difference between Americas and Europe revenue in 2018?", items)
    assert found.text == "The difference between Americas (1,900) and Europe (1,100) in 2018 was 800 [6, 7]."
    assert found.numbers == (6, 7)
    assert table_lead("What was the revenue from Asia in 2019?", items).numbers == (6,)  # the first that holds it


def test_facts_and_passages_without_tables_are_not_read():
    assert lead("What was the dividend yield in 2019?", [ITEMS[0]]) is None
    prose = EvidenceItem(2, "passage", "The dividend yield was 4.1% in 2019 and 4.6% in 2018.", "Report")
    assert lead("What was the dividend yield in 2019?", [prose]) is None


def test_a_column_is_named_by_its_words_when_no_year_is_asked():
    debts = EvidenceItem(8, "passage", """ | | Payments due by period | |
 | Total | Less than 1 year | 1-3 years | After 3 years
Long-term debt obligations | 1,708,916 | 65,087 | 115,141 | 861,443
Lease obligations | 3,937 | 879 | 1,758 | 40""", "Contractual obligations")
    found = table_lead("What is the difference in long-term debt obligations between 'less than 1 year' and "
                       "'1-3 years'?", [debts])
    assert found.text == ("The difference in Long-term debt obligations between Less than 1 year (65,087) and "
                          "1-3 years (115,141) was -50054 [8].")


def test_the_work_is_bounded_for_huge_tables():
    rows = "\n".join(f"Row {i} | {i} | {i + 1}" for i in range(5_000))
    item = EvidenceItem(9, "passage", "Item | 2019 | 2018\n" + rows + "\nTarget row | 1 | 2", "Big")
    assert table_lead("What was the target row in 2019?", [item]) is None  # past the 200 rows read
    assert table_lead("What was row 7 in 2019?", [item]) is None  # "Row 7": its label word is a footnote-sized number


@pytest.mark.parametrize("value,text", [(20.30, "20.3"), (15090.0, "15090"), (-5.1432, "-5.14"), (-0.001, "0"),
                                        (72471.3333, "72471.33"), (0.5, "0.5"), (100.0, "100")])
def test_numbers_are_rounded_to_two_decimals_without_trailing_zeros(value, text):
    assert format_number(value) == text


# --- which year's cell is the larger; labels opening with a number; unit-only header cells -------

@pytest.mark.parametrize("question,text", [
    ("Which year had the higher dividend yield?", "Dividend yield was higher in 2018 (4.6%) than in 2019 (4.1%) [3]."),
    ("In which year was Interest expense lower?", "Interest expense was lower in 2019 (717) than in 2018 (596) [3]."),
    ("In which year was cash and cash equivalents larger?",
     "Cash and cash equivalents was larger in 2019 (21,956) than in 2018 (20,003) [3]."),
])
def test_which_year_a_rows_cell_is_the_larger_or_the_smaller(question, text):
    found = lead(question)
    assert found.text == text and found.kind == "table"


def test_which_year_among_three_names_the_others_beside_it():
    income = EvidenceItem(2, "passage", "Item | 2019 | 2018 | 2017\nInterest income | 5,318 | 4,784 | 2,650",
                          "Other income")
    assert table_lead("Which year has the highest interest income?", [income]).text == \
        "Interest income was highest in 2019 (5,318), against 4,784 in 2018 and 2,650 in 2017 [2]."
    tied = EvidenceItem(2, "passage", "Item | 2019 | 2018\nInterest income | 5,318 | 5,318", "Other income")
    assert table_lead("Which year has the highest interest income?", [tied]) is None  # a tie: no year


def test_a_number_opening_a_label_names_the_row():
    mix = EvidenceItem(6, "passage", """ | Years Ended December 31, |
Process Technologies | 2017 | 2018
 | % | %
14 nanometers and under | 0.9 | 2.6
28 nanometers | 16.2 | 12.6""", "Product mix")
    assert table_lead("What was the percentage of 14 nanometers and under in 2017?", [mix]).text == \
        "14 nanometers and under: 0.9 in 2017 [6]."
    assert table_lead("What was the percentage of 28 nanometers in 2018?", [mix]).text == "28 nanometers: 12.6 in 2018 [6]."


def test_a_unit_under_a_column_name_leaves_the_name_to_name_it():
    shares = EvidenceItem(3, "passage", """ | Number of Shares | Amount
 | | (U.S. $ in thousands)
Details | |
Balance as of June 30, 2017 | 91,979,704 | $9,198
Exercise of share options | 1,902,084 | 190""", "Movements in share capital")
    assert table_lead("What is the amount for Balance as of June 30, 2017?", [shares]).text == \
        "Balance as of June 30, 2017: $9,198 (Amount) [3]."
    assert table_lead("What is the number of shares for Balance as of June 30, 2017?", [shares]).text == \
        "Balance as of June 30, 2017: 91,979,704 (Number of Shares) [3]."
