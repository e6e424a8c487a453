"""Seconds spent per indexing stage, for the index report and the scale benchmark."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

# The stages in the order a run goes through them (a stage a run skips is absent). "extract" runs
# in a thread beside "embed" (its own duration); "extract wait" is how long the run then waited
# for it, so the stages add up to more than the whole.
STAGES = ("read", "clean", "chunk", "embed", "faiss", "bm25", "extract", "extract wait", "fuse", "graph write", "walk")


class StageTimes(dict):
    """stage name -> seconds; a stage timed twice adds up."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - started

    def add(self, other: dict[str, float]) -> None:
        for name, seconds in other.items():
            self[name] = self.get(name, 0.0) + seconds
