"""Beside a serving engine on the CPU, only the engine's thread gets an OpenMP worker team
(indexing/openmp_threads.py): checked in a fresh process (the policy is per process), with real
torch and the real embedder, by counting the process's threads, not by timing anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import json, os, threading
import torch
from indexing.openmp_threads import claims_the_team, hold_other_threads_to_one, one_thread_here
from indexing.embedding import get_embedder

def os_threads():
    return set(os.listdir("/proc/self/task"))

def in_thread(work):
    # run work on a new thread that stays alive until it is counted, so its OpenMP workers are still there
    out, done, leave = {}, threading.Event(), threading.Event()
    def body():
        out["value"] = work()
        done.set()
        leave.wait()
    thread = threading.Thread(target=body)
    before = os_threads()
    thread.start()
    done.wait()
    out["new_threads"] = len(os_threads() - before)  # the thread itself, plus any OpenMP workers it made
    leave.set()
    thread.join()
    return out

def parallel_work():
    a = torch.randn(512, 512)
    for _ in range(3):
        a = torch.tanh(a @ a)  # large enough for torch to run it in parallel
    return torch.get_num_threads()

full = torch.get_num_threads()
embedder = get_embedder()
embedder.encode(["warm up the tokenizer's own thread pool"] * 64)  # made once per process, not per thread
report = {"full": full, "held": hold_other_threads_to_one(), "main": torch.get_num_threads()}
report["embedding_thread"] = in_thread(lambda: (embedder.encode(["a sentence to embed"] * 64), torch.get_num_threads())[1])
report["helper_thread"] = in_thread(lambda: (one_thread_here(), parallel_work())[1])
report["engine_thread"] = in_thread(lambda: (claims_the_team(), parallel_work())[1])
print(json.dumps(report))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or (os.cpu_count() or 1) < 2,
                    reason="needs Linux's /proc and at least two CPUs")
def test_only_the_engines_thread_gets_an_openmp_team():
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["full"] == 2 and report["held"] is True
    assert report["main"] == 1  # the process's own thread, held first
    # a thread that embeds (as a chat request does) runs on one OpenMP thread and starts no workers
    assert report["embedding_thread"] == {"value": 1, "new_threads": 1}
    assert report["helper_thread"] == {"value": 1, "new_threads": 1}
    # the engine's thread keeps the full team: its own thread and one worker on two cores
    assert report["engine_thread"] == {"value": 2, "new_threads": 2}
