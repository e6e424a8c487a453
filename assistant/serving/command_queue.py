"""Commands for the engine's thread: callables other threads hand over (hot-load, unload,
rollback, a benchmark holding the engine), run between two decode steps, each answered through
a Future. Once the engine stops, every command still queued, and every later one, fails with
EngineStopped."""

from __future__ import annotations

import collections
import threading
from concurrent.futures import Future
from typing import Callable, TypeVar

from assistant.serving.generation import EngineStopped

T = TypeVar("T")


class CommandQueue:
    def __init__(self, stopped_message: str):
        self._stopped_message = stopped_message
        self._commands: collections.deque[tuple[Callable, Future]] = collections.deque()
        self._lock = threading.Lock()  # a command is queued only while the engine takes them
        self._closed = False

    def __bool__(self) -> bool:
        return bool(self._commands)

    def put(self, command: Callable[[], T], accepting: bool) -> Future:
        """Queue ``command``; the Future fails at once when the engine is not ``accepting``."""
        future: Future = Future()
        with self._lock:
            if self._closed or not accepting:
                future.set_exception(EngineStopped(self._stopped_message))
                return future
            self._commands.append((command, future))
        return future

    def run_all(self) -> int:
        """On the engine's thread: run every queued command (a command's exception goes to its
        caller); returns how many ran."""
        ran = 0
        while self._commands:
            command, future = self._commands.popleft()
            if not future.set_running_or_notify_cancel():  # its caller gave up waiting: withdrawn
                continue
            ran += 1
            try:
                future.set_result(command())
            except BaseException as exc:  # the caller gets it; the engine goes on
                future.set_exception(exc)
        return ran

    def close(self) -> None:
        """Refuse every command from now on and fail those still queued."""
        with self._lock:
            self._closed = True
            commands, self._commands = list(self._commands), collections.deque()
        for _, future in commands:
            if future.set_running_or_notify_cancel():
                future.set_exception(EngineStopped(self._stopped_message))
