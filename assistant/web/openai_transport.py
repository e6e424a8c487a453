"""How a ``/v1`` request and its answer travel over HTTP (assistant/web/openai_api.py decides what
they mean): the place a request holds among ``api_max_concurrent``, the blocking work run on a
worker thread while the client is watched, server-sent events, and the release of a request's
place and cancel event whichever way it ends.

A request's work (routing, retrieval, generation) blocks, so it runs on a worker thread; the
event loop meanwhile waits for the client's ``http.disconnect``. A client that goes away before
its answer is sent (a timeout, the ``openai`` package's retry, a closed socket) sets the request's
cancel event: the engine frees its row at the next step, the work ends, and the place is given
back, instead of both being held until the unwanted answer is complete. Once a stream has begun,
Starlette watches for the disconnect and closes the stream.
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from typing import Callable, Iterator, TypeVar

import anyio
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.requests import Request

from assistant.web.openai_protocol import RETRY_AFTER_S, ApiError

log = logging.getLogger(__name__)

T = TypeVar("T")
_END = object()


class Slot:
    """One of the ``api_max_concurrent`` places, released exactly once."""

    def __init__(self, semaphore: threading.BoundedSemaphore):
        if not semaphore.acquire(blocking=False):
            raise ApiError(429, "too many requests at once; try again in a moment", kind="rate_limit_error",
                           code="rate_limit_exceeded", headers={"Retry-After": RETRY_AFTER_S})
        self._semaphore, self._lock, self._held = semaphore, threading.Lock(), True

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, False
        if held:
            self._semaphore.release()


async def run_while_connected(request: Request, cancel: threading.Event, work: Callable[[], T]) -> T:
    """``work()`` on a worker thread; ``cancel`` is set if the client disconnects meanwhile.
    The request's body must have been read: what ``receive`` gives after it is the disconnect."""
    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        cancel.set()

    async with anyio.create_task_group() as watching:
        watching.start_soon(watch)
        try:
            return await anyio.to_thread.run_sync(work)
        finally:
            watching.cancel_scope.cancel()


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def closer(cancel: threading.Event, iterator: Iterator, slot: Slot):
    """What ends a streamed request, whichever way it ends; safe to call more than once."""
    def close() -> None:
        cancel.set()
        try:
            iterator.close()
        except ValueError:  # running on another thread right now: the cancel event ends it there
            pass
        slot.release()
    return close


def sse_response(events: Iterator[dict], close: Callable[[], None]) -> StreamingResponse:
    """``events`` (chunks, or an error body as the last) as server-sent events, then
    ``data: [DONE]``; ``close`` runs when the stream ends, fails or is dropped."""
    stream = _server_sent(events, close)
    weakref.finalize(stream, close)  # a response that never started streaming still lets go
    return StreamingResponse(stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _server_sent(events: Iterator[dict], close: Callable[[], None]):
    """Each event pulled on a worker thread (the generator blocks on the engine). The status is
    sent already when something fails: the failure goes into the stream as the protocol's error,
    never as a cut-off stream or a normal end."""
    try:
        while True:
            try:
                event = await anyio.to_thread.run_sync(next, events, _END)
            except Exception:
                log.exception("a /v1 stream failed")
                event = ApiError(500, "the answer failed; the server log has the details", kind="server_error").body()
                yield _data(event)
                break
            if event is _END:
                break
            yield _data(event)
        yield "data: [DONE]\n\n"
    finally:
        close()


def _data(event: dict) -> str:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
