"""The OpenAI chat-completions protocol as data: the request the API accepts, the responses, chunks
and errors it sends. Pure: no app, no model (assistant/web/openai_api.py does the work).

A body is JSON nested at most ``MAX_JSON_DEPTH`` levels (checked by a linear scan before it is
parsed); anything else is a 400 in the protocol's error format.

The request model ignores fields it does not know and fields that change nothing about an answer
(``user``, ``metadata``, ``store``, ``parallel_tool_calls`` ...). The OpenAI fields this server
does not implement are refused (400, code ``unsupported_parameter``, naming the field) unless they
carry a value that changes nothing, as clients send by default: ``tools``/``functions`` empty,
``tool_choice``/``function_call`` "none" or "auto", ``response_format`` {"type": "text"},
``logprobs`` false, ``top_logprobs`` 0, ``logit_bias`` empty, ``n`` 1, ``presence_penalty`` and
``frequency_penalty`` 0. ``top_p`` and ``seed`` only shape sampling: any value is accepted with
greedy decoding (``temperature`` 0 or absent), where they change nothing; with sampling, ``top_p``
below 1 and any ``seed`` are refused (sampling here is neither truncated nor seeded).

It takes three of vLLM's extensions, so that this app's ``/v1`` can stand in for a multi-LoRA vLLM
server as another instance's generation backend (assistant/serving/remote_engine.py):
``continue_final_message`` (the last message is the start of the reply, continued),
``allowed_token_ids`` (here for a one-token request only: the first token is the likeliest of
these; at most ``MAX_ALLOWED_TOKEN_IDS`` ids, none negative) and ``add_generation_prompt``
(accepted; the reply always follows the chat template's assistant turn). ``raw`` is this app's
own: plain generation from the messages, without routing, retrieval or attribution, which is what
a LoRA server does.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from itertools import accumulate
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_STOP_STRINGS = 4  # as OpenAI's API allows
MAX_STOP_CHARS = 200  # each: a stream holds back up to this many characters that may begin one
MAX_ALLOWED_TOKEN_IDS = 256
MAX_JSON_DEPTH = 64  # a request nests 5 levels (messages, a message, its content parts, a part)
RETRY_AFTER_S = "2"

# The depth scan's parts: an escape pair (a backslash and the character after it), and what each
# byte does to the nesting.
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_NESTING = [0] * 256
for _open, _close in (b"[]", b"{}"):
    _NESTING[_open], _NESTING[_close] = 1, -1


class ApiError(Exception):
    """An error the client gets in the protocol's format, with its HTTP status."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = status, message, kind, code, param
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class ModelChoice:
    """What a request's ``model`` means."""
    name: str
    domain: str | None = None  # routing forced to this domain (None: the router decides)
    adapter: str | None = None  # exactly this adapter
    base_model: bool = False  # no adapter


def busy_error(detail: str) -> ApiError:
    return ApiError(503, f"the assistant is busy; try again in a moment ({detail})", kind="server_error",
                    code="server_busy", headers={"Retry-After": RETRY_AFTER_S})


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
    # OpenAI's fields that this server does not implement: refused unless their value changes nothing
    n: int | None = Field(default=None, ge=1)
    tools: list[Any] | None = None
    tool_choice: str | dict | None = None
    functions: list[Any] | None = None
    function_call: str | dict | None = None
    response_format: dict | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0)
    logit_bias: dict[str, float] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    seed: int | None = None
    # vLLM's extensions and this app's (see the module docstring)
    raw: bool = False
    continue_final_message: bool = False
    add_generation_prompt: bool = True
    allowed_token_ids: list[Annotated[int, Field(ge=0)]] | None = Field(default=None, max_length=MAX_ALLOWED_TOKEN_IDS)

    @field_validator("stop")
    @classmethod
    def _few_short_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        stops = [stop] if isinstance(stop, str) else (stop or [])
        if len(stops) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop sequences")
        if any(len(s) > MAX_STOP_CHARS for s in stops):
            raise ValueError(f"a stop sequence may have at most {MAX_STOP_CHARS} characters")
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

    def unsupported(self) -> tuple[str, str] | None:
        """The first field asking for what this server does not do, with why: (field, reason)."""
        sampling = bool(self.temperature)
        refused = [
            ("n", (self.n or 1) > 1, "one choice is generated per request (n 1)"),
            ("tools", bool(self.tools), "the answers do not call tools"),
            ("tool_choice", self.tool_choice not in (None, "none", "auto"), "the answers do not call tools"),
            ("functions", bool(self.functions), "the answers do not call functions"),
            ("function_call", self.function_call not in (None, "none", "auto"), "the answers do not call functions"),
            ("response_format", self.response_format is not None and self.response_format.get("type") != "text",
             "the answers are plain text with [n] citations"),
            ("logprobs", bool(self.logprobs), "log probabilities are not returned"),
            ("top_logprobs", bool(self.top_logprobs), "log probabilities are not returned"),
            ("logit_bias", bool(self.logit_bias), "token biases are not applied"),
            ("presence_penalty", bool(self.presence_penalty), "no penalties are applied"),
            ("frequency_penalty", bool(self.frequency_penalty), "no penalties are applied"),
            ("top_p", sampling and self.top_p is not None and self.top_p < 1,
             "sampling is not truncated (top_p 1; with temperature 0 decoding is greedy and top_p changes nothing)"),
            ("seed", sampling and self.seed is not None,
             "sampling is not seeded (with temperature 0 decoding is greedy and gives the same answer every time)"),
        ]
        return next(((field, why) for field, asked, why in refused if asked), None)


def read_request(body: bytes, max_tokens: int) -> ChatRequest:
    """The request a body carries, checked; ``max_tokens``: the most a request may ask for."""
    depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise ApiError(400, f"the request body is JSON nested {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted")
    try:
        data = json.loads(body)
    except ValueError as exc:  # not JSON, or not UTF-8
        raise ApiError(400, f"the request body is not JSON ({exc})") from None
    return parse_request(data, max_tokens)


def json_depth(body: bytes) -> int:
    """How deep arrays and objects nest in a JSON text, in time linear in its length: the parser
    recurses, so a body of 100,000 "[" is refused before it reaches it. Escapes occur only inside
    strings (elsewhere the parser refuses them), so once the escape pairs are gone every quote
    opens or closes a string."""
    unescaped = _ESCAPE.sub(b"", body)
    outside_strings = b"".join(unescaped.split(b'"')[::2])
    brackets = outside_strings.translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_NESTING.__getitem__, brackets)), default=0)


def parse_request(data: object, max_tokens: int) -> ChatRequest:
    try:
        chat = ChatRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ApiError(400, f"{where}: {first['msg']}" if where else first["msg"],
                       param=str(first["loc"][0]) if first["loc"] else None) from None
    unsupported = chat.unsupported()
    if unsupported is not None:
        field, why = unsupported
        raise ApiError(400, f"{field} is not supported with this value: {why}", code="unsupported_parameter",
                       param=field)
    for field in ("max_tokens", "max_completion_tokens"):
        asked = getattr(chat, field)
        if asked is not None and asked > max_tokens:
            raise ApiError(400, f"{field} is {asked}; this server allows at most {max_tokens}", param=field)
    return chat


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
