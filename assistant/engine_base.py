"""What the two serving engines share: the local one (assistant/engine.py), which decodes on this
machine, and the remote one (assistant/remote_engine.py), which sends generation to an
OpenAI-compatible server. Callers (the answer writer, the admin service, the API) see one
interface: prompt tokens, :meth:`submit`, and the adapter commands, which run through
:meth:`call` so that each engine decides where a change of the adapter pool happens.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, TypeVar

from assistant.adapter_pool import AdapterLoadError, AdapterPool, ServingAdapter
from assistant.generation import GenerationHandle, GenerationRequest
from assistant.settings import Settings

T = TypeVar("T")
SMOKE_QUESTION = "Name one organ of the human body."
SMOKE_NEW_TOKENS = 8


class EngineBase(ABC):
    settings: Settings
    _pool: AdapterPool

    @property
    @abstractmethod
    def alive(self) -> bool:
        """False once the engine has stopped (a handle then stops waiting for it)."""

    def submit(self, messages: list[dict], *, adapter: str | None = None, domain: str | None = None,
               max_new_tokens: int | None = None, timeout_s: float | None = None,
               cancel: threading.Event | None = None, answer_prefix: str = "",
               stop_when: Callable[[str], bool] | None = None,
               first_token_choices: tuple[int, ...] = (), temperature: float = 0.0) -> GenerationHandle:
        """Queue a request; ``adapter`` names one exactly, ``domain`` means that domain's active
        adapter when the request starts (neither: the base model). ``answer_prefix`` is the reply's
        opening, already written; ``stop_when(prefix + text so far)`` ends the reply before the
        token that made it true (``stopped`` = "stop_when"); ``first_token_choices`` limits the
        reply's first token to the likeliest of those ids; ``temperature`` 0 is greedy, above it
        tokens are sampled. Raises EngineBusy when the engine cannot take it now."""
        if adapter is not None and not self._pool.is_loaded(adapter):
            raise AdapterLoadError(f"adapter {adapter!r} is not loaded")
        request = GenerationRequest(self.encode(messages, answer_prefix), max_new_tokens or self.settings.max_new_tokens,
                                    time.monotonic() + (timeout_s or self.settings.generation_timeout_s),
                                    adapter, domain, cancel or threading.Event(), stop_when=stop_when,
                                    prefix=answer_prefix, first_token_choices=tuple(first_token_choices),
                                    temperature=temperature, messages=list(messages))
        handle = GenerationHandle(request, self.tokenizer, lambda: self.alive)
        self._enqueue(handle)
        return handle

    @abstractmethod
    def _enqueue(self, handle: GenerationHandle) -> None:
        """Take the request on, or raise EngineBusy."""

    @property
    def pool(self) -> AdapterPool:
        """Read-only use from other threads (adapter_for, active, list, registry, base)."""
        return self._pool

    @property
    def tokenizer(self):
        return self._pool.tokenizer

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, messages: list[dict], answer_prefix: str = "") -> list[int]:
        """The prompt's token ids; ``answer_prefix`` is the start of the assistant's reply, already
        written (the model continues it)."""
        prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(prompt + answer_prefix, add_special_tokens=False)["input_ids"]

    def token_ids(self, words: list[str]) -> tuple[int, ...]:
        """The first token of each word as the reply's first token would spell it."""
        return tuple(dict.fromkeys(self.tokenizer(word, add_special_tokens=False)["input_ids"][0] for word in words))

    @abstractmethod
    def call(self, command: Callable[[], T], timeout_s: float | None = None) -> T:
        """Run a change of the adapter pool where this engine makes such changes; its value."""

    @abstractmethod
    def _smoke_test(self, pool: AdapterPool, name: str) -> None:
        """Raise AdapterLoadError when the newly loaded adapter ``name`` does not answer sensibly."""

    def load_adapter(self, source: str | Path) -> ServingAdapter:
        """Hot-load a registered adapter (by name) or an adapter folder and make it serve its
        domain; validation and installation run here, the switch through :meth:`call`."""
        info = self._pool.resolve(source)
        try:
            return self.call(lambda: self._pool.serve(info, self._smoke_test))
        except AdapterLoadError:  # serve() has removed the weights: drop the copy resolve() made too
            self._pool.forget_failed_install(source, info)
            raise

    def unload_adapter(self, name_or_domain: str) -> str:
        return self.call(lambda: self._pool.unload(name_or_domain))

    def rollback_adapter(self, domain: str) -> ServingAdapter:
        """Serve the domain's previous adapter again (loading it back if it was dropped)."""
        previous = self._pool.previous_for(domain)
        if previous is None:
            raise AdapterLoadError(f"{domain} has no previous adapter to roll back to")
        info = self._pool.resolve(previous)
        return self.call(lambda: self._pool.serve(info, self._smoke_test, domain))
