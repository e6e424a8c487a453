"""The serving engine's waiting line (assistant/serving/engine.py): requests in the order they came, which
any thread may join or cancel and only the engine's thread takes from.

A request that was cancelled or whose deadline passed while it waited stops counting at once:
the next submission (or look at the line) moves it aside, and the engine's thread finishes it as
before. Otherwise a burst of cancelled requests (closed tabs) would keep their places until the
engine's next loop, and a new request would be refused as "busy" behind nobody.

One lock guards the line, never held while the model runs; it also counts what the line accepts
and refuses in the engine's stats.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Generic, Protocol, TypeVar

from assistant.serving.generation import EngineBusy, EngineStopped, GenerationRequest


class _Waiter(Protocol):
    request: GenerationRequest


class _Counts(Protocol):
    requests: int
    refused: int


J = TypeVar("J", bound=_Waiter)


class WaitingLine(Generic[J]):
    def __init__(self, stats: _Counts):
        self._stats = stats
        self._live: collections.deque[J] = collections.deque()
        self._ended: list[J] = []  # cancelled or expired while waiting, not yet finished
        self._closed = False
        self._lock = threading.Lock()

    def join(self, job: J, limit: int, stopped: str) -> None:
        """Queue ``job`` behind the others; EngineBusy when ``limit`` live requests wait already,
        EngineStopped (with ``stopped`` as its message) once the line is closed."""
        with self._lock:
            if self._closed:
                raise EngineStopped(stopped)
            self._set_aside_ended()
            if len(self._live) >= limit:
                self._stats.refused += 1
                raise EngineBusy(f"the assistant is busy ({len(self._live)} requests waiting); try again")
            self._live.append(job)
            self._stats.requests += 1

    def waiting(self) -> int:
        """Live requests waiting (cancelled and expired ones do not count)."""
        with self._lock:
            self._set_aside_ended()
            return len(self._live)

    def has_work(self) -> bool:
        """Something for the engine's thread: a request to start or one to finish."""
        with self._lock:
            return bool(self._live or self._ended)

    def next(self) -> J | None:
        with self._lock:
            return self._live.popleft() if self._live else None

    def take_ended(self) -> list[J]:
        """The requests that were cancelled or expired while waiting, for the engine to finish."""
        with self._lock:
            self._set_aside_ended()
            ended, self._ended = self._ended, []
            return ended

    def close(self) -> list[J]:
        """Refuse every later :meth:`join`; returns everything the line still held."""
        with self._lock:
            self._closed = True
            held, self._live, self._ended = self._ended + list(self._live), collections.deque(), []
            return held

    @property
    def closed(self) -> bool:
        return self._closed

    def _set_aside_ended(self) -> None:  # the lock is held
        now, live = time.monotonic(), collections.deque()
        for job in self._live:
            (self._ended if job.request.ended(now) else live).append(job)
        self._live = live
