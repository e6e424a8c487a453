"""What a caller of the serving engine holds: a request, a handle that streams its text, and the
result. No model here: the engine (assistant/serving/engine.py) does the decoding on its own thread and
hands token ids over a queue; the handle turns them into text on the caller's thread.

A handle holds no lock and touches no model, so a Gradio worker may iterate it, another worker
may close it (a closed browser tab), and nothing is left waiting: closing or abandoning the
iteration only sets the request's cancel event, and the engine frees its row at the next step.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

# How often a waiting consumer checks that the engine is still alive (a dead engine thread must
# not leave a Gradio worker waiting forever).
POLL_S = 1.0


class EngineBusy(RuntimeError):
    """The engine's waiting queue is full: the request was refused at once; try again."""


class EngineStopped(EngineBusy):
    """The serving engine is not running (closed, or its thread died): refused at once, never
    queued to wait for an engine that will not come back."""


class GenerationFailed(RuntimeError):
    """The model failed on this request (the engine goes on with the others)."""


class RequestRejected(ValueError):
    """The request can never run as asked (prompt plus max_new_tokens beyond the model's context,
    a token id outside the vocabulary): the caller's mistake, refused at submission (HTTP 400)."""


@dataclass
class GenerationRequest:
    prompt_ids: list[int]
    max_new_tokens: int
    deadline: float  # time.monotonic(): waiting in the queue counts too
    adapter: str | None = None  # exactly this adapter ...
    domain: str | None = None  # ... or this domain's active adapter when the request starts (None: base)
    cancel: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.monotonic)
    # The answer's text so far (after ``prefix``, the part of the answer already written into the
    # prompt) -> True to end it there; called on the engine's thread, so pure and quick.
    stop_when: Callable[[str], bool] | None = None
    prefix: str = ""
    first_token_choices: tuple[int, ...] = ()  # the first token is the likeliest of these (empty: any)
    temperature: float = 0.0  # 0: greedy
    messages: list[dict] = field(default_factory=list)  # what prompt_ids encode (a remote backend sends these)

    def ended(self, now: float | None = None) -> bool:
        """Cancelled, or past its deadline: nothing more is wanted of it."""
        return self.cancel.is_set() or (time.monotonic() if now is None else now) > self.deadline


@dataclass
class GenerationResult:
    text: str = ""
    new_tokens: int = 0
    prompt_tokens: int = 0
    stopped: str = ""  # "end", "stop_when" (the request's criterion), "max_tokens", "timeout", "cancelled" or "error"
    adapter: str | None = None  # the adapter it ran with (None: the base model)
    seconds: float = 0.0  # from submission to the last token
    first_token_s: float | None = None  # from submission
    queued_s: float = 0.0  # waiting for a place in the batch
    prefill_s: float = 0.0  # its prompt's forward pass
    decode_s: float = 0.0  # the decode steps it took part in (shared with the rows beside it)
    mean_batch: float = 0.0  # rows per decode step it took part in
    error: str = ""

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


class TextDecoder:
    """Token ids to text pieces: the whole answer is decoded again at each token (answers are
    short) and the new suffix is released, except a trailing incomplete UTF-8 character. A
    remote backend (assistant/serving/remote_engine.py) hands over text, which passes through."""

    def __init__(self, tokenizer):
        self.tokenizer, self.ids, self.released, self.remote_text = tokenizer, [], 0, ""

    def add(self, item: list[int] | str) -> str:
        if isinstance(item, str):
            self.remote_text += item
            return item
        self.ids += item
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        piece, self.released = text[self.released:], len(text)
        return piece

    def text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True) + self.remote_text


_END = object()


class GenerationHandle:
    """One submitted request: iterate for its text pieces; ``result`` is complete afterwards."""

    def __init__(self, request: GenerationRequest, tokenizer, engine_alive: Callable[[], bool],
                 wake_engine: Callable[[], None] = lambda: None):
        self.request = request
        self.result = GenerationResult(prompt_tokens=len(request.prompt_ids))
        self._tokenizer, self._engine_alive, self._wake_engine = tokenizer, engine_alive, wake_engine
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._finished = threading.Event()

    # --- the engine's side ---------------------------------------------------------------------
    def push(self, token_ids: list[int] | str) -> None:
        """New token ids, or (a remote backend) new text."""
        self._inbox.put(token_ids)

    def finish(self) -> None:
        self._finished.set()
        self._inbox.put(_END)

    # --- the caller's side ---------------------------------------------------------------------
    def cancel(self) -> None:
        """Free the request's place: at once in the waiting count, at the next step in the batch."""
        self.request.cancel.set()
        self._wake_engine()  # an idle engine would otherwise notice only at its next wake-up

    @property
    def done(self) -> bool:
        """The engine has finished the request (what it produced may still be unread)."""
        return self._finished.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until the engine has finished the request (without reading it); True if it has."""
        return self._finished.wait(timeout_s)

    def __iter__(self) -> Iterator[str]:
        decoder = TextDecoder(self._tokenizer)
        ended = False
        try:
            while True:
                item = self._next()
                if item is _END:
                    ended = True
                    break
                piece = decoder.add(item)
                if piece:
                    yield piece
        finally:
            if not ended:  # the caller stopped reading (a closed tab) or failed: free the row
                self.cancel()
        self.result.text = decoder.text()
        if self.result.stopped == "error":
            raise GenerationFailed(self.result.error)

    def text(self) -> str:
        """Wait for the whole answer."""
        return "".join(self)

    def _next(self):
        while True:
            try:
                return self._inbox.get(timeout=POLL_S)
            except queue.Empty:
                if not self._engine_alive() and not self._finished.is_set():
                    self.result.stopped, self.result.error = "error", "the serving engine stopped"
                    return _END
