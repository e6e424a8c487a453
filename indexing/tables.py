"""Tables in text: pipe rows ("Cash | 21,956 | 20,003", or markdown "| Cash | 21,956 |"), parsed
into a header and rows, and the numbers their cells hold.

A table is a run of consecutive pipe rows; its first row is the header (markdown separator rows
such as ``|---|:--|`` are rows that carry no cells). Cleaning strips every line, so an empty first
cell (" | 2019 | 2018") and a markdown frame ("| a | b |") look alike on one line: a table is
read as framed only when every one of its rows is, which keeps its columns aligned either way.
Annual reports often head a table with more than one line (" | June 30, |" over " | 2019 |
2018"): the rows right under the header that hold no figures but years continue it
(``Table.header_lines``), and a row without values ("Deferred tax assets | |") opens a section
for the rows below it (``Table.data_rows``). HTML tables become such rows in indexing/corpus.py
(``pipe_rows``).

Pure text and bounded: a line longer than ``MAX_ROW_CHARS`` is never a row, a cell longer than
``MAX_NUMBER_CHARS`` is never a number, and every pass is linear in the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

MAX_ROW_CHARS = 4_000
MAX_NUMBER_CHARS = 64
MAX_HEADER_LINES = 3  # the first row and up to two more that continue it ("| 2019 | 2018" under "| June 30, |")
# Digits grouped by thousands, or plain, with an optional fraction; every repeat bounded or possessive.
_NUMBER = re.compile(r"(?:\d{1,3}(?:,\d{3})++|\d++)(?:\.\d++)?|\.\d++")
_YEAR = re.compile(r"(?<!\d)(?:19|20)\d\d(?!\d)")
_CURRENCY = "$€£¥ "
_MINUS = ("-", "\u2212")  # hyphen-minus, minus sign ("–" and "—" alone mean "none" in reports)


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]  # the first row's cells
    rows: tuple[tuple[str, ...], ...]  # the other rows' cells, in order
    header_line: str
    row_lines: tuple[str, ...]  # the other rows as written (stripped), one per entry of ``rows``

    @property
    def header_lines(self) -> tuple[str, ...]:
        """The header and the rows right under it that continue it: no number but years, and an
        empty first cell or a date (" | June 30, |" then " | 2019 | 2018"; "Years | July 27, 2019")."""
        lines = [self.header_line]
        for cells, line in zip(self.rows, self.row_lines):
            if len(lines) == MAX_HEADER_LINES or not _continues_header(cells):
                break
            lines.append(line)
        return tuple(lines)

    def header_above(self, index: int) -> str:
        """The header lines above row ``index``, one per line: all of them, or those before it
        when the row itself continues the header."""
        lines = self.header_lines
        return "\n".join(lines[: index + 1] if index + 1 < len(lines) else lines)

    def data_rows(self, first_section: str = "") -> list[tuple[tuple[str, ...], str]]:
        """The rows under the header lines that hold a value, each with its section: the label
        of the last row above it without values ("Deferred tax assets | |"), else
        ``first_section``. Rows not as wide as the header are left out: their cells may sit
        under other columns."""
        found, section = [], first_section
        for cells in self.rows[len(self.header_lines) - 1:]:
            if len(cells) != len(self.header):
                continue
            if any(cells[1:]):
                found.append((cells, section))
            elif cells[0]:
                section = cells[0]
        return found

    def column_headers(self) -> tuple[tuple[str, ...], ...]:
        """Each column's cells in the header lines, top to bottom, empty ones left out. A cell
        over empty ones that have a name below ("2019" over "United States | Foreign") heads
        those columns too."""
        lines = [self.header, *self.rows[: len(self.header_lines) - 1]]
        names: list[list[str]] = [[] for _ in self.header]
        for depth, cells in enumerate(lines):
            spanning = ""
            for j in range(len(self.header)):
                cell = cells[j] if j < len(cells) else ""
                below = any(j < len(deeper) and deeper[j] for deeper in lines[depth + 1:])
                spanning = cell or (spanning if j > 1 and below else "")
                if spanning:
                    names[j].append(spanning)
        return tuple(tuple(name) for name in names)


def is_table_row(line: str) -> bool:
    if len(line) > MAX_ROW_CHARS:
        return False
    stripped = line.strip()
    # An edge pipe alone is enough: "| 2019" is a row whose first cell is empty, once cleaning stripped it.
    return " | " in stripped or (len(stripped) >= 2 and "|" in (stripped[0], stripped[-1]))


def is_separator_row(line: str) -> bool:
    """A markdown rule row: only pipes, dashes, colons and spaces, with at least one dash."""
    stripped = line.strip()
    return "-" in stripped and "|" in stripped and not stripped.strip("|-: ")


def parse_tables(text: str) -> list[Table]:
    return [table for _, table in split_tables(text) if table is not None]


def split_tables(text: str) -> list[tuple[str, Table | None]]:
    """The text cut into runs of prose (text, None) and tables (their lines, the table). Prose
    runs are the text's own lines joined back, so a text without tables comes back unchanged."""
    runs: list[tuple[str, Table | None]] = []
    prose: list[str] = []
    rows: list[str] = []
    for line in text.split("\n"):
        if is_table_row(line):
            if prose:
                runs.append(("\n".join(prose), None))
                prose = []
            rows.append(line.strip())
            continue
        if rows:
            runs.append(_table_run(rows))
            rows = []
        prose.append(line)
    if rows:
        runs.append(_table_run(rows))
    if prose:
        runs.append(("\n".join(prose), None))
    return runs


def _table_run(lines: list[str]) -> tuple[str, Table | None]:
    kept = [line for line in lines if not is_separator_row(line)]
    if not kept:
        return "\n".join(lines), None
    framed = all(line[0] == "|" and line[-1] == "|" and len(line) >= 3 for line in kept)
    cells = [split_cells(line, framed) for line in kept]
    return "\n".join(lines), Table(cells[0], tuple(cells[1:]), kept[0], tuple(kept[1:]))


def split_cells(line: str, framed: bool = False) -> tuple[str, ...]:
    """A row's cells, stripped; ``framed``: the row opens and closes with a pipe that holds no cell."""
    parts = [part.strip() for part in line.strip().split("|")]
    return tuple(parts[1:-1] if framed and len(parts) >= 3 else parts)


def header_line_for(text: str, line: str) -> str | None:
    """The header line of the table ``line`` is a row of in ``text`` (with the lines that
    continue it, one per line: " | June 30, |" alone names no year); None when it is not a row
    there, or is the header itself."""
    if not is_table_row(line):
        return None
    wanted = line.strip()
    for table in parse_tables(text):
        if wanted in table.row_lines:
            return table.header_above(table.row_lines.index(wanted))
    return None


def parse_number(cell: str) -> float | None:
    """The number a cell states: "21,956" → 21956, "$831.7" → 831.7, "(3.1)" → -3.1 (accountants'
    negative), "4.1%" → 4.1, "-5" → -5; None for "—", "" or anything else."""
    text = cell.strip()
    if not text or len(text) > MAX_NUMBER_CHARS:
        return None
    text = text.removesuffix("%").strip(_CURRENCY)
    negative = len(text) >= 2 and text[0] == "(" and text[-1] == ")"
    if negative:
        text = text[1:-1].strip(_CURRENCY)
    if text.startswith(_MINUS):
        negative, text = not negative, text[1:].strip(_CURRENCY)
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text.replace(",", ""))
    return -value if negative else value


def years_in(text: str) -> list[str]:
    """Four-digit years (1900-2099) as written, in order."""
    return _YEAR.findall(text)


def _continues_header(cells: tuple[str, ...]) -> bool:
    values = [cell for cell in cells[1:] if cell]
    if not values or any(parse_number(cell) is not None and not _YEAR.fullmatch(cell) for cell in values):
        return False
    return not cells[0] or any(_YEAR.search(cell) for cell in values)


def pipe_rows(rows: Sequence[Sequence[str]]) -> str:
    """Rows of cell texts as pipe rows, one line each, padded to the widest row so columns stay
    aligned; rows without text are dropped. A table of one column is layout, not data: its
    cells come back as plain lines."""
    cleaned = [[" ".join(cell.split()).replace("|", "/") for cell in row] for row in rows]  # a pipe would split a cell
    cleaned = [row for row in cleaned if any(row)]
    width = max((len(row) for row in cleaned), default=0)
    if width < 2:
        return "\n".join(cell for row in cleaned for cell in row if cell)
    return "\n".join(" | ".join(row + [""] * (width - len(row))) for row in cleaned)
