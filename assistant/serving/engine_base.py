"""What the two serving engines share: the local one (assistant/serving/engine.py), which decodes on this
machine, and the remote one (assistant/serving/remote_engine.py), which sends generation to an
OpenAI-compatible server. Callers (the answer writer, the admin service, the API) see one
interface: prompt tokens, :meth:`submit`, and the adapter commands, which run through
:meth:`call` so that each engine decides where a change of the adapter pool happens.

:meth:`submit` refuses, before anything is queued, a request that can never run as asked
(RequestRejected: the prompt plus max_new_tokens beyond the model's context window, a token id
outside the vocabulary); each engine then refuses what it cannot take now (EngineBusy) or at all
(EngineStopped).
"""

from __future__ import annotations

import numbers
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, TypeVar

from adapters.base_model import training_device
from assistant.serving.adapter_pool import AdapterLoadError, AdapterPool, ServingAdapter
from assistant.serving.generation import GenerationHandle, GenerationRequest, RequestRejected
from assistant.settings import Settings
from indexing.openmp_threads import hold_other_threads_to_one

T = TypeVar("T")
SMOKE_QUESTION = "Name one organ of the human body."
SMOKE_NEW_TOKENS = 8
STOPPED = "the assistant's model is not running (the serving engine has stopped)"


class EngineBase(ABC):
    settings: Settings
    _pool: AdapterPool

    @property
    @abstractmethod
    def alive(self) -> bool:
        """False once the engine has stopped (a handle then stops waiting for it)."""

    @property
    @abstractmethod
    def context_window(self) -> int:
        """The most tokens (prompt and reply together) the model can attend to."""

    @property
    @abstractmethod
    def vocabulary_size(self) -> int:
        """Token ids run from 0 to this, exclusive."""

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
        tokens are sampled. Raises RequestRejected when it can never run as asked, EngineBusy
        when the engine cannot take it now (EngineStopped: not at all)."""
        if adapter is not None and not self._pool.is_loaded(adapter):
            raise AdapterLoadError(f"adapter {adapter!r} is not loaded")
        prompt_ids = self.encode(messages, answer_prefix)
        max_new_tokens = max_new_tokens or self.settings.max_new_tokens
        choices = self._checked_token_ids(first_token_choices)
        self._check_length(len(prompt_ids), max_new_tokens)
        request = GenerationRequest(prompt_ids, max_new_tokens,
                                    time.monotonic() + (timeout_s or self.settings.generation_timeout_s),
                                    adapter, domain, cancel or threading.Event(), stop_when=stop_when,
                                    prefix=answer_prefix, first_token_choices=choices,
                                    temperature=temperature, messages=list(messages))
        handle = GenerationHandle(request, self.tokenizer, lambda: self.alive, self._wake_engine)
        self._enqueue(handle)
        return handle

    def _check_length(self, prompt_tokens: int, max_new_tokens: int) -> None:
        if max_new_tokens < 1:
            raise RequestRejected(f"max_tokens must be at least 1 (it is {max_new_tokens})")
        if prompt_tokens + max_new_tokens > self.context_window:
            raise RequestRejected(f"the prompt is {prompt_tokens} tokens and max_tokens {max_new_tokens}; "
                                  f"the model's context is {self.context_window} tokens")

    def _checked_token_ids(self, ids) -> tuple[int, ...]:
        """Token ids as ints, each inside the vocabulary: an id outside it would pick another
        token (-1: the last), fail the request, or on CUDA corrupt the device's state."""
        ids = tuple(ids)
        wrong = [i for i in ids if not isinstance(i, numbers.Integral) or isinstance(i, bool)
                 or not 0 <= i < self.vocabulary_size]
        if wrong:
            raise RequestRejected(f"token ids must be whole numbers from 0 to {self.vocabulary_size - 1}; "
                                  f"{', '.join(repr(i) for i in wrong[:5])} {'is' if len(wrong) == 1 else 'are'} not")
        return tuple(int(i) for i in ids)

    def _wake_engine(self) -> None:
        """A request was cancelled: tell the engine, where it waits for work (default: nothing)."""

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
        """Run a change of the adapter pool where this engine makes such changes; its value.
        TimeoutError when it cannot run within ``timeout_s`` (default: engine_call_timeout_s)."""

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


def context_window_of(config) -> int:
    """A transformers config's maximum positions (the names differ between model families)."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(f"the model's config ({type(config).__name__}) states no context window")


def share_cores_with_engine(settings: Settings) -> bool:
    """Call first, before any torch work, in a process that will decode on the CPU with an
    in-process engine (``make run``): every thread but the engine's then runs its torch work on
    one OpenMP thread, which keeps the engine's decode steps at the speed of the engine alone
    (indexing/openmp_threads.py says why). True when the threads are held."""
    if settings.generation_backend == "openai" or training_device() != "cpu":
        return False
    return hold_other_threads_to_one()
