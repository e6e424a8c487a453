"""Reading JSON Lines the same way everywhere: numbered lines (from 1, blank ones skipped, for
messages like ``corpus.jsonl:12: ...``) and one line parsed with a reason when it is not JSON.

json's decoder recurses once per nesting level, so a hostile line like ``[`` * 100,000 raises
RecursionError rather than a JSONDecodeError; both become :class:`BadJsonLine`.
"""

from __future__ import annotations

import json
from typing import Iterator


class BadJsonLine(ValueError):
    """A line that is not JSON; the message is the reason, without the line's place."""


def numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line


def parse_json_line(line: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadJsonLine(f"invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise BadJsonLine("JSON nested too deeply to read") from None
