"""Generation on an OpenAI-compatible server (``generation_backend = openai``): vLLM started with
``--enable-lora --lora-modules medicine-v1=data/adapters/medicine-v1 ...``, LoRAX, or another
instance of this app's ``/v1``, with the adapter's name as ``model``.

:class:`RemoteEngine` has the local engine's interface (assistant/serving/engine_base.py), so routing,
retrieval, the prompt, the answer's lead, attribution and the UI do not change. What it does
differently:

- No weights here: the adapter pool keeps only the tokenizer (prompt budgets, the first-token
  choices) and which adapter serves each domain. Hot-loading validates the adapter as before and
  smoke-tests it *through the server*, so an adapter the server does not serve is refused and
  the previous one keeps serving.
- Each request streams from the server on a worker thread (``generation_max_concurrent`` at
  once, ``engine_max_waiting`` more may wait, the rest are refused with EngineBusy; a waiting
  request that was cancelled or expired stops counting at once); the server batches them.
  Cancelling (a closed tab) or the deadline closes the stream, which tells the server to stop.
- The context window a request must fit is the ``generation_context_window`` setting, else the
  base model's; token ids are checked against the base model's vocabulary.
- The reply's opening, already written (a graph fact, a quote), is sent as a final assistant
  message with vLLM's ``continue_final_message``; a yes/no question's first token comes from a
  one-token request restricted with vLLM's ``allowed_token_ids``; ``stop_when`` (the sentence
  limit) is checked here on the text as it arrives, and the piece that made it true is dropped,
  as the local engine drops that token. ``raw: true`` asks this app's own ``/v1`` for plain
  generation; vLLM ignores the field.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from adapters.base_model import BaseModel
from assistant.serving.adapter_pool import AdapterLoadError, AdapterPool
from assistant.serving.engine_jobs import EngineStats
from assistant.serving.engine_base import SMOKE_NEW_TOKENS, SMOKE_QUESTION, STOPPED, EngineBase, context_window_of
from assistant.serving.generation import EngineBusy, EngineStopped, GenerationHandle, GenerationRequest
from assistant.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class RemoteEngine(EngineBase):
    def __init__(self, settings: Settings, base: BaseModel | None = None, *, load_registered: bool = True,
                 device: str | None = None):
        import openai

        self.settings, self.stats = settings, EngineStats()
        self._openai = openai
        self._client = openai.OpenAI(base_url=settings.generation_base_url, max_retries=0,
                                     api_key=(settings.generation_api_key.get_secret_value()
                                              if settings.generation_api_key else "none"),
                                     timeout=settings.generation_timeout_s)
        self._pool = AdapterPool(settings, base, load_weights=False)
        self._config = _base_config(self._pool)
        self._workers = ThreadPoolExecutor(settings.generation_max_concurrent, thread_name_prefix="remote-generation")
        self._lock = threading.Lock()  # guards the two sets below and _closed
        self._changes = threading.Lock()  # one adapter-pool change at a time (the local engine's thread does that)
        # Submitted, not yet started / at the server now: a place each, but a waiting one that was
        # cancelled or expired gives its place back at once (its worker still finishes it).
        self._waiting: set[GenerationHandle] = set()
        self._running: set[GenerationHandle] = set()
        self._closed = False
        self._base_name: str | None = settings.generation_base_model
        if load_registered:
            for name in self._pool.startup_choices():
                try:
                    self.load_adapter(name)
                except AdapterLoadError as exc:
                    log.error("not serving adapter %s: %s", name, exc)

    # --- the engine interface -------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return not self._closed

    @property
    def context_window(self) -> int:
        return self.settings.generation_context_window or context_window_of(self._config)

    @property
    def vocabulary_size(self) -> int:
        return self._config.vocab_size

    def call(self, command: Callable[[], T], timeout_s: float | None = None) -> T:
        timeout_s = timeout_s or self.settings.engine_call_timeout_s
        if not self._changes.acquire(timeout=timeout_s):
            raise TimeoutError(f"another adapter change did not end within {timeout_s:g} s; "
                               "this one was not made")
        try:
            return command()
        finally:
            self._changes.release()

    def _enqueue(self, handle: GenerationHandle) -> None:
        """The model is chosen when the request starts (a hot-load may come first)."""
        limit = self.settings.generation_max_concurrent + self.settings.engine_max_waiting
        with self._lock:
            if self._closed:
                raise EngineStopped(STOPPED)
            self._waiting = {waiting for waiting in self._waiting if not waiting.request.ended()}
            held = len(self._waiting) + len(self._running)
            if held >= limit:
                self.stats.refused += 1
                raise EngineBusy(f"the assistant is busy ({held} requests at the generation server or "
                                 "waiting for it); try again")
            self._waiting.add(handle)
            self.stats.requests += 1
        try:
            self._workers.submit(self._generate, handle)
        except RuntimeError:  # closed since the check above: the workers take nothing more
            with self._lock:
                self._waiting.discard(handle)
            raise EngineStopped(STOPPED) from None

    def occupancy(self) -> dict:
        with self._lock:
            return {"running": len(self._running),
                    "waiting": sum(1 for waiting in self._waiting if not waiting.request.ended()),
                    "recoveries": self.stats.recoveries}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            running = list(self._running)
        for handle in running:
            handle.cancel()
        self._workers.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    # --- the workers ----------------------------------------------------------------------------------
    def _generate(self, handle: GenerationHandle) -> None:
        request, result = handle.request, handle.result
        with self._lock:
            self._waiting.discard(handle)
            self._running.add(handle)
        stopped, error = "error", ""
        try:
            result.queued_s = time.monotonic() - request.submitted
            if request.ended():
                stopped = "cancelled" if request.cancel.is_set() else "timeout"
                return
            result.adapter = request.adapter or self._pool.adapter_for(request.domain)
            stopped = self._stream(handle, request.messages, result.adapter or self.base_name())
        except self._openai.APIStatusError as exc:
            error = f"the generation server answered {exc.status_code}: {_message(exc)}"
        except self._openai.APIError as exc:  # the address goes to the log, not to the user
            log.error("the generation server at %s failed: %s", self.settings.generation_base_url, exc)
            error = f"the generation server cannot be reached ({exc})"
        except Exception as exc:  # this request fails, never the engine
            log.exception("remote generation failed")
            error = f"{type(exc).__name__}: {exc}"
        finally:
            result.stopped, result.error = stopped, error
            result.seconds = time.monotonic() - request.submitted
            result.mean_batch = 1.0 if result.new_tokens else 0.0
            self.stats.finished[stopped] = self.stats.finished.get(stopped, 0) + 1
            with self._lock:
                self._running.discard(handle)
            handle.finish()

    def _stream(self, handle: GenerationHandle, messages: list[dict], model: str) -> str:
        """One request's reply from the server, piece by piece into the handle; its stop reason."""
        request, result = handle.request, handle.result
        prefix, budget = request.prefix, request.max_new_tokens
        if request.first_token_choices:
            label = self._first_token(messages, prefix, model, request)
            self._deliver(handle, label)
            prefix, budget, result.new_tokens = prefix + label, budget - 1, 1
            if budget <= 0:
                return "max_tokens"
        started = time.monotonic()
        stream = self._client.chat.completions.create(
            **self._arguments(messages, prefix, model, request), max_tokens=budget, stream=True,
            stream_options={"include_usage": True}, timeout=max(1.0, request.deadline - time.monotonic()))
        with stream:  # leaving it closes the connection: the server stops generating
            stopped, text, generated = self._read(stream, handle, prefix)
        result.new_tokens += generated if generated is not None else self.count_tokens(text)
        result.decode_s = time.monotonic() - started
        return stopped

    def _read(self, stream, handle: GenerationHandle, prefix: str) -> tuple[str, str, int | None]:
        """(stop reason, the text delivered, the server's token count when it sent one)."""
        request, text, generated = handle.request, "", None
        for chunk in stream:
            if chunk.usage is not None:
                generated = chunk.usage.completion_tokens
            if request.cancel.is_set() or time.monotonic() > request.deadline:
                return ("cancelled" if request.cancel.is_set() else "timeout"), text, None
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            piece = choice.delta.content or ""
            if piece and request.stop_when is not None and request.stop_when(prefix + text + piece):
                return "stop_when", text, None
            if piece:
                text += piece
                self._deliver(handle, piece)
            if choice.finish_reason == "length":
                return "max_tokens", text, generated
        return "end", text, generated

    def _first_token(self, messages: list[dict], prefix: str, model: str, request: GenerationRequest) -> str:
        arguments = self._arguments(messages, prefix, model, request)
        arguments["extra_body"]["allowed_token_ids"] = list(request.first_token_choices)
        reply = self._client.chat.completions.create(**arguments, max_tokens=1)
        return reply.choices[0].message.content or ""

    def _arguments(self, messages: list[dict], prefix: str, model: str, request: GenerationRequest) -> dict:
        sent = messages + [{"role": "assistant", "content": prefix}] if prefix else messages
        return {"model": model, "messages": sent, "temperature": request.temperature, "extra_body": self._extra(prefix)}

    @staticmethod
    def _extra(prefix: str) -> dict:
        return {"raw": True, "continue_final_message": bool(prefix), "add_generation_prompt": not prefix}

    @staticmethod
    def _deliver(handle: GenerationHandle, piece: str) -> None:
        if handle.result.first_token_s is None:
            handle.result.first_token_s = time.monotonic() - handle.request.submitted
        handle.push(piece)

    def base_name(self) -> str:
        """The server's name for the base model without an adapter: the setting, else the first
        model it lists (vLLM lists the base first, as this app's /v1 does)."""
        if self._base_name is None:
            self._base_name = self._client.models.list().data[0].id
        return self._base_name

    def _smoke_test(self, pool: AdapterPool, name: str) -> None:
        """A few tokens from the server with the new adapter: it must serve it and write text."""
        try:
            reply = self._client.chat.completions.create(
                model=name, messages=[{"role": "user", "content": SMOKE_QUESTION}], max_tokens=SMOKE_NEW_TOKENS,
                temperature=0.0, extra_body=self._extra(""))
        except self._openai.APIStatusError as exc:
            raise AdapterLoadError(f"the generation server refused it ({exc.status_code}: {_message(exc)})") from None
        except self._openai.APIError as exc:
            raise AdapterLoadError(f"the generation server at {self.settings.generation_base_url} "
                                   f"cannot be reached: {exc}") from None
        if not (reply.choices and (reply.choices[0].message.content or "").strip()):
            raise AdapterLoadError("it generates empty text on the generation server")


def _base_config(pool: AdapterPool):
    """The base model's config (its context window and vocabulary), read from its folder."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(pool.base.path))


def _message(exc) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body)
    return (error.get("message") if isinstance(error, dict) else None) or str(exc)


def serving_engine(settings: Settings, base: BaseModel | None = None, **options) -> EngineBase:
    """The engine the settings ask for: local decoding, or a remote OpenAI-compatible server."""
    if settings.generation_backend == "openai":
        return RemoteEngine(settings, base, **options)
    from assistant.serving.engine import Engine

    return Engine(settings, base, **options)
