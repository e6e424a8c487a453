"""The OpenAI-compatible API on the app's own server and port: ``GET /v1/models`` and
``POST /v1/chat/completions``, for the clients people already use (the ``openai`` package,
Open WebUI, LibreChat, LangChain, editors).

- ``model``: ``auto`` (the router picks the domain), ``base`` (routed like auto, answered by the
  base model without an adapter), a domain (its active adapter and its index), or an adapter's
  name (exactly that adapter, with its domain's index). Anything else: 404 ``model_not_found``.
- The reply is the grounded answer with its ``[n]`` citations; the evidence (facts, passages,
  sentences with their support, domain, confidence, adapter) is the extra top-level field
  ``evidence`` of the response, or of the last chunk when streaming, so plain clients work.
  Streaming sends each sentence once attribution has kept it (assistant/grounded_stream.py): the
  pieces join into exactly the final answer.
- ``messages``: the last one is the question (a user message); earlier user and assistant turns
  are the history; ``system`` and ``developer`` messages are ignored, since the assistant's own
  system line is what makes it keep to its evidence.
- ``max_tokens``, ``temperature`` (0 or absent: greedy), ``stop``; ``usage`` counts the prompt
  with its evidence and the answer's tokens.
- ``raw: true`` (with vLLM's ``continue_final_message`` and ``allowed_token_ids``): plain
  generation from the messages on the serving engine, as a multi-LoRA server does; this is what
  another instance's remote generation backend asks for (assistant/remote_engine.py).
- Bearer keys from ``api_keys``, compared in constant time. Without keys the routes are not
  mounted at all (404), never open. 401 without a valid key, 400 for a malformed request, 429
  beyond ``api_max_concurrent`` requests at once, 503 (``Retry-After``) when the serving engine's
  queue is full; each in the protocol's error format.

A request holds a slot of ``api_max_concurrent`` and a cancel event; both are released when the
answer ends, the client goes away (the generation stops at the next step), or, for a response
that was never sent, when it is garbage-collected.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import weakref
from dataclasses import dataclass
from typing import Iterator

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from assistant import openai_protocol as protocol
from assistant.adapter_pool import AdapterLoadError
from assistant.answer_writer import AnswerOptions
from assistant.generation import EngineBusy, GenerationFailed
from assistant.openai_protocol import ApiError, ChatRequest
from assistant.pipeline import Answer, ChatPipeline
from assistant.presenter import answer_json
from assistant.settings import Settings

log = logging.getLogger(__name__)

AUTO, BASE = "auto", "base"
RETRY_AFTER_S = "2"
_INPUT_ERRORS = ("empty question", "question too long")
_END, _NOT_JSON = object(), object()


@dataclass(frozen=True)
class ModelChoice:
    """What a request's ``model`` means."""
    name: str
    domain: str | None = None  # routing forced to this domain (None: the router decides)
    adapter: str | None = None  # exactly this adapter
    base_model: bool = False  # no adapter


class _Slot:
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


class StopFilter:
    """Raw generation's ``stop``: text is released only once no stop string can begin in it,
    and the text ends where the first stop string begins."""

    def __init__(self, stops: tuple[str, ...]):
        self.stops, self.hit, self._pending = stops, False, ""
        self._keep = max((len(s) for s in stops), default=1) - 1

    def add(self, piece: str) -> str:
        self._pending += piece
        found = [i for i in (self._pending.find(s) for s in self.stops) if i >= 0]
        if found:
            released, self._pending, self.hit = self._pending[:min(found)], "", True
            return released
        cut = max(0, len(self._pending) - self._keep)
        released, self._pending = self._pending[:cut], self._pending[cut:]
        return released

    def flush(self) -> str:
        released, self._pending = self._pending, ""
        return released


class OpenAIApi:
    def __init__(self, settings: Settings, pipeline: ChatPipeline):
        self.settings, self.pipeline = settings, pipeline
        self._keys = [key.encode() for key in settings.api_key_list]
        self._slots = threading.BoundedSemaphore(settings.api_max_concurrent)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/v1")
        router.add_api_route("/models", self._models, methods=["GET"])
        router.add_api_route("/chat/completions", self._chat_completions, methods=["POST"])
        return router

    # --- endpoints -------------------------------------------------------------------------------
    def _models(self, request: Request):
        try:
            self._authorise(request)
            return protocol.model_list(self.model_names())
        except ApiError as exc:
            return _error_response(exc)

    async def _chat_completions(self, request: Request):
        try:
            body = await request.json()
        except ValueError:
            body = _NOT_JSON
        # Routing, retrieval and the wait for the first sentence block: on a worker thread.
        return await anyio.to_thread.run_sync(self._complete, request, body)

    def _complete(self, request: Request, body: object):
        try:
            self._authorise(request)
            if body is _NOT_JSON:
                raise ApiError(400, "the request body is not JSON")
            chat = protocol.parse_request(body)
            choice = self.resolve_model(chat.model)
            slot = _Slot(self._slots)
            try:
                response = self._raw(chat, choice, slot) if chat.raw else self._grounded(chat, choice, slot)
            except BaseException:
                slot.release()
                raise
            return response
        except ApiError as exc:
            return _error_response(exc)

    # --- what a request means ------------------------------------------------------------------------
    def _authorise(self, request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        offered = given.strip().encode()
        # Every key is compared, each in constant time, so the time taken says nothing about them.
        matches = [hmac.compare_digest(offered, key) for key in self._keys]
        if scheme.lower() != "bearer" or not offered or not any(matches):
            raise ApiError(401, "a valid API key is needed (Authorization: Bearer <key>)", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})

    def model_names(self) -> list[str]:
        pool = self.pipeline.engine.pool
        domains = sorted(set(self.pipeline.router.domains()) | set(pool.active()))
        # The base first, as vLLM lists it: a remote backend takes the first model as the base (remote_engine).
        return [BASE, AUTO, *domains, *(row["name"] for row in pool.list())]

    def resolve_model(self, name: str) -> ModelChoice:
        pool = self.pipeline.engine.pool
        if name == AUTO:
            return ModelChoice(name)
        if name == BASE:
            return ModelChoice(name, base_model=True)
        if name in self.pipeline.router.domains() or name in pool.active():
            return ModelChoice(name, domain=name)
        loaded = {row["name"]: row for row in pool.list()}
        if name in loaded:
            return ModelChoice(name, domain=loaded[name]["domain"], adapter=name)
        raise ApiError(404, f"the model {name!r} does not exist; GET /v1/models lists them", code="model_not_found",
                       param="model")

    # --- grounded answers ------------------------------------------------------------------------------
    def _grounded(self, chat: ChatRequest, choice: ModelChoice, slot: _Slot):
        question, history = _question_and_history(chat)
        if chat.allowed_token_ids or chat.continue_final_message:
            raise ApiError(400, "allowed_token_ids and continue_final_message need raw: true", param="raw")
        options = AnswerOptions(adapter=choice.adapter, base_model=choice.base_model, max_new_tokens=chat.token_limit,
                                temperature=chat.temperature or 0.0, stop=chat.stop_strings)
        cancel = threading.Event()
        items = self.pipeline.stream(question, history, choice.domain, cancel, options, grounded_pieces=True)
        first = next(items)  # routing, retrieval and the first sentence; an error shows here, as a status
        if isinstance(first, Answer):  # nothing was generated
            _refuse(first)
            first, items = first.text, iter([first])
        cid = protocol.new_completion_id()
        if not chat.stream:
            try:
                text, answer = _join(first, items)
            finally:
                cancel.set()
                slot.release()
            _refuse(answer)
            return protocol.completion(cid, chat.model, text, _finish(answer), self._usage(answer),
                                       {"evidence": answer_json(answer)})
        return _sse_response(self._grounded_events(chat, cid, first, items), _closer(cancel, items, slot))

    def _grounded_events(self, chat: ChatRequest, cid: str, first: str, items: Iterator) -> Iterator[dict]:
        yield protocol.chunk(cid, chat.model, {"role": "assistant", "content": first})
        answer = None
        for item in items:
            if isinstance(item, Answer):
                answer = item
            else:
                yield protocol.chunk(cid, chat.model, {"content": item})
        if answer.error:  # failed after the first sentence (logged): the client gets what was kept
            log.warning("a streamed answer ended with an error: %s", answer.error)
        yield protocol.chunk(cid, chat.model, {}, _finish(answer), {"evidence": answer_json(answer)})
        if chat.include_usage:
            yield protocol.usage_chunk(cid, chat.model, self._usage(answer))

    def _usage(self, answer: Answer) -> dict:
        return protocol.usage(answer.prompt_tokens, self.pipeline.engine.count_tokens(answer.text))

    # --- raw generation (a LoRA server's job) -----------------------------------------------------------
    def _raw(self, chat: ChatRequest, choice: ModelChoice, slot: _Slot):
        if choice.name == AUTO:
            raise ApiError(400, "raw generation needs a domain, an adapter or 'base' as model (no routing)",
                           param="model")
        messages = [{"role": m.role, "content": m.text()} for m in chat.messages]
        prefix = ""
        if chat.continue_final_message:
            if messages[-1]["role"] != "assistant":
                raise ApiError(400, "continue_final_message needs an assistant message last", param="messages")
            prefix = messages.pop()["content"]
        choices = tuple(chat.allowed_token_ids or ())
        if choices and chat.token_limit != 1:
            raise ApiError(400, "allowed_token_ids is supported for max_tokens 1 only", param="allowed_token_ids")
        cancel = threading.Event()
        try:
            handle = self.pipeline.engine.submit(
                messages, adapter=choice.adapter, domain=None if choice.base_model else choice.domain,
                max_new_tokens=chat.token_limit, cancel=cancel, answer_prefix=prefix,
                first_token_choices=choices, temperature=chat.temperature or 0.0)
        except EngineBusy as exc:
            raise _busy(str(exc)) from None
        except AdapterLoadError as exc:
            raise ApiError(404, str(exc), code="model_not_found", param="model") from None
        cid, stops = protocol.new_completion_id(), StopFilter(chat.stop_strings)
        pieces = iter(handle)
        if not chat.stream:
            try:
                text = "".join(_until_stop(pieces, stops))
            except GenerationFailed as exc:
                raise ApiError(500, f"generation failed: {exc}", kind="server_error") from None
            finally:
                pieces.close()
                slot.release()
            return protocol.completion(cid, chat.model, text, self._raw_finish(handle, stops),
                                       self._raw_usage(handle, text))
        return _sse_response(self._raw_events(chat, cid, handle, pieces, stops), _closer(cancel, pieces, slot))

    def _raw_events(self, chat: ChatRequest, cid: str, handle, pieces: Iterator[str], stops: StopFilter):
        yield protocol.chunk(cid, chat.model, {"role": "assistant", "content": ""})
        text = ""
        try:
            for piece in _until_stop(pieces, stops):
                text += piece
                yield protocol.chunk(cid, chat.model, {"content": piece})
        except GenerationFailed as exc:  # the status is sent already: the error goes in the stream
            yield ApiError(500, f"generation failed: {exc}", kind="server_error").body()
            return
        yield protocol.chunk(cid, chat.model, {}, self._raw_finish(handle, stops))
        if chat.include_usage:
            yield protocol.usage_chunk(cid, chat.model, self._raw_usage(handle, text))

    @staticmethod
    def _raw_finish(handle, stops: StopFilter) -> str:
        return "stop" if stops.hit else protocol.finish_reason(handle.result.stopped)

    def _raw_usage(self, handle, text: str) -> dict:
        completed = handle.result.stopped and handle.result.stopped != "cancelled"
        return protocol.usage(handle.result.prompt_tokens,
                              handle.result.new_tokens if completed else self.pipeline.engine.count_tokens(text))


def mount(settings: Settings, pipeline: ChatPipeline) -> list:
    """The API's routes for the app's FastAPI constructor (none when no key is set)."""
    api = OpenAIApi(settings, pipeline)
    return api.router().routes if api.enabled else []


# --- helpers -------------------------------------------------------------------------------------------
def _question_and_history(chat: ChatRequest) -> tuple[str, list[dict]]:
    turns = [m for m in chat.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user":
        raise ApiError(400, "the last message must be the user's question", param="messages")
    history = [{"role": m.role, "content": m.text()} for m in turns[:-1]]
    return turns[-1].text(), history


def _refuse(answer: Answer) -> None:
    """An answer that is a refusal becomes the protocol's error."""
    if answer.refused == "busy":
        raise _busy(answer.error or "")
    if answer.refused == "adapter":
        raise ApiError(404, answer.error or "adapter not loaded", code="model_not_found", param="model")
    if answer.error in _INPUT_ERRORS:
        raise ApiError(400, answer.text, param="messages")
    if answer.error and answer.error.startswith("generation failed"):
        raise ApiError(503, answer.text, kind="server_error", code="generation_failed",
                       headers={"Retry-After": RETRY_AFTER_S})
    if answer.error and answer.error.startswith("internal error"):
        raise ApiError(500, answer.text, kind="server_error")


def _busy(detail: str) -> ApiError:
    return ApiError(503, f"the assistant is busy; try again in a moment ({detail})", kind="server_error",
                    code="server_busy", headers={"Retry-After": RETRY_AFTER_S})


def _join(first: str, items: Iterator) -> tuple[str, Answer]:
    text, answer = first, None
    for item in items:
        if isinstance(item, Answer):
            answer = item
        else:
            text += item
    return text, answer


def _finish(answer: Answer) -> str:
    return protocol.finish_reason(answer.stopped)


def _until_stop(pieces: Iterator[str], stops: StopFilter) -> Iterator[str]:
    for piece in pieces:
        released = stops.add(piece)
        if released:
            yield released
        if stops.hit:
            return
    tail = stops.flush()
    if tail:
        yield tail


def _error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _closer(cancel: threading.Event, iterator: Iterator, slot: _Slot):
    """What ends a streamed request, whichever way it ends; safe to call more than once."""
    def close() -> None:
        cancel.set()
        try:
            iterator.close()
        except ValueError:  # running on another thread right now: the cancel event ends it there
            pass
        slot.release()
    return close


def _sse_response(events: Iterator[dict], close) -> StreamingResponse:
    stream = _server_sent(events, close)
    weakref.finalize(stream, close)  # a response that never started streaming still lets go
    return StreamingResponse(stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _server_sent(events: Iterator[dict], close):
    """The events as server-sent events, each pulled on a worker thread (the generator blocks on
    the engine), then ``data: [DONE]``."""
    try:
        while True:
            event = await anyio.to_thread.run_sync(next, events, _END)
            if event is _END:
                break
            yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        close()
