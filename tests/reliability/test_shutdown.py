"""Stopping the app while a demo adapter trains: launch.py in a process of its own, stopped with
SIGTERM or Ctrl-C once the training loop runs. It ends with the signal's exit status and no C++
abort at interpreter exit, the training job stopped at a step and checkpointed it (the folder a
restart resumes from), and the graph server it started is stopped.

(Before, shutdown waited 10 s for the job thread; a step takes longer on CPU, so the interpreter
exited with that thread inside torch: "terminate called without an active exception", status 134,
and no checkpoint.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant.settings import DEMO_CORPORA_DIR, PROJECT_ROOT
from conftest import free_port

HANG_GUARD_S = 600  # only against a hang: start-up, indexing and a training step on a busy 2-core box

# A step of well under a second: the stop, not the training, is under test. Any checkpoint comes
# from the stop: the run has 1000 steps and would checkpoint only every 1000.
QUICK_STEPS = {"ASSISTANT_DEMO_ADAPTER_STEPS": "1000", "ASSISTANT_CHECKPOINT_EVERY_STEPS": "1000",
               "ASSISTANT_EVAL_EVERY_STEPS": "1000", "ASSISTANT_TRAIN_QUANTIZATION": "none",
               "ASSISTANT_TRAIN_MAX_TOKENS": "64", "ASSISTANT_TRAIN_BATCH_SIZE": "1", "ASSISTANT_EVAL_MAX_EXAMPLES": "1"}
# The first run's real demo adapters (4-bit base, 384 tokens, batch 4): a step takes tens of
# seconds on CPU, longer than the old 10 s wait. Nothing checkpoints before step 20 of 20.
REAL_STEPS = {"ASSISTANT_DEMO_ADAPTER_STEPS": "20", "ASSISTANT_CHECKPOINT_EVERY_STEPS": "20"}


@pytest.mark.parametrize("signum, expected_status, training", [
    pytest.param(signal.SIGTERM, 128 + signal.SIGTERM, QUICK_STEPS, id="SIGTERM, quick steps"),
    pytest.param(signal.SIGINT, 0, REAL_STEPS, id="Ctrl-C, real demo steps", marks=pytest.mark.slow),
])
def test_stopping_the_app_while_a_demo_adapter_trains_checkpoints_it_and_exits_cleanly(
        tmp_path, base_model, signum, expected_status, training):
    data = _data_dir(tmp_path, base_model)
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:  # files, not pipes: tqdm fills a pipe
        app = subprocess.Popen([sys.executable, "launch.py", "--port", str(free_port())], cwd=PROJECT_ROOT,
                               env=_env(data, tmp_path / "demo", training), stdout=stdout, stderr=stderr)
    try:
        # The loop runs once its step-0 validation has written best/.
        _wait_for(lambda: next((data / "training").glob("*/best"), None), app, out, err)
        app.send_signal(signum)
        app.wait(timeout=HANG_GUARD_S)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    output, errors = out.read_text(), err.read_text()
    assert app.returncode == expected_status, f"status {app.returncode}\n{output}\n{errors[-3000:]}"
    assert "terminate called" not in errors and "Traceback" not in errors, errors[-3000:]
    checkpoint = next((data / "training").glob("*/checkpoint/state.json"), None)
    assert checkpoint is not None, output  # what the next start resumes from
    step = json.loads(checkpoint.read_text())["step"]
    steps = training["ASSISTANT_DEMO_ADAPTER_STEPS"]
    assert step >= 1 and f"demo adapter for law: stopped after step {step} of {steps} and checkpointed" in output, output
    assert output.rstrip().endswith("Stopped.") and "did not stop in time" not in output, output
    assert not (data / "graph" / "server.json").exists()  # the graph server it started was stopped


def _data_dir(tmp_path: Path, base_model) -> Path:
    """Three law documents as the demo corpus (indexed at start-up in seconds) and the session's
    converted base model, so start-up does not convert it again."""
    demo = tmp_path / "demo" / "law"
    demo.mkdir(parents=True)
    for path in sorted((DEMO_CORPORA_DIR / "law").iterdir())[:3]:
        shutil.copy(path, demo / path.name)
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True)
    (models / base_model.path.name).symlink_to(base_model.path)
    return tmp_path / "data"


def _env(data: Path, demo: Path, training: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEO4J_", "ASSISTANT_"))}
    return {**env, "ASSISTANT_DATA_DIR": str(data), "ASSISTANT_DEMO_CORPORA_DIR": str(demo), **training}


def _wait_for(find, app: subprocess.Popen, out: Path, err: Path):
    deadline = time.monotonic() + HANG_GUARD_S
    while not (found := find()):
        if app.poll() is not None:
            pytest.fail(f"the app ended (status {app.returncode}) before training began:\n{out.read_text()}\n"
                        f"{err.read_text()[-3000:]}")
        assert time.monotonic() < deadline, f"training did not begin within {HANG_GUARD_S} s:\n{out.read_text()}"
        time.sleep(0.1)
    return found
