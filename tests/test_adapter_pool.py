"""Hot-loading real LoRA adapters into the serving base model, and streaming generation."""

from __future__ import annotations

import json
import threading
import time

import pytest

from adapters.base_model import BaseModel
from assistant.adapter_pool import AdapterLoadError, AdapterPool
from assistant.generation import Generator
from assistant.settings import load_settings
from conftest import write_lora_adapter

MESSAGES = [{"role": "user", "content": "Name three organs of the human body."}]


@pytest.fixture(scope="module")
def adapters(base_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("candidates")
    return {
        "medicine": write_lora_adapter(base_model, folder / "med-a", "medicine", seed=1),
        "medicine-new": write_lora_adapter(base_model, folder / "med-b", "medicine", seed=2),
        "finance": write_lora_adapter(base_model, folder / "fin-a", "finance", seed=3),
        "poisoned": write_lora_adapter(base_model, folder / "med-nan", "medicine", seed=4, poison=True),
    }


@pytest.fixture
def pool(base_model, tmp_path):
    data = tmp_path / "data"
    (data / "models").mkdir(parents=True)
    (data / "models" / base_model.path.name).symlink_to(base_model.path)
    settings = load_settings(data_dir=data, _env_file=None, max_new_tokens=20)
    return AdapterPool(settings)


def _generate(pool: AdapterPool, adapter: str | None, tokens: int = 20) -> str:
    stream = Generator(pool, pool.settings).stream(MESSAGES, adapter, max_new_tokens=tokens)
    return "".join(stream)


def test_loaded_adapters_change_the_answer_only_for_their_requests(pool, adapters):
    base_text = _generate(pool, None)
    medicine = pool.load(adapters["medicine"])
    assert medicine.name == "medicine-v1" and pool.adapter_for("medicine") == "medicine-v1"
    with_adapter = _generate(pool, "medicine-v1")
    assert with_adapter and with_adapter != base_text
    assert _generate(pool, None) == base_text  # the base is untouched by a loaded adapter
    assert pool.adapter_for("finance") is None


def test_hot_load_during_a_generation_neither_breaks_nor_changes_it(pool, adapters):
    pool.load(adapters["medicine"])
    reference = _generate(pool, "medicine-v1", tokens=40)
    generating, outputs, timeline = threading.Event(), {}, {}

    def chat() -> None:
        stream = Generator(pool, pool.settings).stream(MESSAGES, "medicine-v1", max_new_tokens=40)
        text = ""
        for piece in stream:
            text += piece
            generating.set()
        outputs["chat"], timeline["chat_done"] = text, time.monotonic()

    def operator() -> None:
        generating.wait(60)
        timeline["load_start"] = time.monotonic()
        outputs["finance"] = pool.load(adapters["finance"]).name
        outputs["medicine"] = pool.load(adapters["medicine-new"]).name

    threads = [threading.Thread(target=chat), threading.Thread(target=operator)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert timeline["load_start"] < timeline["chat_done"]  # the loads began mid-answer
    assert outputs["chat"] == reference  # ... and did not change it
    assert (outputs["finance"], outputs["medicine"]) == ("finance-v1", "medicine-v2")
    assert pool.active() == {"medicine": "medicine-v2", "finance": "finance-v1"}
    finance_text = _generate(pool, pool.adapter_for("finance"))
    assert finance_text and finance_text != _generate(pool, "medicine-v2")
    rolled = pool.rollback("medicine")
    assert rolled.name == "medicine-v1" and _generate(pool, pool.adapter_for("medicine"), 40) == reference


def test_bad_adapters_are_refused_and_the_old_one_keeps_serving(pool, adapters, base_model, tmp_path):
    pool.load(adapters["medicine"])
    before = _generate(pool, "medicine-v1")
    with pytest.raises(AdapterLoadError, match="not finite"):
        pool.load(adapters["poisoned"])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_model.safetensors").write_bytes(b"not safetensors")
    (broken / "adapter_config.json").write_text("{}")
    (broken / "manifest.json").write_text(json.dumps({"domain": "medicine"}))
    with pytest.raises(AdapterLoadError, match="refused"):
        pool.load(broken)
    other_base = write_lora_adapter(base_model, tmp_path / "other", "medicine", seed=5)
    manifest = json.loads((other_base / "manifest.json").read_text())
    (other_base / "manifest.json").write_text(json.dumps({**manifest, "base_fingerprint": "0" * 64}))
    with pytest.raises(AdapterLoadError, match="another base model"):
        pool.load(other_base)
    with pytest.raises(AdapterLoadError, match="neither a registered adapter nor a folder"):
        pool.load("no-such-adapter")
    assert pool.active() == {"medicine": "medicine-v1"}
    assert _generate(pool, "medicine-v1") == before


def test_the_active_choice_survives_a_restart(pool, adapters):
    pool.load(adapters["medicine"])
    pool.load(adapters["medicine-new"])
    pool.rollback("medicine")
    restarted = AdapterPool(pool.settings, pool.base)
    assert restarted.active() == {"medicine": "medicine-v1"}
    assert restarted.unload("medicine") == "medicine-v1" and restarted.adapter_for("medicine") is None


def test_generation_stops_at_the_token_limit_timeout_or_cancel(pool):
    generator = Generator(pool, pool.settings)
    limited = generator.stream(MESSAGES, None, max_new_tokens=3)
    "".join(limited)
    assert limited.result.stopped == "max_tokens" and limited.result.new_tokens == 3
    slow = generator.stream(MESSAGES, None, max_new_tokens=200, timeout_s=0.05)
    "".join(slow)
    assert slow.result.stopped == "timeout" and slow.result.new_tokens < 200
    cancel = threading.Event()
    stream = generator.stream(MESSAGES, None, max_new_tokens=200, cancel=cancel)
    for _ in stream:
        cancel.set()
    assert stream.result.stopped == "cancelled" and stream.result.new_tokens < 200
    abandoned = iter(generator.stream(MESSAGES, None, max_new_tokens=200))
    next(abandoned)
    abandoned.close()  # a closed browser tab: the lock must be free again
    assert _generate(pool, None, tokens=2)


def test_a_pool_never_attaches_an_adapter_of_another_base(adapters, base_model, tmp_path):
    settings = load_settings(data_dir=tmp_path / "data", _env_file=None)
    other = BaseModel("someone/other", base_model.path, "f" * 64)
    pool = AdapterPool(settings, other, load_registered=False)
    with pytest.raises(AdapterLoadError, match="another base model"):
        pool.load(adapters["medicine"])
