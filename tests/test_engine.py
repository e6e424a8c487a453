"""The serving engine on the real base model with real LoRA adapters: batched decoding gives each
request what it gets alone, hot-loads and unloads between steps never change a running answer,
and limits, deadlines, cancellation and back-pressure end requests without wedging anything."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager

import pytest

from adapters.base_model import BaseModel
from assistant.serving.adapter_pool import AdapterLoadError
from assistant.serving.decoding import REPETITION_PENALTY, DecodeBatch, Row, prefill
from assistant.serving.engine import Engine
from assistant.serving.generation import EngineBusy, GenerationFailed
from assistant.settings import load_settings
from conftest import write_lora_adapter

MESSAGES = [{"role": "user", "content": "Name three organs of the human body."}]
OTHER = [{"role": "user", "content": "What does a central bank do? Answer in two sentences."}]
WAIT_S = 120  # bounds against a hang, not speed checks


@pytest.fixture(scope="module")
def adapters(base_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("candidates")
    return {
        "medicine": write_lora_adapter(base_model, folder / "med-a", "medicine", seed=1),
        "medicine-new": write_lora_adapter(base_model, folder / "med-b", "medicine", seed=2),
        "finance": write_lora_adapter(base_model, folder / "fin-a", "finance", seed=3),
        "poisoned": write_lora_adapter(base_model, folder / "med-nan", "medicine", seed=4, poison=True),
    }


def _settings(base_model, tmp_path, **overrides):
    data = tmp_path / "data"
    (data / "models").mkdir(parents=True, exist_ok=True)
    if not (data / "models" / base_model.path.name).exists():
        (data / "models" / base_model.path.name).symlink_to(base_model.path)
    return load_settings(data_dir=data, _env_file=None, max_new_tokens=20, **overrides)


@pytest.fixture
def engine(base_model, tmp_path):
    engine = Engine(_settings(base_model, tmp_path))
    yield engine
    engine.close()


@contextmanager
def held(engine: Engine):
    """The engine's thread kept busy (as by a long step) until the block ends: whatever is
    submitted inside starts together afterwards."""
    release = threading.Event()
    busy = engine.call_later(lambda: release.wait(WAIT_S))
    try:
        yield
    finally:
        release.set()
        busy.result(WAIT_S)


def _alone(engine: Engine, messages=MESSAGES, tokens: int = 20, **choice) -> str:
    return engine.submit(messages, max_new_tokens=tokens, **choice).text()


def test_the_engine_decodes_like_transformers_generate(engine, monkeypatch):
    import torch

    monkeypatch.setattr(engine.settings, "engine_prefill_dtype", "float32")  # generate's own precision
    ids = engine.encode(MESSAGES)
    with torch.inference_mode():  # the reference runs on this thread: the engine is idle meanwhile
        expected = engine.pool.model.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False,
                                              repetition_penalty=REPETITION_PENALTY,
                                              eos_token_id=engine.tokenizer.eos_token_id,
                                              pad_token_id=engine.tokenizer.pad_token_id)
    reference = engine.tokenizer.decode(expected[0, len(ids):], skip_special_tokens=True)
    assert _alone(engine, tokens=24) == reference


def test_next_tokens_are_greedy_at_temperature_0_and_drawn_from_the_softmax_above():
    import math

    import torch

    from assistant.serving.decoding import next_tokens

    logits = torch.tensor([[0.0, math.log(3.0), -5.0]] * 4)
    unseen = torch.zeros_like(logits, dtype=torch.bool)
    torch.manual_seed(0)
    draws = torch.stack([next_tokens(logits, unseen, [0.0, 1.0, 1.0, 1.0]) for _ in range(400)])
    assert (draws[:, 0] == 1).all()  # greedy: always the top token
    share_of_top = (draws[:, 1:] == 1).float().mean().item()
    assert 0.7 < share_of_top < 0.8  # softmax(0, ln 3, -5) gives it 0.75
    hot = torch.stack([next_tokens(logits[:1], unseen[:1], [50.0]) for _ in range(300)])
    assert 0.2 < (hot == 2).float().mean().item() < 0.45  # a high temperature flattens it toward 1/3


def test_a_sampled_request_leaves_the_greedy_rows_beside_it_unchanged(engine):
    alone = _alone(engine, tokens=16)
    with held(engine):
        greedy = engine.submit(MESSAGES, max_new_tokens=16)
        sampled = [engine.submit(OTHER, max_new_tokens=16, temperature=1.5) for _ in range(2)]
    assert greedy.text() == alone
    assert all(handle.text() and handle.result.stopped in ("end", "max_tokens") for handle in sampled)
    assert greedy.result.mean_batch > 1.5


@pytest.mark.parametrize("prefill_dtype", ["float32", "bfloat16"])
def test_batched_requests_with_different_adapters_get_what_they_get_alone(engine, adapters, monkeypatch,
                                                                          prefill_dtype):
    monkeypatch.setattr(engine.settings, "engine_prefill_dtype", prefill_dtype)  # decode steps: float32 either way
    engine.load_adapter(adapters["medicine"])
    engine.load_adapter(adapters["finance"])
    plan = [(MESSAGES, {"domain": "medicine"}), (OTHER, {"domain": "finance"}), (MESSAGES, {}), (OTHER, {})]
    alone = [_alone(engine, messages, 24, **choice) for messages, choice in plan]
    assert alone[0] != alone[2] and alone[1] != alone[3]  # the adapters change the answers
    with held(engine):
        handles = [engine.submit(messages, max_new_tokens=24, **choice) for messages, choice in plan]
    together = [handle.text() for handle in handles]
    assert together == alone
    assert [h.result.adapter for h in handles] == ["medicine-v1", "finance-v1", None, None]
    assert all(h.result.mean_batch > 1.5 for h in handles)  # they really were decoded together


def test_hot_load_and_unload_while_streams_run_change_only_later_requests(engine, adapters):
    engine.load_adapter(adapters["medicine"])
    engine.load_adapter(adapters["finance"])
    reference = {"medicine": _alone(engine, tokens=40, domain="medicine"),
                 "finance": _alone(engine, OTHER, 40, domain="finance")}
    with held(engine):
        streams = [(domain, iter(engine.submit(messages, max_new_tokens=40, domain=domain)))
                   for domain, messages in (("medicine", MESSAGES), ("medicine", MESSAGES),
                                            ("finance", OTHER), ("finance", OTHER))]
    texts = [next(stream) for _, stream in streams]  # every stream has started
    assert engine.load_adapter(adapters["medicine-new"]).name == "medicine-v2"
    assert engine.unload_adapter("finance") == "finance-v1"
    # finance-v1 is no longer served, but its weights stay while its answers run
    assert "finance-v1" in engine.call(lambda: list(engine.pool.model.peft_config))
    texts = [text + "".join(stream) for text, (_, stream) in zip(texts, streams)]
    assert texts == [reference[domain] for domain, _ in streams]
    assert engine.pool.active() == {"medicine": "medicine-v2"}
    assert "finance-v1" not in engine.call(lambda: list(engine.pool.model.peft_config))  # gone once they ended
    later = engine.submit(MESSAGES, max_new_tokens=40, domain="medicine")
    assert later.text() != reference["medicine"] and later.result.adapter == "medicine-v2"
    base = engine.submit(OTHER, max_new_tokens=40, domain="finance")
    assert base.text() and base.result.adapter is None  # finance answers with the base model now
    rolled = engine.rollback_adapter("medicine")
    assert rolled.name == "medicine-v1" and _alone(engine, tokens=40, domain="medicine") == reference["medicine"]


def test_bad_adapters_are_refused_and_the_old_one_keeps_serving(engine, adapters, base_model, tmp_path):
    engine.load_adapter(adapters["medicine"])
    before = _alone(engine, adapter="medicine-v1")
    with pytest.raises(AdapterLoadError, match="not finite"):
        engine.load_adapter(adapters["poisoned"])
    # the copy the hot-load installed (as medicine-v2) went with it; the uploaded folder stays
    assert [info.name for info in engine.pool.registry.list()] == ["medicine-v1"]
    assert (adapters["poisoned"] / "adapter_model.safetensors").is_file()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_model.safetensors").write_bytes(b"not safetensors")
    (broken / "adapter_config.json").write_text("{}")
    (broken / "manifest.json").write_text(json.dumps({"domain": "medicine"}))
    with pytest.raises(AdapterLoadError, match="refused"):
        engine.load_adapter(broken)
    other_base = write_lora_adapter(base_model, tmp_path / "other", "medicine", seed=5)
    manifest = json.loads((other_base / "manifest.json").read_text())
    (other_base / "manifest.json").write_text(json.dumps({**manifest, "base_fingerprint": "0" * 64}))
    with pytest.raises(AdapterLoadError, match="another base model"):
        engine.load_adapter(other_base)
    with pytest.raises(AdapterLoadError, match="neither a registered adapter nor a folder"):
        engine.load_adapter("no-such-adapter")
    with pytest.raises(AdapterLoadError, match="not loaded"):
        engine.submit(MESSAGES, adapter="medicine-v2")
    assert engine.pool.active() == {"medicine": "medicine-v1"}
    assert _alone(engine, adapter="medicine-v1") == before


def test_the_active_choice_survives_a_restart(engine, adapters):
    engine.load_adapter(adapters["medicine"])
    engine.load_adapter(adapters["medicine-new"])
    engine.rollback_adapter("medicine")
    engine.close()
    restarted = Engine(engine.settings, engine.pool.base)
    try:
        assert restarted.pool.active() == {"medicine": "medicine-v1"}
        assert restarted.unload_adapter("medicine") == "medicine-v1"
        assert restarted.pool.adapter_for("medicine") is None
    finally:
        restarted.close()


def test_generation_stops_at_the_token_limit_deadline_or_cancel(engine):
    limited = engine.submit(MESSAGES, max_new_tokens=3)
    limited.text()
    assert limited.result.stopped == "max_tokens" and limited.result.new_tokens == 3
    slow = engine.submit(MESSAGES, max_new_tokens=200, timeout_s=0.05)
    slow.text()
    assert slow.result.stopped == "timeout" and slow.result.new_tokens < 200
    cancel = threading.Event()
    stream = engine.submit(MESSAGES, max_new_tokens=200, cancel=cancel)
    for _ in stream:
        cancel.set()
    assert stream.result.stopped == "cancelled" and stream.result.new_tokens < 200
    abandoned = engine.submit(MESSAGES, max_new_tokens=200)
    pieces = iter(abandoned)
    next(pieces)
    threading.Thread(target=pieces.close).start()  # closed from another thread, as Gradio does
    assert _alone(engine, tokens=2)
    assert abandoned.result.stopped == "cancelled"
    assert engine.occupancy() == {"running": 0, "starting": 0, "waiting": 0, "recoveries": 0}


def test_a_stopping_criterion_ends_the_reply_before_the_token_that_met_it(engine):
    from assistant.answering.sentences import SentenceLimit

    free = _alone(engine, OTHER, tokens=60)
    seen: list[str] = []

    def five_words(text: str) -> bool:  # true once a sixth word has begun
        seen.append(text)
        return len(text.split()) > 5

    stopped = engine.submit(OTHER, max_new_tokens=60, stop_when=five_words)
    text = stopped.text()
    assert len(free.split()) > 5 and 0 < len(text.split()) <= 5, (free, text)
    assert stopped.result.stopped == "stop_when" and free.startswith(text)
    assert stopped.result.new_tokens == len(seen) - 1  # the token that began the sixth word is not kept
    def broken(text: str) -> bool:
        raise ValueError("a criterion with a bug")

    failing = engine.submit(OTHER, max_new_tokens=60, stop_when=broken)
    with pytest.raises(GenerationFailed):
        failing.text()
    assert failing.result.stopped == "error" and _alone(engine, tokens=2)  # the engine goes on
    # a prefix is the reply's opening already written: the model continues it, the criterion sees it
    prefixed = engine.submit(OTHER, max_new_tokens=60, answer_prefix="A central bank sets interest rates.",
                             stop_when=SentenceLimit(1))
    assert not prefixed.text().strip() and prefixed.result.stopped in ("stop_when", "end")


def test_the_first_token_can_be_limited_to_a_set_of_choices(engine):
    question = [{"role": "user", "content": "Is the heart an organ? Answer yes or no."}]
    labels = engine.token_ids(["Yes", "No", "Maybe"])
    assert len(labels) == 3
    for choices in (labels, labels[1:2]):
        handle = engine.submit(question, max_new_tokens=4, first_token_choices=choices)
        text = handle.text()
        assert text.split()[0].strip(".,!") in {engine.tokenizer.decode([c]) for c in choices}, text


def test_a_full_waiting_queue_refuses_at_once_and_the_deadline_counts_waiting(base_model, tmp_path):
    engine = Engine(_settings(base_model, tmp_path, engine_max_waiting=2), load_registered=False)
    try:
        with held(engine):
            accepted = engine.submit(MESSAGES, max_new_tokens=4)
            expiring = engine.submit(MESSAGES, max_new_tokens=4, timeout_s=0.01)
            with pytest.raises(EngineBusy, match="busy"):
                engine.submit(MESSAGES, max_new_tokens=4)
            while time.monotonic() <= expiring.request.deadline:  # it expires while it waits
                time.sleep(0.01)
        assert accepted.text() and accepted.result.stopped == "max_tokens"
        assert expiring.text() == "" and expiring.result.stopped == "timeout" and expiring.result.new_tokens == 0
        assert engine.stats.refused == 1
    finally:
        engine.close()


def test_an_engine_never_attaches_an_adapter_of_another_base(adapters, base_model, tmp_path):
    settings = load_settings(data_dir=tmp_path / "data", _env_file=None)
    other = BaseModel("someone/other", base_model.path, "f" * 64)
    engine = Engine(settings, other, load_registered=False)
    try:
        with pytest.raises(AdapterLoadError, match="another base model"):
            engine.load_adapter(adapters["medicine"])
    finally:
        engine.close()


def test_a_row_joining_or_leaving_copies_the_cache_once_into_room_to_grow(engine):
    """Each change of the batch's rows copies its cache into a new buffer with spare columns, so
    the steps after it write in place: no second copy of the whole cache (issue 33 item 6)."""
    def buffers(batch: DecodeBatch) -> list[int]:
        return [layer._buffers[0].data_ptr() for layer in batch.cache.layers]

    def join_step_leave_step() -> None:
        model, batch = engine.pool.model, DecodeBatch()
        for messages in (MESSAGES, OTHER, MESSAGES):
            prefilled = prefill(model, engine.encode(messages), None, engine.vocabulary_size)
            batch.add(Row(None, None, prefilled.length, prefilled.first_token), prefilled)
            joined = buffers(batch)
            batch.step(model)
            assert buffers(batch) == joined, "the step after a join copied the cache again"
        batch.remove([batch.rows[1]])
        left = buffers(batch)
        batch.step(model)
        batch.step(model)
        assert buffers(batch) == left, "the steps after a leave copied the cache again"

    engine.call(join_step_leave_step)  # on the engine's thread, between its steps: the model is its own

