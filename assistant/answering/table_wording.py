"""How table cells read in an answer's sentence: a computed number without separators, a cell
beside its name in brackets, a row's label without its footnote mark, the columns a list of
values comes from. Words only; which cells answer is assistant/answering/table_answers.py's business."""

from __future__ import annotations

from typing import Sequence

from assistant.answering.table_cells import Grid, label_words
from indexing.tables import years_in


def format_number(value: float) -> str:
    """Two decimals at most, no trailing zeros, no thousands separators (a computed value is not a
    cell, and "72,471.33" reads as three numbers to a word-level comparison): 15090.0 → "15090",
    -5.1432 → "-5.14"."""
    text = f"{round(value, 2):.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def bracketed(cell: str) -> str:
    """A cell shown beside its name: "(6,268)"; an accountant's negative "(596)" already is."""
    return cell if cell.startswith("(") and cell.endswith(")") else f"({cell})"


def row_label(cell: str) -> str:
    """The row's name as a sentence shows it: without trailing dots or a footnote mark ("Total(2)")."""
    label = cell.strip().rstrip(" .:")
    opening = label.rfind("(")
    if label.endswith(")") and 0 < opening and label[opening + 1:-1].isdigit() and len(label) - opening <= 4:
        label = label[:opening].rstrip()
    return label


def label_in_section(grid: Grid, row: int, used: set[str]) -> str:
    """The row's label, with its section when the question named the section's words too:
    "AMER (Operating income (loss))"."""
    label, section = row_label(grid.rows[row][0]), row_label(grid.sections[row])
    extra = label_words(section) - label_words(label)
    return f"{label} ({section})" if extra and extra & used else label


def columns_named(grid: Grid, columns: Sequence[int]) -> str:
    """Where the values of a list are: "in 2018 and 2019", or "(As Reported and Adjustments)"."""
    names = [grid.shown[j] or "the value column" for j in columns]
    shown = listed(names)
    return f"in {shown}" if all(years_in(name) for name in names) else f"({shown})"


def where_shown(column: str) -> str:
    """How a value's column reads after it: " in 2019", " (As Reported)", or nothing."""
    if not column:
        return ""
    return f" in {column}" if years_in(column) else f" ({column})"


def listed(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
