"""The OpenAI-compatible API on the app's own server and port: ``GET /v1/models`` and
``POST /v1/chat/completions``, for the clients people already use (the ``openai`` package,
Open WebUI, LibreChat, LangChain, editors).

- ``model``: ``auto`` (the router picks the domain), ``base`` (routed like auto, answered by the
  base model without an adapter), a domain (its active adapter and its index), or an adapter's
  name (exactly that adapter, with its domain's index). Anything else: 404 ``model_not_found``.
- The reply is the grounded answer with its ``[n]`` citations; the evidence (facts, passages,
  sentences with their support, domain, confidence, adapter) is the extra top-level field
  ``evidence`` of the response, or of the last chunk when streaming, so plain clients work.
  Streaming sends each sentence once attribution has kept it (assistant/answering/grounded_stream.py): the
  pieces join into exactly the final answer. A stream whose generation fails after its first
  sentence ends with the protocol's error event (``data: {"error": ...}``) instead of a finish
  chunk, so a client sees that the answer is incomplete.
- ``messages``: the last one is the question (a user message); earlier user and assistant turns
  are the history; ``system`` and ``developer`` messages are ignored, since the assistant's own
  system line is what makes it keep to its evidence.
- ``max_tokens`` (or ``max_completion_tokens``, at most ``api_max_tokens``), ``temperature`` (0 or
  absent: greedy), ``stop`` (at most 4, each at most 200 characters); ``usage`` counts the prompt
  with its evidence and the answer's tokens. Fields this server does not implement (``tools``,
  ``response_format`` other than text, ``logprobs``, ``n`` > 1 ...) are a 400
  ``unsupported_parameter`` unless their value changes nothing (assistant/web/openai_protocol.py).
- ``raw: true`` (with vLLM's ``continue_final_message`` and ``allowed_token_ids``): plain
  generation from the messages on the serving engine (assistant/web/openai_raw.py).
- Bearer keys from ``api_keys``, compared in constant time, checked before the body is read.
  Without keys the routes are not mounted at all (404), never open. 401 without a valid key, 400
  for a malformed request (not JSON, nested deeper than 64 levels, a field out of range, a prompt
  and ``max_tokens`` beyond the model's context), 429 beyond ``api_max_concurrent`` requests at
  once, 503 (``Retry-After``) when the serving engine's queue is full; each in the protocol's
  error format.

A request holds a slot of ``api_max_concurrent`` and a cancel event; both are released when the
answer ends, the client goes away (the generation stops at the next step; streamed or not), or,
for a response that was never sent, when it is garbage-collected (assistant/web/openai_transport.py).
"""

from __future__ import annotations

import hmac
import logging
import threading
from typing import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from assistant.answering.answer_writer import AnswerOptions
from assistant.answering.pipeline import Answer, ChatPipeline
from assistant.settings import Settings
from assistant.web import openai_protocol as protocol
from assistant.web.openai_protocol import ApiError, ChatRequest, ModelChoice
from assistant.web.openai_raw import RawGeneration
from assistant.web.openai_transport import Slot, closer, error_response, run_while_connected, sse_response
from assistant.web.presenter import answer_json

log = logging.getLogger(__name__)

AUTO, BASE = "auto", "base"
_INPUT_ERRORS = ("empty question", "question too long")


class OpenAIApi:
    def __init__(self, settings: Settings, pipeline: ChatPipeline):
        self.settings, self.pipeline = settings, pipeline
        self.raw = RawGeneration(pipeline.engine)
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
            return error_response(exc)

    async def _chat_completions(self, request: Request):
        try:
            self._authorise(request)  # before the body is read: a caller without a key costs nothing
        except ApiError as exc:
            return error_response(exc)
        try:
            body = await request.body()  # at most max_request_bytes (web_guards.RequestSizeLimit)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is there to read it
        cancel = threading.Event()
        # Parsing, routing, retrieval and the wait for the first sentence block: on a worker thread.
        return await run_while_connected(request, cancel, lambda: self._complete(body, cancel))

    def _complete(self, body: bytes, cancel: threading.Event):
        try:
            chat = protocol.read_request(body, self.settings.api_max_tokens)
            choice = self.resolve_model(chat.model)
            slot = Slot(self._slots)
            try:
                if chat.raw:
                    return self._raw(chat, choice, slot, cancel)
                return self._grounded(chat, choice, slot, cancel)
            except BaseException:
                slot.release()
                raise
        except ApiError as exc:
            return error_response(exc)
        except Exception:
            log.exception("a /v1 chat completion failed")
            return error_response(ApiError(500, "internal error; the server log has the details", kind="server_error"))

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
    def _grounded(self, chat: ChatRequest, choice: ModelChoice, slot: Slot, cancel: threading.Event):
        question, history = _question_and_history(chat)
        if chat.allowed_token_ids or chat.continue_final_message:
            raise ApiError(400, "allowed_token_ids and continue_final_message need raw: true", param="raw")
        options = AnswerOptions(adapter=choice.adapter, base_model=choice.base_model, max_new_tokens=chat.token_limit,
                                temperature=chat.temperature or 0.0, stop=chat.stop_strings)
        items = self.pipeline.stream(question, history, choice.domain, cancel, options, grounded_pieces=True)
        first = next(items)  # routing, retrieval and the first sentence; an error shows here, as a status
        if isinstance(first, Answer):  # nothing was generated
            _refuse(first, chat)
            first, items = first.text, iter([first])
        cid = protocol.new_completion_id()
        if not chat.stream:
            try:
                text, answer = _join(first, items)
            finally:
                cancel.set()
                slot.release()
            _refuse(answer, chat)
            return protocol.completion(cid, chat.model, text, _finish(answer), self._usage(answer),
                                       {"evidence": answer_json(answer)})
        return sse_response(self._grounded_events(chat, cid, first, items), closer(cancel, items, slot))

    def _grounded_events(self, chat: ChatRequest, cid: str, first: str, items: Iterator) -> Iterator[dict]:
        yield protocol.chunk(cid, chat.model, {"role": "assistant", "content": first})
        answer = None
        for item in items:
            if isinstance(item, Answer):
                answer = item
            else:
                yield protocol.chunk(cid, chat.model, {"content": item})
        failure = _refusal(answer, chat)
        if failure is not None:  # failed after the first sentence: what was sent is not the whole answer
            log.warning("a streamed answer ended with an error: %s", answer.error)
            yield failure.body()
            return
        yield protocol.chunk(cid, chat.model, {}, _finish(answer), {"evidence": answer_json(answer)})
        if chat.include_usage:
            yield protocol.usage_chunk(cid, chat.model, self._usage(answer))

    def _usage(self, answer: Answer) -> dict:
        return protocol.usage(answer.prompt_tokens, self.pipeline.engine.count_tokens(answer.text))

    # --- raw generation (a LoRA server's job) -----------------------------------------------------------
    def _raw(self, chat: ChatRequest, choice: ModelChoice, slot: Slot, cancel: threading.Event):
        if choice.name == AUTO:
            raise ApiError(400, "raw generation needs a domain, an adapter or 'base' as model (no routing)",
                           param="model")
        return self.raw.complete(chat, choice, slot, cancel)


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


def _refuse(answer: Answer, chat: ChatRequest) -> None:
    """An answer that is a refusal or a failure becomes the protocol's error."""
    refusal = _refusal(answer, chat)
    if refusal is not None:
        raise refusal


def _refusal(answer: Answer, chat: ChatRequest) -> ApiError | None:
    if answer.refused == "busy":
        return protocol.busy_error(answer.error or "")
    if answer.refused == "adapter":
        return ApiError(404, answer.error or "adapter not loaded", code="model_not_found", param="model")
    if answer.refused == "invalid":  # the engine's RequestRejected: the evidence fills the prompt, so max_tokens
        return ApiError(400, answer.error or answer.text, param="max_tokens" if chat.token_limit else "messages")
    if answer.error in _INPUT_ERRORS:
        return ApiError(400, answer.text, param="messages")
    if answer.error and answer.error.startswith("generation failed"):
        return ApiError(503, answer.error, kind="server_error", code="generation_failed",
                        headers={"Retry-After": protocol.RETRY_AFTER_S})
    if answer.error and answer.error.startswith("internal error"):
        return _server_error(answer)
    return None


def _server_error(answer: Answer) -> ApiError:
    return ApiError(500, answer.error or "internal error", kind="server_error")


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
