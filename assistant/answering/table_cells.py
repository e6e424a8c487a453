"""Where the cells a question asks for are: the tables of evidence passages read as grids, the
row whose label the question's words name, and the columns its years or words name.

A row is named when the question holds most of its label's content words (crude stems, with a
little slack: "operating" meets "operation"); the label of the row without values above it, its
section ("Deferred tax assets" over "Other"), breaks ties between rows of the same label. A
column is named by a year its header holds (the date-only column first: "December 31, 2019"
before "% change 2019") or by all the words of its lowest header cell ("1-3 years"). Two rows
that fit equally, or a year two columns hold alike, name nothing: the caller answers nothing.

The chunks of one table (same passage title, same header: chunking repeats it) are read as one
grid, so a row's rival in the next chunk is seen, and rows the chunks' overlap repeats count once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from adapters.prompts import EvidenceItem
from assistant.answering.attribution import content_words, stem
from indexing.tables import parse_tables, years_in
from indexing.words import WORD

MAX_ROWS, MAX_COLUMNS = 200, 20  # per evidence item
MAX_PASSAGE_CHARS = 20_000
MIN_LABEL_COVERAGE = 2 / 3  # of a row label's content words, the share the question must name
FUZZY_PREFIX = 5  # "operating" meets "operation": stems this long or longer, one starting the other
# The words of a column named by a date, with its unit: "Year Ended December 31, 2018 (dollars in thousands)".
_DATE_STEMS = content_words("year years ended ending fiscal fy as of at quarter quarters month months week weeks "
                            "january february march april may june july august september october november december "
                            "jan feb mar apr jun jul aug sep sept oct nov dec dollars thousands millions billions "
                            "usd eur gbp unaudited")

# The words of a header cell that only gives the unit its cells are in: "(U.S. $ in thousands)", "%", "£m".
_UNIT_WORDS = frozenset("u s us usd dollar dollars thousand thousands million millions billion billions m bn k eur "
                        "euro euros gbp pound pounds rmb cad aud jpy yen percent percentage pts points in of 000 "
                        "000s".split())


@dataclass(frozen=True)
class Grid:
    columns: tuple[str, ...]  # each column's name (its header cells joined); 0 is the labels'
    leaves: tuple[str, ...]  # each column's lowest header cell ("1-3 years" under "Payments due"): what words name
    shown: tuple[str, ...]  # how an answer names each column: its year, or its lowest cell, when that tells it apart
    rows: tuple[tuple[str, ...], ...]  # data rows, label first, as wide as ``columns``
    sections: tuple[str, ...]  # per row, the label of the row without values above it ("Deferred tax assets")
    sources: tuple[int, ...]  # per row, the evidence item it was read from


def grids(passages: Sequence[EvidenceItem]) -> list[Grid]:
    """The passages' tables, the chunks of one table merged; a repeated row is read from the
    first passage that holds it (with its section, when a later chunk knows it better)."""
    merged: dict[tuple[str, tuple[tuple[str, ...], ...]], dict[tuple[str, ...], tuple[str, int]]] = {}
    for item in passages:
        for headers, body in _tables(item.text[:MAX_PASSAGE_CHARS]):
            seen = merged.setdefault((item.title, headers), {})
            for row, section in body:
                before = seen.get(row)
                if before is None or before[0] == " ".join(headers[0]):  # a chunk's first rows lack their section
                    seen[row] = (section, before[1] if before else item.number)
    found = []
    for (_, headers), seen in merged.items():
        columns = tuple(" ".join(cells) for cells in headers)
        leaves = tuple(_leaf(cells) for cells in headers)
        found.append(Grid(columns, leaves, _shown(columns, leaves), tuple(seen), tuple(s for s, _ in seen.values()),
                          tuple(n for _, n in seen.values())))
    return found


def _tables(text: str) -> list[tuple[tuple[tuple[str, ...], ...], list[tuple[tuple[str, ...], str]]]]:
    """Each table's column headers and its data rows (label first, cut to ``MAX_COLUMNS``) with
    the section above each, within the row budget."""
    tables, budget = [], MAX_ROWS
    for table in parse_tables(text):
        width = min(len(table.header), MAX_COLUMNS)
        headers = table.column_headers()[:width]
        body = [(row[:width], section) for row, section in table.data_rows(" ".join(headers[0]))[:budget]]
        budget -= len(table.rows)
        if width >= 2 and body:
            tables.append((headers, body))
        if budget <= 0:
            break
    return tables


def _leaf(cells: tuple[str, ...]) -> str:
    """The lowest header cell that names the column: a unit alone under it ("(U.S. $ in
    thousands)" under "Amount", "%" under "2017") only says how its cells read."""
    named = [cell for cell in cells if not _is_unit(cell)]
    return named[-1] if named else (cells[-1] if cells else "")


def _is_unit(cell: str) -> bool:
    return all(word.lower() in _UNIT_WORDS for word in WORD.findall(cell))


def _shown(columns: tuple[str, ...], leaves: tuple[str, ...]) -> tuple[str, ...]:
    years = [years_in(column) for column in columns]
    single, leaf_count = Counter(found[0] for found in years if len(found) == 1), Counter(leaves)
    return tuple(found[0] if len(found) == 1 and single[found[0]] == 1 else
                 leaf if not found and leaf and leaf_count[leaf] == 1 else column
                 for found, column, leaf in zip(years, columns, leaves))


# --- rows --------------------------------------------------------------------------------------

def covered(word: str, words) -> bool:
    if word in words:
        return True
    return len(word) >= FUZZY_PREFIX and any(
        len(other) >= FUZZY_PREFIX and (other.startswith(word) or word.startswith(other)) for other in words)


def label_words(label: str) -> set[str]:
    """A row label's content words, without footnote marks ("Capital expenditures 1"); a number
    that opens the label names the row ("14 nanometers and under", "2 to 5 years"); a label of
    stop words only ("Other") keeps them."""
    opening = WORD.match(label.strip())
    first = opening.group() if opening and opening.group().isdigit() else None
    words = {word for word in content_words(label) if not (word.isdigit() and len(word) < 4 and word != first)}
    return words or {stem(word) for word in WORD.findall(label.lower()) if not word.isdigit()}


def row_score(grid: Grid, row: int, asked, ignored: set[str], strict: bool = True) -> tuple[int, int, float] | None:
    """(words named, those of them not ``ignored``, share of the label named), the section's
    words named counting too; None unless ``asked`` names most of the label itself and, when
    ``strict``, a word of it not ignored: "Total" alone is no row a whole question names."""
    words = label_words(grid.rows[row][0])
    matched = {word for word in words if covered(word, asked)}
    if not words or len(matched) < MIN_LABEL_COVERAGE * len(words) or (strict and not matched - ignored):
        return None
    context = {word for word in label_words(grid.sections[row]) - words if covered(word, asked)}
    named = matched | context
    return len(named), len(named - ignored), len(matched) / len(words)


def row_words(grid: Grid, row: int, asked) -> set[str]:
    """The words of a row's label and section that ``asked`` names."""
    return {w for w in label_words(f"{grid.rows[row][0]} {grid.sections[row]}") if covered(w, asked)}


def best_row(grid: Grid, asked, ignored: set[str], strict: bool = True) -> tuple[int, tuple[int, int, float]] | None:
    """The row whose label the words cover best (by ``row_score``); None when none does or two tie."""
    scored = [(score, i) for i in range(len(grid.rows))
              if (score := row_score(grid, i, asked, ignored, strict)) is not None]
    best = max((score for score, _ in scored), default=None)
    ties = [i for score, i in scored if score == best]
    return (ties[0], best) if len(ties) == 1 else None


# --- columns -----------------------------------------------------------------------------------

def named_columns(grid: Grid, words: dict[str, int], years: Sequence[tuple[str, bool]], op: str,
                  plain: dict[str, int] | None = None) -> list[int] | None:
    """The value columns named by ``years`` ((year, only inside a range)) or, when there are none,
    by ``words`` (stem -> where the question says it), in the question's order; else the ones
    the operation implies. None when a year has no single column."""
    named = word_named(grid, words, plain)
    chosen: list[int] = []
    for year, optional in years:
        candidates = _year_columns(grid, year)
        if len(candidates) > 1:  # "2019 actual", "2019 target": the words say which
            candidates = [j for j in named if j in candidates]
        if len(candidates) != 1:
            if optional and not candidates:
                continue
            return None
        chosen += [j for j in candidates if j not in chosen]
    if not years:
        chosen = named
    if op in ("change", "pct_change") and len(chosen) == 1 and len(years) == 1:
        chosen = _with_year_before(grid, chosen[0], years[0][0])  # "the change in X in 2019"
    return chosen or _implied(grid, op) or None


def _year_columns(grid: Grid, year: str) -> list[int]:
    """Columns of that year: those of it alone first ("2019" before "2019 vs 2018 % change"), and
    of those the ones named by a date alone ("December 31, 2019" before "% Change 2019")."""
    found = [j for j in range(1, len(grid.columns)) if year in years_in(grid.columns[j])]
    alone = [j for j in found if len(years_in(grid.columns[j])) == 1]
    dates = [j for j in alone if all(w in _DATE_STEMS or (w.isdigit() and len(w) <= 4)
                                     for w in content_words(grid.columns[j]))]
    return dates or alone or found


def word_named(grid: Grid, words: dict[str, int], plain: dict[str, int] | None = None) -> list[int]:
    """Columns whose lowest header cell's words (years aside, other numbers kept: "1-3 years")
    ``words`` all hold, in the order the question says them. A cell of stop words only
    ("Amount", "Other") is named by those words exactly, when ``plain`` (every word's stem ->
    where the question says it) holds them."""
    named = []
    for j in range(1, len(grid.columns)):
        own = {w for w in content_words(grid.leaves[j]) if not years_in(w)}
        if own and all(covered(w, words) for w in own):
            named.append((min(where for word, where in words.items() if covered(word, own)), j))
        elif not own and plain:
            bare = {stem(w) for w in WORD.findall(grid.leaves[j].lower()) if not w.isdigit()}
            if bare and bare <= plain.keys():
                named.append((min(plain[w] for w in bare), j))
    return [j for _, j in sorted(named)]


def _with_year_before(grid: Grid, column: int, year: str) -> list[int]:
    before = _year_columns(grid, str(int(year) - 1))
    return [before[0], column] if len(before) == 1 else [column]


def _implied(grid: Grid, op: str) -> list[int]:
    """No column named: the only value column; or, for a change or an average, the year columns."""
    if len(grid.columns) == 2:
        return [1]
    dated = [j for j in range(1, len(grid.columns)) if len(years_in(grid.columns[j])) == 1]
    if op in ("change", "pct_change"):
        return dated if len(dated) == 2 else []
    return dated if op in ("average", "sum") and len(dated) >= 2 else []


def dated(grid: Grid, columns: Sequence[int]) -> bool:
    """Whether each column is of one year, a different one."""
    years = [years_in(grid.columns[j]) for j in columns]
    return all(len(found) == 1 for found in years) and len({found[0] for found in years}) == len(years)
