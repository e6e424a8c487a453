"""QLoRA training on the real base model in real 4-bit NF4 (bitsandbytes on CPU), with tiny data."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from adapters import prompts
from adapters.answer_metrics import exact_match, token_f1, yes_no
from adapters.dataset import DatasetReport, Example, write_dataset
from adapters.evaluate import score_answers
from adapters.registry import validate_adapter
from adapters.schedule import learning_rate_factor
from adapters.train import TrainingError, train_adapter
from assistant.settings import load_settings

QA = [("What does warfarin prevent?", "blood clots"), ("What reverses warfarin?", "vitamin K"),
      ("What does insulin lower?", "blood glucose"), ("Who discovered penicillin?", "Alexander Fleming")]


def _examples(pairs, split):
    return [Example(f"{split}{i}", "fact", f"g{split}{i}", prompts.chat_messages("medicine", q, answer=a), a, "span",
                    split=split) for i, (q, a) in enumerate(pairs)]


@pytest.fixture
def tiny_settings(tmp_path, base_model):
    """Settings for a few fast steps, sharing the session's converted base model."""
    data = tmp_path / "data"
    (data / "models").mkdir(parents=True)
    (data / "models" / base_model.path.name).symlink_to(base_model.path)
    settings = load_settings(data_dir=data, _env_file=None, train_batch_size=4, learning_rate=3e-3, warmup_steps=1,
                             lr_decay_gamma=0.95, eval_every_steps=3, checkpoint_every_steps=2, eval_max_examples=3,
                             eval_max_new_tokens=6, lora_rank=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"])
    report = DatasetReport("medicine", settings.datasets_dir / "medicine")
    write_dataset(report, _examples(QA, "train") + _examples([("What does aspirin inhibit?", "COX enzymes"),
                                                              ("What is a statin?", "a cholesterol-lowering drug")],
                                                             "validation"))
    return settings


def _lora(path):
    return load_file(str(path / "adapter_model.safetensors"))


def test_four_bit_training_lowers_the_loss_and_writes_a_valid_adapter(tiny_settings, base_model):
    result = train_adapter(tiny_settings.training_params, "medicine", max_steps=6, progress=False)
    assert result.steps == 6 and len(result.losses) == 6
    assert result.losses[-1] < 0.7 * result.losses[0], result.losses  # the same 4 examples every step
    assert sorted(p.name for p in result.path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                             "manifest.json"]
    info = validate_adapter(result.path, base_model)
    assert info.name == "medicine-v1" and info.domain == "medicine" and info.rank == 4
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["settings"]["train_quantization"] == "nf4" and manifest["data_hash"]
    for label in ("base", "adapter"):
        metrics = manifest["metrics"][label]
        assert {"exact_match", "f1", "val_loss", "perplexity"} <= set(metrics) and metrics["n"] == 2
    assert manifest["training"]["val_losses"] and manifest["training"]["tokens_per_second"] > 0
    # validated where it starts (step 0: the base, since lora_B starts at zero) and every 3 steps
    assert [step for step, _ in manifest["training"]["val_losses"]] == [0, 3, 6]
    recall = manifest["metrics"]["fact_recall"]
    for label in ("base", "adapter"):  # 3 of the 4 trained fact questions (eval_max_examples), both held-out ones
        assert recall[label]["trained"]["n"] == 3 and recall[label]["held_out"]["n"] == 2
        assert 0.0 <= recall[label]["trained"]["recalled"] <= 1.0
    assert not (tiny_settings.training_dir).exists() or not any(tiny_settings.training_dir.iterdir())


def test_without_a_step_count_a_run_takes_its_epochs_capped_by_max_steps(tiny_settings):
    two_passes = tiny_settings.model_copy(update={"train_epochs": 2.0})  # 4 examples at batch 4: a step each
    assert train_adapter(two_passes.training_params, "medicine", progress=False, evaluate=False, name="e2").steps == 2
    capped = tiny_settings.model_copy(update={"train_epochs": 2.0, "train_max_steps": 1})
    assert train_adapter(capped.training_params, "medicine", progress=False, evaluate=False, name="cap").steps == 1


def test_interrupted_run_resumes_from_its_checkpoint(tiny_settings):
    def interrupt(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(TrainingError, match="interrupted at step 3"):
        train_adapter(tiny_settings.training_params, "medicine", max_steps=6, progress=False, evaluate=False, name="resumed",
                      on_step=interrupt)
    checkpoint = next(tiny_settings.training_dir.iterdir()) / "checkpoint"
    saved = torch.load(checkpoint / "trainer_state.pt", weights_only=True)
    assert {s["step"].item() for s in saved["optimizer"]["state"].values()} == {3}
    resumed = train_adapter(tiny_settings.training_params, "medicine", max_steps=6, progress=False, evaluate=False, name="resumed")
    assert resumed.resumed_from_step == 3 and resumed.steps == 6 and len(resumed.losses) == 6
    straight = train_adapter(tiny_settings.training_params, "medicine", max_steps=6, progress=False, evaluate=False, name="straight")
    assert straight.resumed_from_step == 0
    # Same data order, optimizer moments and dropout randomness: the same weights as never stopping.
    a, b = _lora(resumed.path), _lora(straight.path)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert resumed.losses[:3] == straight.losses[:3]


def test_warm_start_begins_from_the_other_adapters_weights(tiny_settings):
    first = train_adapter(tiny_settings.training_params, "medicine", max_steps=3, progress=False, evaluate=False, name="source")
    source = _lora(first.path)
    assert any(k.endswith("lora_B.weight") and source[k].abs().sum() > 0 for k in source)
    tiny = tiny_settings.model_copy(update={"learning_rate": 1e-12})
    warm = train_adapter(tiny.training_params, "medicine", from_adapter="source", max_steps=1, progress=False, evaluate=False, name="warm")
    cold = train_adapter(tiny.training_params, "medicine", max_steps=1, progress=False, evaluate=False, name="cold")
    warm_weights, cold_weights = _lora(warm.path), _lora(cold.path)
    assert all(torch.allclose(warm_weights[k], source[k], atol=1e-6) for k in source)
    # peft starts lora_B at zero; one step at this learning rate moves it by about 1e-12.
    assert all(cold_weights[k].abs().max() < 1e-9 for k in cold_weights if k.endswith("lora_B.weight"))
    assert json.loads((warm.path / "manifest.json").read_text())["warm_start"] == "source"
    with pytest.raises(TrainingError, match="cannot warm-start from 'missing'"):
        train_adapter(tiny.training_params, "medicine", from_adapter="missing", max_steps=1, progress=False)


def test_learning_rate_warms_up_then_decays_exponentially():
    factors = [learning_rate_factor(step, warmup=4, gamma=0.5) for step in range(7)]
    assert factors == [0.25, 0.5, 0.75, 1.0, 0.5, 0.25, 0.125]
    per_epoch = [learning_rate_factor(step, warmup=0, gamma=0.5, steps_per_decay=3) for step in range(7)]
    assert per_epoch == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]


def test_answer_metrics():
    assert exact_match("The Warfarin [2].", "warfarin") == 1.0
    assert token_f1("vitamin K and warfarin", "vitamin K") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("", "x") == 0.0 and yes_no("No [1].") == "no" and yes_no("Maybe") is None
    examples = [Example("1", "yesno", "g", [], "Yes.", "yesno"), Example("2", "fact", "h", [], "Paris", "span")]
    scores = score_answers(examples, ["Yes, it does [1].", "It is Paris."])
    assert scores["yesno_accuracy"] == 1.0 and scores["exact_match"] == 0.0 and scores["by_kind"]["fact"]["f1"] == 0.5


@pytest.mark.slow  # ~4 minutes of CPU: in `make test-all`, so that `make test` stays under 20 minutes
def test_an_adapter_trained_on_a_demo_domain_beats_the_base(demo_env):
    """The issue's bar, on a shortened run: the demo medicine graph and passages become a dataset,
    a 4-bit QLoRA adapter trains on it, and on held-out questions it beats the base model."""
    from adapters.dataset import build_dataset
    from adapters.registry import AdapterRegistry

    settings = demo_env.settings.model_copy(update={
        "train_max_steps": 24, "eval_every_steps": 12, "checkpoint_every_steps": 1000, "eval_max_examples": 20,
        "eval_max_new_tokens": 16, "learning_rate": 1e-3})
    report = build_dataset(settings.dataset_params, "medicine", demo_env.graph, progress=False)
    assert report.total("train") > 300 and not report.graph_error
    try:
        result = train_adapter(settings.training_params, "medicine", progress=False)
        base, adapter = result.metrics["base"], result.metrics["adapter"]
        assert adapter["val_loss"] < base["val_loss"]
        # Per kind only a handful of questions are scored here, too few to compare; overall they are 20.
        assert adapter["f1"] > base["f1"] and adapter["exact_match"] >= base["exact_match"]
    finally:
        for info in AdapterRegistry(settings.adapters_dir).list():
            AdapterRegistry(settings.adapters_dir).remove(info.name)


def test_a_kill_between_the_renames_of_a_checkpoint_swap_keeps_the_previous_checkpoint(tmp_path):
    from adapters.run_folder import recover_swap, swap_in

    target = tmp_path / "checkpoint"
    target.mkdir()
    (target / "state.json").write_text("step 20")
    staging = tmp_path / ".checkpoint-new"
    staging.mkdir()
    (staging / "state.json").write_text("step 40")
    swap_in(staging, target)
    assert (target / "state.json").read_text() == "step 40" and not staging.exists()
    assert not list(tmp_path.glob(".old-*"))
    # killed after the first rename: only the old folder is left under its temporary name
    target.rename(tmp_path / ".old-checkpoint-abcd1234")
    recover_swap(target)
    assert (target / "state.json").read_text() == "step 40"
    recover_swap(tmp_path / "best")  # nothing to recover: nothing happens
    assert not (tmp_path / "best").exists()


@pytest.mark.slow  # a training and its evaluation (about a minute alone, four beside other runs)
def test_the_gpu_scripts_trainer_trains_each_carried_dataset_and_reports_its_cost(tiny_settings, base_model, tmp_path,
                                                                                    monkeypatch):
    """scripts/gpu_train_device.py (what `gpu_check_device.sh train` runs on the device) on this CPU:
    one adapter per dataset folder, copied out valid, a row of cost each, and a broken dataset
    reported without stopping the others."""
    spec = importlib.util.spec_from_file_location("gpu_train_device", "scripts/gpu_train_device.py")
    device = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(device)
    carried = tmp_path / "carried"
    shutil.copytree(tiny_settings.datasets_dir / "medicine", carried / "medicine")
    (carried / "law").mkdir()
    (carried / "law" / "train.jsonl").write_text("")  # a half-copied dataset: its training fails
    for name, value in {"DATA_DIR": str(tiny_settings.data_dir), "EVAL_MAX_EXAMPLES": "2", "EVAL_MAX_NEW_TOKENS": "4",
                        "LORA_RANK": "4", "LORA_ALPHA": "8", "LORA_TARGET_MODULES": '["q_proj", "v_proj"]'}.items():
        monkeypatch.setenv(f"ASSISTANT_{name}", value)
    out = tmp_path / "out"
    assert device.main(["--datasets", str(carried), "--out", str(out), "--batch", "2", "--max-steps", "2"]) == 1
    rows = {row["domain"]: row for row in map(json.loads, (out / "gpu_train_results.jsonl").read_text().splitlines())}
    assert "validation.jsonl is missing" in rows["law"]["error"]
    medicine = rows["medicine"]
    assert medicine["steps"] == 2 and medicine["batch"] == 2 and medicine["steps_per_second"] > 0
    assert medicine["tokens_per_second"] > 0 and set(medicine["trained_fact_recall"]) == {"base", "adapter"}
    info = validate_adapter(out / "adapters" / "medicine-gpu", base_model)
    assert info.name == "medicine-gpu" and info.domain == "medicine" and info.rank == 4
    assert device.main(["--datasets", str(tmp_path / "none"), "--out", str(out)]) == 2
