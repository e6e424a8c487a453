"""Picking from several lists in turn, so that a short selection still has some of each."""

from __future__ import annotations

from itertools import islice, zip_longest
from typing import Iterable, TypeVar

T = TypeVar("T")
_GAP = object()  # where a shorter list has run out


def round_robin(groups: Iterable[Iterable[T]], limit: int | None = None) -> list[T]:
    """The first item of every group, then the second of every group, and so on, skipping the
    groups that have run out; at most ``limit`` items (None: all of them)."""
    turns = zip_longest(*groups, fillvalue=_GAP)
    items = (item for turn in turns for item in turn if item is not _GAP)
    return list(items if limit is None else islice(items, max(limit, 0)))
