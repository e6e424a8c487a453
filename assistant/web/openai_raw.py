"""Raw generation on ``/v1`` (``raw: true``): plain generation from the messages on the serving
engine, without routing, retrieval or attribution, as a multi-LoRA server does; this is what
another instance's remote generation backend asks for (assistant/serving/remote_engine.py).

``model`` names the adapter (an adapter's name, a domain's active adapter, or ``base``); vLLM's
``continue_final_message`` continues the last (assistant) message, ``allowed_token_ids`` limits a
one-token reply's token, ``stop`` ends the text where a stop string begins. A request the engine
can never run (the prompt and ``max_tokens`` beyond the model's context, a token id outside the
vocabulary) is a 400, and the engine never starts it.
"""

from __future__ import annotations

import threading
from typing import Iterator

from assistant.serving.adapter_pool import AdapterLoadError
from assistant.serving.engine_base import EngineBase
from assistant.serving.generation import EngineBusy, GenerationFailed, RequestRejected
from assistant.web import openai_protocol as protocol
from assistant.web.openai_protocol import ApiError, ChatRequest, ModelChoice
from assistant.web.openai_transport import Slot, closer, sse_response


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


class RawGeneration:
    def __init__(self, engine: EngineBase):
        self.engine = engine

    def complete(self, chat: ChatRequest, model: ModelChoice, slot: Slot, cancel: threading.Event):
        """The response to a raw request: a completion, or a stream that owns ``slot`` and ``cancel``."""
        handle = self._submit(chat, model, cancel)
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
            return protocol.completion(cid, chat.model, text, _finish(handle, stops), self._usage(handle, text))
        return sse_response(self._events(chat, cid, handle, pieces, stops), closer(cancel, pieces, slot))

    def _submit(self, chat: ChatRequest, model: ModelChoice, cancel: threading.Event):
        messages = [{"role": m.role, "content": m.text()} for m in chat.messages]
        prefix = ""
        if chat.continue_final_message:
            if messages[-1]["role"] != "assistant":
                raise ApiError(400, "continue_final_message needs an assistant message last", param="messages")
            prefix = messages.pop()["content"]
        choices = tuple(chat.allowed_token_ids or ())
        if choices and chat.token_limit != 1:
            raise ApiError(400, "allowed_token_ids is supported for max_tokens 1 only", param="allowed_token_ids")
        try:
            return self.engine.submit(
                messages, adapter=model.adapter, domain=None if model.base_model else model.domain,
                max_new_tokens=chat.token_limit, cancel=cancel, answer_prefix=prefix,
                first_token_choices=choices, temperature=chat.temperature or 0.0)
        except EngineBusy as exc:
            raise protocol.busy_error(str(exc)) from None
        except AdapterLoadError as exc:
            raise ApiError(404, str(exc), code="model_not_found", param="model") from None
        except RequestRejected as exc:  # the message says which field: a token id, or the context
            param = getattr(exc, "param", None) or (
                "allowed_token_ids" if choices and "token id" in str(exc) else "messages")
            raise ApiError(400, str(exc), param=param) from None

    def _events(self, chat: ChatRequest, cid: str, handle, pieces: Iterator[str], stops: StopFilter):
        yield protocol.chunk(cid, chat.model, {"role": "assistant", "content": ""})
        text = ""
        try:
            for piece in _until_stop(pieces, stops):
                text += piece
                yield protocol.chunk(cid, chat.model, {"content": piece})
        except GenerationFailed as exc:  # the status is sent already: the error goes in the stream
            yield ApiError(500, f"generation failed: {exc}", kind="server_error").body()
            return
        yield protocol.chunk(cid, chat.model, {}, _finish(handle, stops))
        if chat.include_usage:
            yield protocol.usage_chunk(cid, chat.model, self._usage(handle, text))

    def _usage(self, handle, text: str) -> dict:
        completed = handle.result.stopped and handle.result.stopped != "cancelled"
        return protocol.usage(handle.result.prompt_tokens,
                              handle.result.new_tokens if completed else self.engine.count_tokens(text))


def _finish(handle, stops: StopFilter) -> str:
    return "stop" if stops.hit else protocol.finish_reason(handle.result.stopped)


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
