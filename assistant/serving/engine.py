"""The serving engine: one thread owns the base model and its adapters and decodes every active
request together.

Callers :meth:`Engine.submit` a request (messages, an adapter or a domain, a token limit, a
timeout, a cancel event) and get a :class:`GenerationHandle` that yields text pieces from a
queue. They hold no lock and never touch the model. The engine's loop, on its own thread:

1. runs queued commands (hot-load, unload, rollback: :meth:`Engine.call`) between steps;
2. ends waiting requests that were cancelled or whose deadline passed (waiting counts);
3. admits waiting requests while the batch has room (``engine_max_batch``, counting those being
   prefilled) and prefills them alone, oldest first, in parts: while rows are decoding, at most
   ``engine_prefill_tokens_per_step`` prompt tokens between two decode steps (chunked prefill:
   the smaller the parts, the shorter a running answer's pauses, at a forward pass's fixed cost
   each); with no row decoding, whole prompts in parts of ``engine_prefill_chunk_tokens``. A cancel or the deadline
   stops a newcomer between parts. On a CPU with bfloat16 matrix units the prompt's forward
   passes run in bfloat16 (``engine_prefill_dtype``: about twice as fast), the decode steps in
   float32. Its first token is streamed at once, then it joins the batch;
4. decodes one token for every row in one forward pass (assistant/serving/decoding.py), each row with
   the adapter it started with, and drops rows that ended, hit their limit or deadline, or were
   cancelled (a closed tab) at the next step.
It sleeps only when it has nothing to do; a submission, a command or a cancel wakes it.

Beyond ``engine_max_waiting`` live waiting requests (assistant/serving/waiting_line.py: a cancelled or
expired one stops counting at once), :meth:`submit` refuses at once (EngineBusy); once the
engine has stopped, with EngineStopped. A failing prefill, merge into the batch or forward pass
fails the requests in it, never the engine; any other error in the loop fails the batch it may
have left half-changed, is logged and counted (``recoveries``), and the engine goes on.
:meth:`call` gives up after ``engine_call_timeout_s``. On CUDA the same code runs on the GPU; on
CPU it uses the threads torch is given.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable, TypeVar

from adapters.base_model import BaseModel, training_device
from assistant.serving.adapter_pool import AdapterLoadError, AdapterPool
from assistant.serving.command_queue import CommandQueue
from assistant.serving.decoding import (DecodeBatch, PartialPrefill, Row, column_major_weights, fast_prefill_dtype,
                                        greedy_tokens)
from assistant.serving.engine_jobs import EngineJob, EngineStats
from assistant.serving.engine_base import SMOKE_NEW_TOKENS, SMOKE_QUESTION, STOPPED, EngineBase, context_window_of
from assistant.serving.generation import EngineStopped, GenerationHandle
from assistant.serving.waiting_line import WaitingLine
from assistant.settings import Settings
from indexing.openmp_threads import claims_the_team

log = logging.getLogger(__name__)

IDLE_WAIT_S = 1.0  # an idle loop wakes at once for new work; this only bounds a missed wake-up
STOP_WAIT_S = 10.0
T = TypeVar("T")


class Engine(EngineBase):
    def __init__(self, settings: Settings, base: BaseModel | None = None, *, load_registered: bool = True,
                 device: str | None = None):
        self.settings = settings
        self.stats = EngineStats()
        self._waiting: WaitingLine[EngineJob] = WaitingLine(self.stats)
        self._commands = CommandQueue(STOPPED)
        self._wake, self._stopping, self._ready = threading.Event(), threading.Event(), threading.Event()
        self._startup_error: BaseException | None = None
        self._batch = DecodeBatch()  # the engine's thread only
        self._prefilling: collections.deque[EngineJob] = collections.deque()  # admitted, not yet in the batch
        self._thread = threading.Thread(target=self._run, args=(base, load_registered, device or training_device()),
                                        name="engine", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    # --- for callers (any thread) ------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def context_window(self) -> int:
        return self._context_window

    @property
    def vocabulary_size(self) -> int:
        return self._vocabulary

    def _enqueue(self, handle: GenerationHandle) -> None:
        if self._stopping.is_set() or not self.alive:  # the line closes when the thread ends; not yet
            raise EngineStopped(STOPPED)
        self._waiting.join(EngineJob(handle), self.settings.engine_max_waiting, STOPPED)
        self._wake.set()

    def _wake_engine(self) -> None:
        self._wake.set()

    def call(self, command: Callable[[], T], timeout_s: float | None = None) -> T:
        """Run ``command`` on the engine's thread between two decode steps and return its value
        (or raise its exception). From the engine's own thread it runs at once. Not run within
        ``timeout_s`` (default: the engine_call_timeout_s setting): TimeoutError, and a command
        that had not started yet never runs."""
        if threading.current_thread() is self._thread:
            return command()
        timeout_s = timeout_s or self.settings.engine_call_timeout_s
        future = self.call_later(command)
        try:
            return future.result(timeout_s)
        except FutureTimeout:
            if future.done():  # it finished just now, or the command raised a TimeoutError itself
                return future.result()
            if future.cancel():
                raise TimeoutError(f"the serving engine did not start the command within {timeout_s:g} s "
                                   "(it is stuck or very busy); the command was withdrawn") from None
            raise TimeoutError(f"the serving engine's command did not finish within {timeout_s:g} s; "
                               "it may still take effect") from None

    def call_later(self, command: Callable[[], T]) -> Future:
        accepting = not (self._waiting.closed or self._stopping.is_set() or not self.alive)
        future = self._commands.put(command, accepting)
        self._wake.set()
        return future

    def occupancy(self) -> dict:
        """What the engine is doing now: requests admitted (decoding, or starting: their prompts
        still being prefilled), live requests waiting, and how many times it has recovered from an
        error outside any one request (see the log)."""
        return {"running": len(self._batch) + len(self._prefilling), "starting": len(self._prefilling),
                "waiting": self._waiting.waiting(), "recoveries": self.stats.recoveries}

    def close(self) -> None:
        """Stop the loop; running and waiting requests end as cancelled."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(STOP_WAIT_S)

    # --- the engine's thread -----------------------------------------------------------------------
    def _run(self, base: BaseModel | None, load_registered: bool, device: str) -> None:
        claims_the_team()  # the one thread that keeps torch's OpenMP team (share_cores_with_engine)
        try:
            import torch

            self._pool = AdapterPool(self.settings, base, device)
            if device == "cpu" and self.settings.serve_quantization == "none":
                column_major_weights(self._pool.model)
            self._vocabulary = self._pool.model.get_output_embeddings().weight.shape[0]
            self._context_window = context_window_of(self._pool.model.config)
            self._stop_ids = _stop_token_ids(self._pool)
            if load_registered:
                for name in self._pool.startup_choices():
                    try:
                        self._pool.serve(self._pool.resolve(name), self._smoke_test)
                    except AdapterLoadError as exc:
                        log.error("not serving adapter %s: %s", name, exc)
        except BaseException as exc:  # re-raised by the constructor
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            with torch.inference_mode():
                while not self._stopping.is_set():
                    try:
                        self._turn()
                    except Exception as exc:  # outside any one request's guard: see _recover
                        self._recover(exc)
        except BaseException:  # nothing to recover into: every caller is told, none waits
            log.critical("the serving engine's thread died", exc_info=True)
            self._shut_down("error", "the serving engine stopped after an error")
            return
        self._shut_down("cancelled", "the serving engine stopped")

    def _turn(self) -> None:
        self._wake.clear()
        self.stats.commands += self._commands.run_all()
        self._end_waiting_that_ended()
        self._admit()
        self._prefill()
        if self._batch.rows:
            self._step()
        elif not self._commands and not self._waiting.has_work() and not self._prefilling:
            self._wake.wait(IDLE_WAIT_S)

    def _recover(self, exc: Exception) -> None:
        """An error outside any one request's guard (dropping rows, an adapter's unpin): the
        batch's shared state may be half-changed, so its requests (and those being prefilled)
        fail with the error; the engine starts a fresh batch and goes on."""
        log.exception("the serving engine recovered from an error; the requests in its batch failed")
        self.stats.recoveries += 1
        involved = [row.owner for row in self._batch.rows] + list(self._prefilling)
        self._batch, self._prefilling = DecodeBatch(), collections.deque()
        self._end_all(involved, "error", f"the serving engine failed ({type(exc).__name__}: {exc}); please try again")
        if not involved:  # a fault no request explains may come back at once: do not spin on it
            self._wake.wait(IDLE_WAIT_S)

    def _end_waiting_that_ended(self) -> None:
        for job in self._waiting.take_ended():
            self._finish(job, "cancelled" if job.request.cancel.is_set() else "timeout")

    def _admit(self) -> None:
        while len(self._batch) + len(self._prefilling) < self.settings.engine_max_batch:
            job = self._waiting.next()
            if job is None:
                break
            self._begin(job)

    def _begin(self, job: EngineJob) -> None:
        request, result = job.request, job.handle.result
        try:
            job.adapter = request.adapter if request.adapter is not None else self._pool.adapter_for(request.domain)
            self._pool.pin(job.adapter)
        except AdapterLoadError as exc:
            self._finish(job, "error", str(exc))
            return
        job.admitted, result.adapter = True, job.adapter
        result.queued_s = time.monotonic() - request.submitted
        try:
            model = self._pool.model
            job.prefill = PartialPrefill(model, request.prompt_ids, job.adapter,
                                         fast_prefill_dtype(self.settings.engine_prefill_dtype, model))
        except Exception as exc:
            log.exception("prefill failed")
            self._finish(job, "error", f"{type(exc).__name__}: {exc}")
            return
        self._prefilling.append(job)

    def _prefill(self) -> None:
        """Newcomers' prompts through the model, oldest first: parts of at most
        engine_prefill_chunk_tokens, and while rows are decoding no more than
        engine_prefill_tokens_per_step tokens before the next decode step."""
        for job in [job for job in self._prefilling if job.request.ended()]:  # their places go back at once
            self._prefilling.remove(job)
            self._finish(job, "cancelled" if job.request.cancel.is_set() else "timeout")
        budget = self.settings.engine_prefill_tokens_per_step
        while self._prefilling and budget > 0:
            job = self._prefilling[0]
            if job.request.ended():
                self._prefilling.popleft()
                self._finish(job, "cancelled" if job.request.cancel.is_set() else "timeout")
                continue
            part = min(self.settings.engine_prefill_chunk_tokens, budget if self._batch.rows else job.prefill.remaining)
            if self._batch.rows:
                budget -= part
            if self._prefill_part(job, part) and not job.prefill.remaining:
                self._prefilling.popleft()
                self._join(job)

    def _prefill_part(self, job: EngineJob, tokens: int) -> bool:
        """One forward pass of the newcomer's prompt; False when it failed (and has ended)."""
        started = time.monotonic()
        try:
            job.prefill.advance(self._pool.model, tokens)
        except Exception as exc:
            log.exception("prefill failed")
            self._prefilling.remove(job)
            self._finish(job, "error", f"{type(exc).__name__}: {exc}")
            return False
        seconds = time.monotonic() - started
        job.handle.result.prefill_s += seconds
        self.stats.prefill_s += seconds
        return True

    def _join(self, job: EngineJob) -> None:
        """A prefilled newcomer streams its first token and joins the batch."""
        request, part = job.request, job.prefill
        job.prefill = None
        try:
            prefilled = part.result(self._vocabulary, request.first_token_choices, request.temperature)
        except Exception as exc:
            log.exception("prefill failed")
            self._finish(job, "error", f"{type(exc).__name__}: {exc}")
            return
        self.stats.prefill_tokens += len(request.prompt_ids)
        if self._emit(job, prefilled.first_token):
            return
        try:  # a failed merge (out of memory for a long prompt's cache) leaves the batch as it was
            self._batch.add(Row(job, job.adapter, prefilled.length, prefilled.first_token, request.temperature),
                            prefilled)
        except Exception as exc:
            log.exception("joining the batch failed")
            self._finish(job, "error", f"{type(exc).__name__}: {exc}")

    def _step(self) -> None:
        batch, now = self._batch, time.monotonic()
        leaving = [row for row in batch.rows if row.owner.request.ended(now)]
        for row in leaving:
            self._finish(row.owner, "cancelled" if row.owner.request.cancel.is_set() else "timeout")
        batch.remove(leaving)
        if not batch.rows:
            return
        started = time.monotonic()
        try:
            tokens = batch.step(self._pool.model)
        except Exception as exc:  # the rows in this step fail; the engine and later requests go on
            log.exception("decode step failed")
            for row in batch.rows:
                self._finish(row.owner, "error", f"{type(exc).__name__}: {exc}")
            self._batch = DecodeBatch()
            return
        seconds = time.monotonic() - started
        self.stats.decode_s += seconds
        self.stats.decode_steps += 1
        self.stats.decode_rows += len(batch.rows)
        ended = []
        for row, token in zip(batch.rows, tokens):
            job = row.owner
            job.handle.result.decode_s += seconds
            job.steps += 1
            job.rows_seen += len(batch.rows)
            if self._emit(job, token):
                ended.append(row)
        batch.remove(ended)

    def _emit(self, job: EngineJob, token: int) -> bool:
        """Hand one new token to the caller; True when the request has ended with it."""
        result = job.handle.result
        job.generated += 1
        if result.first_token_s is None:
            result.first_token_s = time.monotonic() - job.request.submitted
        if token in self._stop_ids:
            self._finish(job, "end")
            return True
        if job.request.stop_when is not None:
            job.tokens.append(token)
            try:
                met = job.request.stop_when(job.request.prefix + self.tokenizer.decode(job.tokens, skip_special_tokens=True))
            except Exception as exc:  # a caller's criterion fails its own request, never the engine
                log.exception("stop_when failed")
                self._finish(job, "error", f"stop_when: {type(exc).__name__}: {exc}")
                return True
            if met:
                job.generated -= 1  # the token that began what is not wanted is not part of the reply
                self._finish(job, "stop_when")
                return True
        job.handle.push([token])
        if job.generated >= job.request.max_new_tokens:
            self._finish(job, "max_tokens")
            return True
        return False

    def _finish(self, job: EngineJob, stopped: str, error: str = "") -> None:
        result = job.handle.result
        result.stopped, result.error, result.new_tokens = stopped, error, job.generated
        result.seconds = time.monotonic() - job.request.submitted
        result.mean_batch = job.rows_seen / job.steps if job.steps else (1.0 if job.generated else 0.0)
        self.stats.finished[stopped] = self.stats.finished.get(stopped, 0) + 1
        try:
            if job.admitted:
                job.admitted = False
                self._pool.unpin(job.adapter)  # may delete an unloaded adapter's weights: may fail
        finally:
            job.handle.finish()  # whatever happens to the adapter, the caller stops waiting

    def _smoke_test(self, pool: AdapterPool, name: str) -> None:
        """Finite logits and a few non-empty greedy tokens with the new adapter, decoded alone."""
        ids = self.encode([{"role": "user", "content": SMOKE_QUESTION}])
        tokens, finite = greedy_tokens(pool.model, ids, name, self._vocabulary, SMOKE_NEW_TOKENS)
        if not finite:
            raise AdapterLoadError("its logits are not finite (NaN or infinity)")
        if not self.tokenizer.decode(tokens, skip_special_tokens=True).strip():
            raise AdapterLoadError("it generates empty text")

    def _shut_down(self, stopped: str, error: str) -> None:
        """Refuse everything from now on, then end every request and command still held."""
        held = [row.owner for row in self._batch.rows] + list(self._prefilling) + self._waiting.close()
        self._batch, self._prefilling = DecodeBatch(), collections.deque()
        self._end_all(held, stopped, error)
        self._commands.close()

    def _end_all(self, jobs: list[EngineJob], stopped: str, error: str) -> None:
        for job in jobs:
            if not job.handle.done:
                try:
                    self._finish(job, stopped, error)
                except Exception:  # its handle is finished anyway (see _finish); the others must be too
                    log.exception("finishing a request failed")


def _stop_token_ids(pool: AdapterPool) -> set[int]:
    ids = {pool.tokenizer.eos_token_id}
    configured = getattr(pool.model.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return {i for i in ids if i is not None}
