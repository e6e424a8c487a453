"""One way to write a Markdown table, for the evaluation report and the benchmarks' output."""

from __future__ import annotations

from typing import Literal, Sequence

Align = Literal["left", "right"] | None
_RULES = {"left": ":--", "right": "--:", None: "---"}


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[Align] = ()) -> str:
    """Cells as given (already text); ``align`` per column, unset columns get the renderer's default.
    A ``|`` inside a cell is escaped so it cannot split the row."""
    rules = [_RULES[align[i] if i < len(align) else None] for i in range(len(headers))]
    lines = [_row(headers), "|" + "|".join(rules) + "|"]
    return "\n".join(lines + [_row(row) for row in rows])


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"
