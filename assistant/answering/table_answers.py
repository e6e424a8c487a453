"""Answers read from a table: the cells a question asks for, or one value computed from them.

"What were the respective dividend yields in 2018 and 2019?" names a row (the question holds most
of the words of its label, the first cell) and columns (the years, or all the header words, it
names); the answer is those cells in the order asked, cited: "Dividend yield: 4.6% in 2018 and
4.1% in 2019 [7]." Words that ask for arithmetic turn the cells into one value, shown with the
cells it came from: "percentage change" ((new − old) / old × 100, new being the later year),
"change"/"increase"/"decrease" (new − old), "difference between A and B" (A − B), "average",
"total", "ratio of A to B", "percentage of A out of B" (A / B × 100), "proportion of A in B"
(A / B: a proportion is a fraction). A and B are two rows when a join word ("and", "out of")
splits the question into two parts that each name a row, else two columns of one row. "Which
year had the higher X?" compares X's cells across the year columns and names the year, with the
cells: "X was higher in 2018 (48,762) than in 2019 (47,500)".

Unsure means no answer: no label mostly covered by the question, two rows that fit equally, a
year the header lacks, a cell that is not a number, words that ask for two operations, question
words the passage never uses. The caller then quotes a sentence instead: a confident wrong
number is worse than none.

Which rows and columns the words name is assistant/answering/table_cells.py's part (it reads at most 200
rows of 20 cells per evidence item). Pure text, no model.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from adapters.prompts import EvidenceItem
from assistant.answering.attribution import content_words, stem
from assistant.answering.fact_answers import Lead
from assistant.answering.table_cells import (MAX_PASSAGE_CHARS, Grid, best_row, covered, dated, grids, named_columns, row_words,
                                   word_named)
from assistant.answering.table_wording import bracketed, columns_named, format_number, label_in_section, listed, where_shown
from indexing.tables import parse_number, years_in
from indexing.words import WORD

MAX_QUESTION_CHARS = 500
MAX_SPLITS = 12  # places a question is split into two rows' parts at ("A and B"): a real one has two or three
MIN_EXPLAINED = 2 / 3  # of the question's own content words, the share the passage must hold
MIN_ABOUT = 1 / 2  # of them, the share the labels of the cells used must hold: as much as they leave out
# Operation words by family. A word a chosen label holds names that row or column instead
# ("Total revenue", "Weighted average price"), unless the question says it once more.
_FAMILIES = {
    "percent": {"percentage", "percent"},
    "change": {"change", "changes", "changed", "increase", "increased", "increases", "decrease", "decreased",
               "decreases", "growth", "grew", "grow"},
    "difference": {"difference", "differences", "compared"},
    "average": {"average", "mean"},
    "sum": {"total", "sum", "combined"},
    "ratio": {"ratio"},
    "proportion": {"proportion", "fraction"},
}
_OP_STEMS = content_words(" ".join(word for words in _FAMILIES.values() for word in words))
# A percentage change is asked in those words, side by side; "change ... as a percentage of" is not one.
_PERCENT_CHANGE = re.compile(r"(?:percentage|percent|%) (?:change|increase|decrease|growth)")
# What a question says about itself rather than about the table: never looked for in the passage.
_FRAME_STEMS = content_words("respective respectively value amount company fiscal year")
# Join words that split a question into two rows' parts, by the operation that reads them so.
_JOINS = {"difference": (" and ", " compared to ", " compared with "), "ratio": (" to ",),
          "share": (" out of ", " of ", " in ", " over ", " to "), "proportion": (" out of ", " of ", " in ", " over "),
          "sum": (" and ",), "average": (" and ",), "lookup": (" and ",)}
_ALL_JOINS = tuple(dict.fromkeys(join for joins in _JOINS.values() for join in joins))
# Questions a cell does not answer: a name, a reason, a time, a yes or no, what something means.
_NOT_A_CELL = {"which", "who", "whom", "whose", "why", "when", "where", "cause", "caused", "reason", "reasons",
               "represent", "represents", "mainly", "explain", "attributed"}
# "Which year had the higher X?": the year whose cell in X's row is the larger (or smaller).
_WHICH_YEAR = re.compile(r"\b(?:which|what) (?:fiscal )?year\b")
_MORE = {"higher", "highest", "larger", "largest", "greater", "greatest", "bigger", "biggest", "more", "most"}
_LESS = {"lower", "lowest", "smaller", "smallest", "less", "least", "fewer", "fewest"}
_COMPARE_STEMS = content_words(" ".join(_MORE | _LESS))
_YES_NO = {"is", "are", "was", "were", "does", "do", "did", "can", "has", "have", "had", "will", "would", "should"}


@dataclass(frozen=True)
class _Question:
    lower: str
    counts: Counter  # each word (lower case) -> how often it occurs
    words: dict[str, int]  # content-word stem -> where it first occurs
    stems: frozenset[str]  # every word's stem, stop words too: a row may be labelled "Other"
    splits: tuple[tuple[str, frozenset[str], frozenset[str]], ...]  # (join word, stems before it, stems after it)
    years: tuple[tuple[str, int, bool], ...]  # (year, where, only inside a range "2017-2019")
    plain: dict[str, int]  # every word's stem, stop words too ("amount") -> where it first occurs


@dataclass(frozen=True)
class _Answer:
    text: str  # the sentence, without its citation
    result: str  # the computed value, or the cells joined
    computed: tuple[str, ...]
    score: tuple[int, int, float]  # words of the rows' labels named, those not operation words, least share named
    numbers: tuple[int, ...]  # the evidence items the cells were read from


def table_lead(question: str, items: Sequence[EvidenceItem]) -> Lead | None:
    """The opening sentence from table cells that answer ``question``, or None when unsure."""
    question = question[:MAX_QUESTION_CHARS]
    direction = _compared(question)
    q = _question(question, asks_year=direction is not None)
    if q is None:
        return None
    passages = [item for item in items if item.kind == "passage" and _explained(q, item)]
    read = (lambda grid: _year_compared(q, grid, direction)) if direction else (lambda grid: _answer(q, grid))
    found = [answer for grid in grids(passages) if (answer := read(grid))]
    if not found:
        return None
    best = max(answer.score for answer in found)
    chosen = [answer for answer in found if answer.score == best]
    if len({answer.result for answer in chosen}) > 1:  # equally good rows that disagree: no guess
        return None
    answer = chosen[0]
    cited = ", ".join(map(str, answer.numbers))
    return Lead(f"{answer.text} [{cited}].", answer.numbers, None, kind="table", computed=answer.computed)


# --- the question ----------------------------------------------------------------------------

def _question(question: str, asks_year: bool = False) -> _Question | None:
    """The question's words; None when no cell answers it. ``asks_year``: it asks which year's
    cell is the larger (``_compared``), so "which" is no reason to give up."""
    lower = question.lower()
    matches = list(WORD.finditer(lower))
    tokens = [match.group() for match in matches]
    if not tokens or tokens[0] in _YES_NO or tokens[1:2] in (["do"], ["does"], ["did"]) or (
            _NOT_A_CELL & set(tokens) and not asks_year):
        return None  # "Was ...?", "What does X represent?", "Which year ...?": not a cell's value
    words: dict[str, int] = {}
    for match in matches:
        for word in content_words(match.group()):
            words.setdefault(word, match.start())
    plain: dict[str, int] = {}
    for match in matches:
        plain.setdefault(stem(match.group()), match.start())
    return _Question(lower, Counter(tokens), words, frozenset(_stems(lower)), _splits(lower), _years(lower), plain)


def _splits(lower: str) -> tuple[tuple[str, frozenset[str], frozenset[str]], ...]:
    """The question cut in two at each join word, first ones first, at most ``MAX_SPLITS``."""
    places = []
    for join in _ALL_JOINS:
        start = lower.find(join)
        while start != -1:
            places.append((start, join))
            start = lower.find(join, start + 1)
    return tuple((join, frozenset(_stems(lower[:start])), frozenset(_stems(lower[start + len(join):])))
                 for start, join in sorted(places)[:MAX_SPLITS])


def _stems(text: str) -> set[str]:
    return content_words(text) | {stem(word) for word in WORD.findall(text)}


def _years(lower: str) -> tuple[tuple[str, int, bool], ...]:
    """The years named, in order, each once; "2017-2019" also names the years between."""
    found: list[tuple[str, int, bool]] = []
    named = [(year, lower.find(year)) for year in dict.fromkeys(years_in(lower))]
    for (year, where), (following, after) in zip(named, named[1:] + [("0", -1)]):
        found.append((year, where, False))
        ranged = after > where and lower[where + 4: after].strip() in ("-", "\u2013")
        if ranged and 0 < int(following) - int(year) <= 10:
            found += [(str(y), where, True) for y in range(int(year) + 1, int(following))]
    return tuple(found)


def _explained(q: _Question, item: EvidenceItem) -> bool:
    """Whether the passage uses most of the question's own words: a table about something else
    can hold a row whose label the question happens to cover."""
    return _holds(q, f"{item.title}\n{item.text[:MAX_PASSAGE_CHARS]}", MIN_EXPLAINED)


def _holds(q: _Question, text: str, share: float) -> bool:
    """Whether ``text`` holds that share of the question's own words (operations, comparisons,
    years and words about the question itself aside)."""
    asked = [word for word in q.words if word not in _OP_STEMS | _FRAME_STEMS | _COMPARE_STEMS and not word.isdigit()]
    held = content_words(text)
    return sum(covered(word, held) for word in asked) >= share * len(asked)


def _operation(q: _Question, labels: Sequence[str], rows: int) -> str | None:
    """What the question's words ask for, once the words the chosen labels hold are set aside;
    None when they ask for two things."""
    held = Counter(word for label in labels for word in WORD.findall(label.lower()))
    families = {family for family, names in _FAMILIES.items() if any(q.counts[w] > held[w] for w in names)}
    if "%" in q.lower and "%" not in "".join(labels):
        families.add("percent")
    if families == {"percent", "change"}:
        return "pct_change" if _PERCENT_CHANGE.search(q.lower) else None
    if families == {"percent"}:
        return "share" if rows == 2 else "lookup"  # "the percentage of customers from Taiwan": a cell
    if families == {"difference", "change"}:
        return "difference"
    return None if len(families) > 1 else next(iter(families), "lookup")


def _compared(question: str) -> str | None:
    """"more" or "less" when the question asks which year's value is the larger or the smaller;
    None when it asks something else, or both."""
    lower = question.lower()
    if not _WHICH_YEAR.search(lower) or re.search(r"\byears\b", lower):
        return None
    said = set(WORD.findall(lower))
    directions = [name for name, words in (("more", _MORE), ("less", _LESS)) if said & words]
    return directions[0] if len(directions) == 1 else None


def _year_compared(q: _Question, grid: Grid, direction: str) -> _Answer | None:
    """The year whose cell in the row the question names is the larger ("more") or the smaller,
    among the columns of one year each (those the question names, when it names two or more)."""
    found = best_row(grid, q.stems, _COMPARE_STEMS)
    if found is None:
        return None
    row, score = found
    columns = [j for j in range(1, len(grid.columns)) if len(years_in(grid.columns[j])) == 1]
    asked = {year for year, _, _ in q.years}
    if len(asked) >= 2:
        columns = [j for j in columns if years_in(grid.columns[j])[0] in asked]
    years = [years_in(grid.columns[j])[0] for j in columns]
    values = [parse_number(grid.rows[row][j]) for j in columns]
    if len(columns) < 2 or len(set(years)) != len(years) or None in values or not _about(q, grid, [row], columns):
        return None
    best = (max if direction == "more" else min)(values)
    if values.count(best) > 1:
        return None
    chosen = values.index(best)
    word = next(w for w in WORD.findall(q.lower) if w in (_MORE if direction == "more" else _LESS))
    others = [(year, grid.rows[row][j]) for j, year in zip(columns, years) if year != years[chosen]]
    label = label_in_section(grid, row, row_words(grid, row, q.stems))
    text = f"{label} was {word} in {years[chosen]} {bracketed(grid.rows[row][columns[chosen]])}"
    text += (f" than in {others[0][0]} {bracketed(others[0][1])}" if len(others) == 1 else
             f", against {listed([f'{cell} in {year}' for year, cell in others])}")
    cells = tuple(grid.rows[row][j] for j in columns)
    return _Answer(text, years[chosen], cells, score, (grid.sources[row],))


# --- which reading: one row or two ---------------------------------------------------------------

def _answer(q: _Question, grid: Grid) -> _Answer | None:
    single = best_row(grid, q.stems, _OP_STEMS)
    pair = _two_rows(q, grid)
    # "property and equipment" is one row when one label holds what the two rows' labels hold
    if pair is not None and (single is None or not pair[2] <= row_words(grid, single[0], q.stems)):
        return _two_row_answer(q, grid, *pair)
    return None if single is None else _one_row_answer(q, grid, *single)


def _two_rows(q: _Question, grid: Grid) -> tuple[tuple[int, int], tuple[int, int, float], set[str]] | None:
    """Two rows named by the parts a join word splits the question into ("between A and B", "A
    out of B"), where the join suits the operation the other words ask for: the best such
    reading, or None when there is none or two different ones fit equally."""
    joins: dict[tuple[int, int], set[str]] = {}
    scores: dict[tuple[int, int], tuple[int, int, float]] = {}
    for join, before, after in q.splits:
        # a part may name the "Total" row: "Europe out of the total"
        first = best_row(grid, before, _OP_STEMS, strict=False)
        second = best_row(grid, after, _OP_STEMS, strict=False)
        if first and second and first[0] != second[0]:
            rows = (first[0], second[0])
            joins.setdefault(rows, set()).add(join)
            score = (first[1][0] + second[1][0], first[1][1] + second[1][1], min(first[1][2], second[1][2]))
            scores[rows] = max(scores.get(rows, score), score)
    readings = [(score, rows) for rows, score in scores.items()
                if joins[rows] & set(_JOINS.get(_operation(q, [grid.rows[i][0] for i in rows], 2) or "", ()))]
    best = max((score for score, _ in readings), default=None)
    chosen = [rows for score, rows in readings if score == best]
    if len(chosen) != 1:
        return None
    return chosen[0], best, row_words(grid, chosen[0][0], q.stems) | row_words(grid, chosen[0][1], q.stems)


def _columns(q: _Question, grid: Grid, used: set[str], op: str) -> list[int] | None:
    """The columns the question's years, else its words, name (those a row label took aside);
    the years inside a range count only for an average or a total."""
    words = {word: where for word, where in q.words.items() if word not in used}
    years = [(year, optional) for year, _, optional in q.years
             if year not in used and (not optional or op in ("average", "sum"))]
    plain = {word: where for word, where in q.plain.items() if word not in used}
    return named_columns(grid, words, years, op, plain)


# --- the answers -------------------------------------------------------------------------------

def _one_row_answer(q: _Question, grid: Grid, row: int, score: tuple[int, int, float]) -> _Answer | None:
    label_cell = grid.rows[row][0]
    used = row_words(grid, row, q.stems)
    free = {word: where for word, where in q.words.items() if word not in used}
    headers = [] if q.years else [grid.columns[j] for j in word_named(grid, free)]
    op = _operation(q, [label_cell, *headers], rows=1)  # "Total" may name a column, not a sum
    columns = None if op in (None, "share", "proportion") else _columns(q, grid, used, op)
    if columns is None or not _about(q, grid, [row], columns):
        return None
    if op == "difference" and dated(grid, columns):
        op = "change"  # between two years: from the earlier to the later
    cells = [grid.rows[row][j] for j in columns]
    label = label_in_section(grid, row, used)
    if op == "lookup":
        if not all(cells) or ("percent" in _families_named(q) and not _percentages(cells, grid, columns, label_cell)):
            return None
        if len(cells) == 1:
            text = f"{label}: {cells[0]}{where_shown(grid.shown[columns[0]])}"
        else:  # the values together, in the order asked, as a list is read: "4.6%, 4.1% in 2018 and 2019 respectively"
            text = f"{label}: {', '.join(cells)} {columns_named(grid, columns)} respectively"
        return _Answer(text, ", ".join(cells), tuple(cells), score, (grid.sources[row],))
    if (len(columns) < 2) if op in ("average", "sum") else (len(columns) != 2):
        return None
    if op in ("change", "pct_change") and dated(grid, columns):
        columns = sorted(columns, key=lambda j: years_in(grid.columns[j])[0])  # old, then new
        cells = [grid.rows[row][j] for j in columns]
    result = _computed(op, cells)
    if result is None:
        return None
    shown = [f"{grid.shown[j] or 'the value column'} {bracketed(cell)}" for cell, j in zip(cells, columns)]
    text = {"change": f"The change in {label} from {shown[0]} to {shown[1]} was {result}",
            "pct_change": f"The percentage change in {label} from {shown[0]} to {shown[1]} was {result}",
            "difference": f"The difference in {label} between {shown[0]} and {shown[1]} was {result}",
            "ratio": f"The ratio of {label} in {shown[0]} to {shown[1]} was {result}",
            "average": f"The average of {label} over {listed(shown)} was {result}",
            "sum": f"The total of {label} over {listed(shown)} was {result}"}[op]
    return _Answer(text, result, (result,), score, (grid.sources[row],))


def _two_row_answer(q: _Question, grid: Grid, rows: tuple[int, int], score: tuple[int, int, float],
                    used: set[str]) -> _Answer | None:
    op = _operation(q, [grid.rows[i][0] for i in rows], rows=2)
    columns = _columns(q, grid, used, "lookup")
    if op in (None, "change", "pct_change") or columns is None or len(columns) != 1:
        return None
    if not _about(q, grid, rows, columns):
        return None
    labels = [label_in_section(grid, i, used) for i in rows]
    numbers = tuple(sorted({grid.sources[i] for i in rows}))
    cells = [grid.rows[i][columns[0]] for i in rows]
    where = where_shown(grid.shown[columns[0]])
    if op == "lookup":
        if not all(cells):
            return None
        return _Answer(f"{labels[0]}: {cells[0]} and {labels[1]}: {cells[1]}{where}", ", ".join(cells),
                       tuple(cells), score, numbers)
    result = _computed(op, cells)
    if result is None:
        return None
    a, b = (f"{label} {bracketed(cell)}" for label, cell in zip(labels, cells))
    text = {"difference": f"The difference between {a} and {b}{where} was {result}",
            "ratio": f"The ratio of {a} to {b}{where} was {result}",
            "share": f"{a} as a percentage of {b}{where} was {result}",
            "proportion": f"{a} as a proportion of {b}{where} was {result}",
            "sum": f"The total of {a} and {b}{where} was {result}",
            "average": f"The average of {a} and {b}{where} was {result}"}[op]
    # Two rows are two units to attribution, neither holding both cells: the cells count as given.
    return _Answer(text, result, (result, *cells), score, numbers)


def _about(q: _Question, grid: Grid, rows: Sequence[int], columns: Sequence[int]) -> bool:
    """Whether the labels of the cells used (rows, their sections, columns) hold enough of the
    question's own words: a row that shares one word with a long question is not its answer."""
    labels = [grid.rows[i][0] for i in rows] + [grid.sections[i] for i in rows] + [grid.columns[j] for j in columns]
    return _holds(q, " ".join(labels), MIN_ABOUT)


def _families_named(q: _Question) -> set[str]:
    families = {family for family, names in _FAMILIES.items() if any(q.counts[w] for w in names)}
    return families | ({"percent"} if "%" in q.lower else set())


def _percentages(cells: list[str], grid: Grid, columns: list[int], label: str) -> bool:
    """Whether the cells are percentages: a question about a percentage reads no other cell."""
    names = " ".join([label, *(grid.columns[j] for j in columns)]).lower()
    return all(cell.strip().endswith("%") for cell in cells) or "%" in names or "percent" in names


def _computed(op: str, cells: list[str]) -> str | None:
    """The operation's value over the cells, formatted; None when a cell is not a number or it
    would divide by zero."""
    values = [parse_number(cell) for cell in cells]
    if None in values:
        return None
    first, second = values[0], values[-1]
    if (first if op == "pct_change" else second) == 0 and op in ("pct_change", "ratio", "share", "proportion"):
        return None
    value = {"change": lambda: second - first, "difference": lambda: first - second,
             "pct_change": lambda: (second - first) / first * 100, "ratio": lambda: first / second,
             "share": lambda: first / second * 100, "proportion": lambda: first / second,
             "average": lambda: sum(values) / len(values), "sum": lambda: sum(values)}[op]()
    percent = op in ("pct_change", "share") or (
        op in ("change", "difference", "average", "sum") and all(cell.strip().endswith("%") for cell in cells))
    return format_number(value) + ("%" if percent else "")
