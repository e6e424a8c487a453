"""Streaming generation on the shared base model with one request's adapter.

``Generator.stream`` returns a :class:`GenerationStream`: iterate it for text pieces as they are
decoded; afterwards ``.result`` says how it ended (end token, token limit, timeout, cancelled)
with timings. Generation runs in a worker thread (transformers' TextIteratorStreamer) while the
caller holds the pool's lock for that adapter; a stopping criterion ends it at the deadline or
when the caller cancels (a closed browser tab), so the lock is never held for longer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Iterator

from assistant.adapter_pool import AdapterPool
from assistant.settings import Settings

# A 135M model loops easily under greedy decoding; a mild penalty keeps answers from repeating.
REPETITION_PENALTY = 1.1


@dataclass
class GenerationResult:
    text: str = ""
    new_tokens: int = 0
    prompt_tokens: int = 0
    stopped: str = ""  # "end", "max_tokens", "timeout" or "cancelled"
    seconds: float = 0.0
    first_token_s: float | None = None

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


class _StopWhen:
    """Stopping criterion: past the deadline, or cancelled by the caller."""

    def __init__(self, deadline: float, cancel: threading.Event):
        self.deadline, self.cancel = deadline, cancel

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        stop = self.cancel.is_set() or time.monotonic() > self.deadline
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class GenerationStream:
    def __init__(self, pool: AdapterPool, messages: list[dict], adapter: str | None, max_new_tokens: int,
                 timeout_s: float, cancel: threading.Event | None = None):
        self.pool, self.messages, self.adapter = pool, messages, adapter
        self.max_new_tokens, self.timeout_s = max_new_tokens, timeout_s
        self.cancel = cancel or threading.Event()
        self.result = GenerationResult()

    def __iter__(self) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        tokenizer = self.pool.tokenizer
        prompt = tokenizer.apply_chat_template(self.messages, tokenize=False, add_generation_prompt=True)
        started = time.monotonic()
        deadline = started + self.timeout_s
        with self.pool.using(self.adapter) as model:
            inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
            self.result.prompt_tokens = int(inputs["input_ids"].shape[1])
            streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True,
                                            timeout=self.timeout_s + 30)
            failure: list[BaseException] = []
            output_length: list[int] = []

            def work() -> None:
                try:
                    with torch.no_grad():
                        output = model.generate(**inputs, streamer=streamer, max_new_tokens=self.max_new_tokens,
                                                do_sample=False, repetition_penalty=REPETITION_PENALTY,
                                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                                stopping_criteria=StoppingCriteriaList([_StopWhen(deadline, self.cancel)]))
                    output_length.append(int(output.shape[1]) - self.result.prompt_tokens)
                except BaseException as exc:  # re-raised in the caller's thread below
                    failure.append(exc)
                    streamer.end()

            worker = threading.Thread(target=work, name="generate", daemon=True)
            worker.start()
            exhausted = False
            try:
                for piece in streamer:
                    if not piece:
                        continue
                    if self.result.first_token_s is None:
                        self.result.first_token_s = time.monotonic() - started
                    self.result.text += piece
                    yield piece
                exhausted = True
            finally:
                if not exhausted:  # the caller stopped reading (or failed): stop generating too
                    self.cancel.set()
                worker.join()
        if failure:
            raise failure[0]
        self.result.new_tokens = output_length[0] if output_length else 0
        self.result.seconds = time.monotonic() - started
        self.result.stopped = self._reason(deadline)

    def _reason(self, deadline: float) -> str:
        if self.cancel.is_set():
            return "cancelled"
        if time.monotonic() > deadline:
            return "timeout"
        return "max_tokens" if self.result.new_tokens >= self.max_new_tokens else "end"


class Generator:
    def __init__(self, pool: AdapterPool, settings: Settings):
        self.pool, self.settings = pool, settings

    def count_tokens(self, text: str) -> int:
        return len(self.pool.tokenizer(text, add_special_tokens=False)["input_ids"])

    def stream(self, messages: list[dict], adapter: str | None, *, max_new_tokens: int | None = None,
               timeout_s: float | None = None, cancel: threading.Event | None = None) -> GenerationStream:
        return GenerationStream(self.pool, messages, adapter, max_new_tokens or self.settings.max_new_tokens,
                                timeout_s or self.settings.generation_timeout_s, cancel)
