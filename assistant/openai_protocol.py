"""The OpenAI chat-completions protocol as data: the request the API accepts, the responses, chunks
and errors it sends. Pure: no app, no model (assistant/openai_api.py does the work).

The request model ignores fields it does not know (clients send ``top_p``, ``user``,
``presence_penalty`` ...) and takes three of vLLM's extensions, so that this app's ``/v1`` can
stand in for a multi-LoRA vLLM server as another instance's generation backend
(assistant/remote_engine.py): ``continue_final_message`` (the last message is the start of the
reply, continued), ``allowed_token_ids`` (here for a one-token request only: the first token is
the likeliest of these) and ``add_generation_prompt`` (accepted; the reply always follows the
chat template's assistant turn). ``raw`` is this app's own: plain generation from the messages,
without routing, retrieval or attribution, which is what a LoRA server does.
"""

from __future__ import annotations

import time
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_STOP_STRINGS = 4  # as OpenAI's API allows


class ApiError(Exception):
    """An error the client gets in the protocol's format, with its HTTP status."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = status, message, kind, code, param
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        """The message's text; a part that is not text (an image) is refused."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        for part in self.content:
            if part.type != "text":
                raise ApiError(400, f"content of type {part.type!r} is not supported (text only)", param="messages")
        return "".join(part.text or "" for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=1)
    # vLLM's extensions and this app's (see the module docstring)
    raw: bool = False
    continue_final_message: bool = False
    add_generation_prompt: bool = True
    allowed_token_ids: list[int] | None = None

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and len(stop) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop sequences")
        return stop

    @property
    def stop_strings(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return tuple(s for s in stops if s)

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def parse_request(body: object) -> ChatRequest:
    try:
        return ChatRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ApiError(400, f"{where}: {first['msg']}" if where else first["msg"],
                       param=str(first["loc"][0]) if first["loc"] else None) from None


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def model_list(names: list[str]) -> dict:
    return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "assistant"}
                                       for name in names]}


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion(completion_id: str, model: str, text: str, finish_reason: str, usage_: dict,
               extra: dict | None = None) -> dict:
    return {"id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": finish_reason, "logprobs": None}],
            "usage": usage_, **(extra or {})}


def chunk(completion_id: str, model: str, delta: dict, finish_reason: str | None = None,
          extra: dict | None = None) -> dict:
    return {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
            **(extra or {})}


def usage_chunk(completion_id: str, model: str, usage_: dict) -> dict:
    """The last chunk when the client asked for ``stream_options.include_usage``: no choices."""
    return {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [], "usage": usage_}


def finish_reason(stopped: str) -> str:
    """The engine's stop reason as the protocol names it: "length" when the answer was cut."""
    return "length" if stopped in ("max_tokens", "timeout") else "stop"
