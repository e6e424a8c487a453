"""The serving engine under faults and bad requests (issue 33), on the real base model: cancelled
and expired requests give their places back at once, an error outside any one request fails only
the requests it touched and the engine goes on, a dead engine refuses at once, a stuck one times
out its commands, work waiting is never slept on, long prompts are prefilled in chunks that a
cancel or the deadline stops, and a request that can never run is refused before it is queued."""

from __future__ import annotations

import threading

import pytest

import assistant.serving.decoding
import assistant.serving.engine
from assistant.serving.decoding import DecodeBatch, PartialPrefill
from assistant.serving.engine import Engine
from assistant.serving.generation import EngineBusy, EngineStopped, GenerationFailed, RequestRejected
from test_engine import MESSAGES, OTHER, WAIT_S, _alone, _settings, held

LONG = [{"role": "user", "content": (
    "A central bank manages a country's currency, money supply and interest rates. It often supervises "
    "the commercial banks, acts as a lender of last resort in a crisis, and holds the foreign reserves. "
    "Explain in plain words why a central bank raises interest rates when prices rise quickly.")}]
CHUNK = 16
MAX_WAITING = 4


@pytest.fixture(scope="module")
def engine(base_model, tmp_path_factory):
    """Short prefill chunks, one prompt token between two decode steps, a short wait for commands."""
    engine = Engine(_settings(base_model, tmp_path_factory.mktemp("faults"), engine_max_waiting=MAX_WAITING,
                              engine_prefill_tokens_per_step=1, engine_prefill_chunk_tokens=CHUNK,
                              engine_call_timeout_s=0.5), load_registered=False)
    yield engine
    engine.close()


# --- item 1: places in the waiting line ------------------------------------------------------------
def test_cancelled_and_expired_waiting_requests_give_their_places_back_at_once(engine):
    with held(engine):
        first = [engine.submit(MESSAGES, max_new_tokens=2) for _ in range(MAX_WAITING - 1)]
        expiring = engine.submit(MESSAGES, max_new_tokens=2, timeout_s=0.01)
        with pytest.raises(EngineBusy, match="busy"):
            engine.submit(MESSAGES, max_new_tokens=2)
        for handle in first:
            handle.cancel()
        while not expiring.request.ended():  # its deadline passes while it waits
            expiring.wait(0.01)
        assert engine.occupancy()["waiting"] == 0
        again = [engine.submit(MESSAGES, max_new_tokens=2) for _ in range(MAX_WAITING)]  # at once, engine still held
        assert engine.occupancy()["waiting"] == MAX_WAITING
        with pytest.raises(EngineBusy, match=f"busy \\({MAX_WAITING} requests waiting\\)"):
            engine.submit(MESSAGES, max_new_tokens=2)
    assert all(handle.text() and handle.result.stopped == "max_tokens" for handle in again)
    assert [handle.text() for handle in first] == [""] * len(first)
    assert {handle.result.stopped for handle in first} == {"cancelled"} and expiring.result.stopped == "timeout"


def test_the_remote_engine_counts_only_live_requests(base_model, tmp_path, monkeypatch):
    """Accounting only: the server's streams are replaced by ones that wait for the test."""
    from assistant.serving.remote_engine import RemoteEngine

    settings = _settings(base_model, tmp_path, generation_backend="openai", generation_base_url="http://127.0.0.1:9/v1",
                         generation_base_model="base", generation_max_concurrent=1, engine_max_waiting=2)
    remote = RemoteEngine(settings, base_model, load_registered=False)
    release, streaming = threading.Event(), threading.Event()

    def stream(handle, messages, model):
        streaming.set()
        release.wait(WAIT_S)
        return "end"

    monkeypatch.setattr(remote, "_stream", stream)
    try:
        running = remote.submit(MESSAGES)
        assert streaming.wait(WAIT_S)
        waiting = [remote.submit(MESSAGES) for _ in range(2)]
        with pytest.raises(EngineBusy, match="busy"):
            remote.submit(MESSAGES)
        for handle in waiting:
            handle.cancel()
        assert remote.occupancy() == {"running": 1, "waiting": 0, "recoveries": 0}
        later = [remote.submit(MESSAGES) for _ in range(2)]  # their places are free at once
        with pytest.raises(EngineBusy, match=r"busy \(3 requests"):
            remote.submit(MESSAGES)
        release.set()
        every = [running, *waiting, *later]
        assert all(handle.wait(WAIT_S) for handle in every)
        assert [h.result.stopped for h in every] == ["end", "cancelled", "cancelled", "end", "end"]
        assert remote.stats.refused == 2 and remote.occupancy() == {"running": 0, "waiting": 0, "recoveries": 0}
    finally:
        release.set()
        remote.close()
    with pytest.raises(EngineStopped, match="not running"):
        remote.submit(MESSAGES)


# --- item 2: errors outside any one request -----------------------------------------------------------
def test_a_failed_merge_into_the_batch_fails_only_the_newcomer(engine, monkeypatch):
    alone = engine.submit(MESSAGES, max_new_tokens=12).text()
    merge = DecodeBatch.add
    victims = []

    def add(batch, row, prefilled):
        if row.owner is not None and row.owner.handle in victims:
            raise RuntimeError("out of memory (injected) merging the cache")
        merge(batch, row, prefilled)

    monkeypatch.setattr(DecodeBatch, "add", add)
    with held(engine):
        running = engine.submit(MESSAGES, max_new_tokens=12)
        victims.append(engine.submit(OTHER, max_new_tokens=12))
    with pytest.raises(GenerationFailed, match="out of memory"):
        victims[0].text()
    assert running.text() == alone and running.result.stopped == "max_tokens"  # the row beside it went on
    assert engine.submit(OTHER, max_new_tokens=4).text() and engine.alive


def test_a_failure_dropping_rows_fails_the_batch_and_the_engine_goes_on(engine, monkeypatch):
    remove, recoveries = DecodeBatch.remove, engine.stats.recoveries
    failures = []

    def failing_remove(batch, leaving):
        if leaving and not failures:
            failures.append(leaving)
            raise RuntimeError("injected: the cache could not be cut")
        remove(batch, leaving)

    monkeypatch.setattr(DecodeBatch, "remove", failing_remove)
    monkeypatch.setattr(engine.settings, "engine_prefill_tokens_per_step", 10 ** 6)  # both join at once
    with held(engine):  # the long one is decoding when the short one ends
        long = engine.submit(OTHER, max_new_tokens=40)
        short = engine.submit(MESSAGES, max_new_tokens=2)
    assert short.text() and short.result.stopped == "max_tokens"  # it had ended before the failure
    with pytest.raises(GenerationFailed, match="the serving engine failed .*injected"):
        long.text()
    assert len(failures) == 1 and engine.stats.recoveries == recoveries + 1
    assert engine.occupancy()["recoveries"] == recoveries + 1
    answered = engine.submit(OTHER, max_new_tokens=4)
    assert answered.text() and answered.result.stopped == "max_tokens"
    assert engine.occupancy()["running"] == 0


def test_a_failing_adapter_release_still_ends_the_request(engine, monkeypatch):
    unpin, recoveries = engine.pool.unpin, engine.stats.recoveries
    calls = []

    def failing_unpin(name):
        calls.append(name)
        if len(calls) == 1:
            raise RuntimeError("injected: deleting the adapter failed")
        unpin(name)

    monkeypatch.setattr(engine.pool, "unpin", failing_unpin)
    handle = engine.submit(MESSAGES, max_new_tokens=3)
    assert handle.wait(WAIT_S) and handle.text() and handle.result.stopped == "max_tokens"
    # The handle is finished before the error reaches the loop's recovery; the next request is
    # answered in a later turn of the loop, so once it is, the recovery has been counted.
    assert engine.submit(MESSAGES, max_new_tokens=2).text()
    assert engine.stats.recoveries == recoveries + 1


def test_a_dead_engine_refuses_at_once_and_fails_what_it_held(base_model, tmp_path, monkeypatch):
    engine = Engine(_settings(base_model, tmp_path), load_registered=False)

    class Fatal(BaseException):  # what no loop may swallow (as SystemExit)
        pass

    def die():
        raise Fatal("injected")

    try:
        with held(engine):
            queued = engine.submit(MESSAGES, max_new_tokens=4)
            monkeypatch.setattr(engine, "_admit", die)  # the loop dies before it takes the request
        assert queued.wait(WAIT_S) and queued.result.stopped == "error"
        with pytest.raises(GenerationFailed, match="stopped after an error"):
            queued.text()
        with pytest.raises(EngineStopped, match="not running"):
            engine.submit(MESSAGES, max_new_tokens=4)
        with pytest.raises(EngineStopped):
            engine.call(lambda: None)
    finally:
        engine.close()
    assert not engine.alive


def test_a_command_the_engine_does_not_run_in_time_times_out_and_is_withdrawn(engine):
    ran = []
    with held(engine):
        with pytest.raises(TimeoutError, match="withdrawn"):
            engine.call(lambda: ran.append("late"))  # the engine_call_timeout_s setting (0.5 s here)
    assert engine.call(lambda: "next", timeout_s=WAIT_S) == "next"  # the queue of commands has passed
    assert ran == []


# --- item 3: no sleeping with work waiting -----------------------------------------------------------
def test_a_burst_of_one_token_requests_is_never_slept_on(engine, monkeypatch):
    """One request is admitted per loop here and each ends on its first token, so the batch is
    empty after every loop while requests still wait: the engine must not idle then."""
    monkeypatch.setattr(assistant.serving.engine, "IDLE_WAIT_S", 3600.0)
    monkeypatch.setattr(engine.settings, "engine_max_batch", 1)
    with held(engine):
        burst = [engine.submit(MESSAGES, max_new_tokens=1) for _ in range(MAX_WAITING)]
    assert all(handle.wait(WAIT_S) for handle in burst)  # a bound against a hang only
    assert [handle.result.new_tokens for handle in burst] == [1] * MAX_WAITING


# --- item 4: the context window; prefill in chunks -----------------------------------------------------
def test_a_prompt_longer_than_a_chunk_decodes_like_transformers_generate(engine, monkeypatch):
    import torch

    monkeypatch.setattr(engine.settings, "engine_prefill_dtype", "float32")  # generate's own precision
    ids = engine.encode(LONG)
    assert len(ids) > 3 * CHUNK
    with torch.inference_mode():  # the reference runs on this thread: the engine is idle meanwhile
        expected = engine.pool.model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False,
                                              repetition_penalty=assistant.serving.decoding.REPETITION_PENALTY,
                                              eos_token_id=engine.tokenizer.eos_token_id,
                                              pad_token_id=engine.tokenizer.pad_token_id)
    forward, passes = assistant.serving.decoding.forward, []

    def counted(model, input_ids, *args, **kwargs):
        passes.append(input_ids.shape[1])  # tokens fed: a prefill chunk, or one per decode step
        return forward(model, input_ids, *args, **kwargs)

    monkeypatch.setattr(assistant.serving.decoding, "forward", counted)
    handle = engine.submit(LONG, max_new_tokens=12)
    assert handle.text() == engine.tokenizer.decode(expected[0, len(ids):], skip_special_tokens=True)
    steps = handle.result.new_tokens - 1  # the first token comes from the prefill
    assert len(passes) == -(-len(ids) // CHUNK) + steps and sum(passes) == len(ids) + steps
    assert max(passes) == CHUNK


def test_a_newcomers_prompt_goes_in_parts_between_the_running_answers_steps(engine, monkeypatch):
    """Chunked prefill (issue 38): while a row decodes, a newcomer's prompt goes through the model
    at most engine_prefill_tokens_per_step tokens between two of its steps, and both answers are
    what they are alone."""
    alone_running, alone_newcomer = _alone(engine, MESSAGES, 24), _alone(engine, LONG, 8)
    monkeypatch.setattr(engine.settings, "engine_prefill_tokens_per_step", CHUNK // 2)
    advance, step, passes = PartialPrefill.advance, DecodeBatch.step, []

    def counted_part(part, model, tokens):
        went = advance(part, model, tokens)
        passes.append((id(part), went))
        return went

    def counted_step(batch, model):
        passes.append(("step", len(batch.rows)))
        return step(batch, model)

    monkeypatch.setattr(PartialPrefill, "advance", counted_part)
    monkeypatch.setattr(DecodeBatch, "step", counted_step)
    with held(engine):  # both start in the same loop: the first prompt whole (no row decodes yet), then parts
        running = engine.submit(MESSAGES, max_new_tokens=24)
        newcomer = engine.submit(LONG, max_new_tokens=8)
    assert running.text() == alone_running and newcomer.text() == alone_newcomer
    prompt = len(engine.encode(LONG))
    prompts: dict[int, int] = {}  # each prefill's tokens in all
    for who, tokens in passes:
        if who != "step":
            prompts[who] = prompts.get(who, 0) + tokens
    assert sorted(prompts.values()) == sorted([prompt, len(engine.encode(MESSAGES))]) and prompt > 4 * CHUNK
    parts = [i for i, (who, _) in enumerate(passes) if prompts.get(who) == prompt]
    assert max(passes[i][1] for i in parts) == CHUNK // 2
    assert all(passes[i + 1] == ("step", 1) for i in parts[:-1])  # the running answer's step between parts
    assert engine.occupancy()["starting"] == 0


@pytest.mark.parametrize("stop", ["cancelled", "timeout"])
def test_a_cancel_or_the_deadline_stops_a_prefill_between_chunks(engine, monkeypatch, stop):
    forward, chunks, victims = assistant.serving.decoding.forward, [], []

    def stopping(model, input_ids, *args, **kwargs):
        if input_ids.shape[1] > 1 and victims:
            chunks.append(input_ids.shape[1])
            if stop == "cancelled":
                victims[0].cancel()
            else:
                victims[0].request.deadline = 0.0  # long past
        return forward(model, input_ids, *args, **kwargs)

    monkeypatch.setattr(assistant.serving.decoding, "forward", stopping)
    with held(engine):
        victims.append(engine.submit(LONG, max_new_tokens=12))
    assert victims[0].wait(WAIT_S) and victims[0].text() == ""
    assert victims[0].result.stopped == stop and victims[0].result.new_tokens == 0
    assert len(chunks) == 1  # of several: it stopped after the first
    victims.clear()
    assert engine.occupancy() == {"running": 0, "starting": 0, "waiting": 0, "recoveries": engine.stats.recoveries}
    assert engine.submit(MESSAGES, max_new_tokens=2).text()


def test_a_request_beyond_the_context_window_is_rejected_with_the_numbers(engine):
    assert engine.context_window == 8192  # SmolLM2's max_position_embeddings
    prompt, requests = len(engine.encode(MESSAGES)), engine.stats.requests
    with pytest.raises(RequestRejected, match=f"the prompt is {prompt} tokens and max_tokens {8193 - prompt}; "
                                              "the model's context is 8192 tokens"):
        engine.submit(MESSAGES, max_new_tokens=8193 - prompt)
    with pytest.raises(RequestRejected, match="at least 1"):
        engine.submit(MESSAGES, max_new_tokens=-3)
    assert engine.stats.requests == requests  # refused before it was queued


# --- item 5: token ids inside the vocabulary --------------------------------------------------------------
def test_token_ids_outside_the_vocabulary_are_rejected(engine):
    last = engine.vocabulary_size - 1
    assert last == 49151
    for wrong in ((-1,), (last + 1,), (10**12,), (True,), ("7",), (1.5,)):
        with pytest.raises(RequestRejected, match="token ids must be whole numbers from 0 to 49151"):
            engine.submit(MESSAGES, max_new_tokens=1, first_token_choices=wrong)
    allowed = engine.submit(MESSAGES, max_new_tokens=1, first_token_choices=(last, 0))
    assert allowed.wait(WAIT_S) and allowed.result.stopped in ("max_tokens", "end")


def test_the_remote_engine_checks_the_same_limits(base_model, tmp_path):
    from assistant.serving.remote_engine import RemoteEngine

    settings = _settings(base_model, tmp_path, generation_backend="openai", generation_base_url="http://127.0.0.1:9/v1",
                         generation_base_model="base")
    remote = RemoteEngine(settings, base_model, load_registered=False)
    narrow = RemoteEngine(settings.model_copy(update={"generation_context_window": 64}), base_model,
                          load_registered=False)
    try:
        assert (remote.context_window, remote.vocabulary_size, narrow.context_window) == (8192, 49152, 64)
        with pytest.raises(RequestRejected, match="the model's context is 64 tokens"):
            narrow.submit(MESSAGES, max_new_tokens=64)
        with pytest.raises(RequestRejected, match="from 0 to 49151; -1 is not"):
            remote.submit(MESSAGES, max_new_tokens=1, first_token_choices=(-1,))
        assert remote.stats.requests == narrow.stats.requests == 0  # nothing reached the server
    finally:
        remote.close()
        narrow.close()
