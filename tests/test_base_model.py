"""The default base model: converted once from the packaged GGUF, fingerprinted, and usable."""

from __future__ import annotations

import json

import pytest

from adapters.base_model import BaseModel, BaseModelError, resolve_base_model, state_dict_fingerprint
from assistant.settings import load_settings


@pytest.fixture(scope="module")
def converted(base_model):
    settings = load_settings(data_dir=base_model.path.parent.parent, _env_file=None)
    return settings, base_model


def test_conversion_writes_a_plain_safetensors_checkpoint(converted):
    _, base = converted
    files = {p.name for p in base.path.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "fingerprint.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".gguf")) for name in files)
    assert "quantization_config" not in json.loads((base.path / "config.json").read_text())
    assert len(base.fingerprint) == 64


def test_second_resolve_reuses_the_checkpoint(converted):
    settings, base = converted
    before = (base.path / "model.safetensors").stat().st_mtime_ns
    again = resolve_base_model(settings.base_model, settings.models_dir)
    assert again == base and (base.path / "model.safetensors").stat().st_mtime_ns == before


def test_converted_model_answers_a_simple_question(converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, base = converted
    tokenizer = AutoTokenizer.from_pretrained(str(base.path))
    model = AutoModelForCausalLM.from_pretrained(str(base.path))
    encoded = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                            add_generation_prompt=True, return_tensors="pt", return_dict=True)
    output = model.generate(**encoded, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0][encoded["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer


def test_local_checkpoint_gets_its_own_fingerprint_and_bad_paths_are_refused(converted, tmp_path):
    from safetensors.torch import load_file

    _, base = converted
    # The folder's own weights, hashed here rather than read from its fingerprint.json or a cache.
    expected = state_dict_fingerprint(load_file(str(base.path / "model.safetensors")))
    models = tmp_path / "local-models"
    assert resolve_base_model(str(base.path), models) == BaseModel(str(base.path), base.path, expected)
    [cached] = (models / "fingerprints").glob("*.json")
    assert json.loads(cached.read_text())["fingerprint"] == expected
    cached.write_text(json.dumps({"fingerprint": "from the cache"}))
    assert resolve_base_model(str(base.path), models).fingerprint == "from the cache"  # unchanged files: not hashed again
    with pytest.raises(BaseModelError, match="local checkpoint"):
        resolve_base_model("some-org/some-model", models)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(BaseModelError, match="pickled weights are never loaded"):
        resolve_base_model(str(pickled), models)
