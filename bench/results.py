"""The one convention by which bench scripts hand their headline numbers to ``make bench``.

A script adds two lines::

    from bench.results import record  # after its sys.path.insert(0, <repo root>)
    record("graph writes", "batched UNWIND", rate, "relations/s", baseline="one statement per row")

``record`` appends one JSON line to the file named by ``BENCH_RESULTS`` and does nothing when
that variable is unset, so every script still runs alone and prints its own tables.
``scripts/bench_all.py`` sets it, runs every script and prints :func:`combined_table`: each row
with its ratio to the row named by ``baseline`` in the same group, recorded in the same run.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from assistant.markdown_table import markdown_table

RESULTS_ENV = "BENCH_RESULTS"
BETTER = ("higher", "lower")


@dataclass(frozen=True)
class Row:
    group: str  # rows are compared only within their group
    name: str
    value: float
    unit: str
    baseline: str | None = None  # the name of the row in the same group this one is compared with
    better: str | None = None  # "higher" or "lower": which way the value improves
    script: str = ""


def record(group: str, name: str, value: float, unit: str, baseline: str | None = None,
           better: str | None = None) -> None:
    """Append one measurement to $BENCH_RESULTS; a no-op when it is unset."""
    if better is not None and better not in BETTER:
        raise ValueError(f"better must be one of {BETTER}, not {better!r}")
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    row = Row(group, name, float(value), unit, baseline, better, Path(sys.argv[0]).name)
    # one short line per write in append mode: rows from several processes never interleave
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(asdict(row)) + "\n")


def print_table(title: str, headers: list[str], rows: list[list[str]], notes: list[str] = ()) -> None:
    """One Markdown table on stdout (the bench scripts' own output), then its notes: the first
    column (labels) left-aligned, the rest (numbers) right-aligned."""
    print(f"\n### {title}\n")
    print(markdown_table(headers, rows, ["left"] + ["right"] * (len(headers) - 1)))
    for note in notes:
        print(f"  {note}")
    sys.stdout.flush()


def read_rows(path: Path) -> list[Row]:
    if not Path(path).exists():
        return []
    return [Row(**json.loads(line)) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def ratio_cell(row: Row, by_key: dict[tuple[str, str], Row]) -> str:
    """value / baseline value, '(baseline)' for rows others compare with, '-' for neither."""
    if row.baseline is None:
        compared = any(r.group == row.group and r.baseline == row.name for r in by_key.values())
        return "(baseline)" if compared else "-"
    base = by_key.get((row.group, row.baseline))
    if base is None:
        return "no baseline row"
    if base.value == 0 or not (math.isfinite(base.value) and math.isfinite(row.value)):
        return "-"
    return f"{format_number(row.value / base.value)}x"


def format_number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def combined_table(rows: list[Row]) -> str:
    """One Markdown table, groups in the order they were first recorded; a measurement recorded
    twice in a group (a script run twice) shows its last value."""
    by_key: dict[tuple[str, str], Row] = {}
    for row in rows:
        by_key[(row.group, row.name)] = row  # keeps its first position, takes the last value
    groups = list(dict.fromkeys(row.group for row in rows))
    ordered = [row for group in groups for row in by_key.values() if row.group == group]
    cells = [[row.group, row.name, format_number(row.value), row.unit, row.better or "", row.baseline or "",
              ratio_cell(row, by_key)] for row in ordered]
    return markdown_table(["group", "measurement", "value", "unit", "better", "baseline", "ratio"], cells,
                          ["left", "left", "right", "left", "left", "left", "right"])
