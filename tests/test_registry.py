"""Adapter validation and the registry, with real LoRA weights made by peft on the real base."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from adapters.base_model import BaseModel
from adapters.registry import AdapterInvalid, AdapterRegistry, adapter_manifest, validate_adapter


@pytest.fixture(scope="module")
def real_adapter(base_model, tmp_path_factory):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_model.path))
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    folder = tmp_path_factory.mktemp("adapters") / "medicine-v1"
    peft_model.save_pretrained(str(folder))
    (folder / "manifest.json").write_text(json.dumps(adapter_manifest("medicine", base_model, metrics={"val_loss": 1.0})))
    return folder


@pytest.fixture
def adapter_copy(real_adapter, tmp_path):
    target = tmp_path / "candidate"
    shutil.copytree(real_adapter, target)
    return target


def test_a_real_adapter_validates(real_adapter, base_model):
    info = validate_adapter(real_adapter, base_model)
    assert info.domain == "medicine" and info.rank == 4 and set(info.target_modules) == {"q_proj", "v_proj"}
    assert sorted(p.name for p in real_adapter.iterdir()) == ["README.md", "adapter_config.json",
                                                              "adapter_model.safetensors", "manifest.json"]


def test_pickled_weights_are_refused(adapter_copy, base_model):
    (adapter_copy / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(AdapterInvalid, match="pickled weights are refused"):
        validate_adapter(adapter_copy, base_model)


def test_another_base_model_is_refused(adapter_copy, base_model):
    other = BaseModel("someone/other-base", base_model.path, "0" * 64)
    with pytest.raises(AdapterInvalid, match="another base model"):
        validate_adapter(adapter_copy, other)


def test_unknown_target_module_is_refused(adapter_copy, base_model):
    config = json.loads((adapter_copy / "adapter_config.json").read_text())
    config["target_modules"] = ["q_proj", "flux_capacitor"]
    (adapter_copy / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterInvalid, match="'flux_capacitor' does not exist"):
        validate_adapter(adapter_copy, base_model)


@pytest.mark.parametrize("damage,message", [
    (lambda folder: (folder / "adapter_config.json").unlink(), "missing adapter_config.json"),
    (lambda folder: (folder / "adapter_config.json").write_text("{not json"), "adapter_config.json is malformed"),
    (lambda folder: (folder / "manifest.json").write_text("[]"), "manifest.json must hold a JSON object"),
    (lambda folder: (folder / "adapter_model.safetensors").write_bytes(b"garbage"), "unreadable"),
])
def test_missing_or_malformed_files_are_refused(adapter_copy, base_model, damage, message):
    damage(adapter_copy)
    with pytest.raises(AdapterInvalid, match=message):
        validate_adapter(adapter_copy, base_model)


def test_tensor_of_the_wrong_shape_is_refused(adapter_copy, base_model):
    weights = load_file(str(adapter_copy / "adapter_model.safetensors"))
    key = next(k for k in weights if k.endswith("lora_A.weight"))
    weights[key] = torch.zeros(weights[key].shape[0], weights[key].shape[1] + 1)
    save_file(weights, str(adapter_copy / "adapter_model.safetensors"))
    with pytest.raises(AdapterInvalid, match="has shape"):
        validate_adapter(adapter_copy, base_model)


def test_registry_installs_lists_and_removes(adapter_copy, base_model, tmp_path):
    registry = AdapterRegistry(tmp_path / "registry")
    info = registry.install(adapter_copy, "medicine-v1", base_model)
    assert [a.name for a in registry.list()] == ["medicine-v1"] and info.domain == "medicine"
    assert registry.get("medicine-v1").metrics == {"val_loss": 1.0}
    with pytest.raises(AdapterInvalid, match="already exists"):
        registry.install(adapter_copy, "medicine-v1", base_model)
    (adapter_copy / "model.pt").write_bytes(b"x")
    with pytest.raises(AdapterInvalid, match="pickled"):
        registry.install(adapter_copy, "medicine-v2", base_model)
    assert [a.name for a in registry.list()] == ["medicine-v1"]  # nothing half-installed
    with pytest.raises(AdapterInvalid, match="not a valid adapter name"):
        registry.install(adapter_copy, "../escape", base_model)
    registry.remove("medicine-v1")
    assert registry.list() == []


def test_cli_validate_reports_good_and_bad_adapters(real_adapter, adapter_copy, base_model):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSISTANT_", "NEO4J_"))}
    env["ASSISTANT_DATA_DIR"] = str(base_model.path.parent.parent)  # where the base is already converted
    cli = [sys.executable, "-m", "assistant.cli", "adapters", "validate"]
    good = subprocess.run(cli + [str(real_adapter)], env=env, capture_output=True, text=True, timeout=300)
    assert good.returncode == 0 and "valid: medicine adapter, rank 4" in good.stdout, good.stderr
    (adapter_copy / "weights.pt").write_bytes(b"x")
    bad = subprocess.run(cli + [str(adapter_copy)], env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "pickled weights are refused (weights.pt)" in bad.stderr
