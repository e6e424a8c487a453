"""Hot-loading LoRA adapters into the running adapter pool vs restarting with the adapter, and the
memory of one shared base with N adapters vs N merged models. Prints tables; asserts nothing.

Run from the repository root (``make bench`` does)::

    .venv/bin/python bench/hot_load.py [--adapters N]

The default base (SmolLM2-135M-Instruct) is converted into a temporary data dir (./data is never
touched), and ``--adapters`` real peft LoRA adapters with random, untrained weights (the recipe
of ``write_lora_adapter`` in tests/conftest.py, r=4 on q_proj and v_proj) are written there, each
for a domain of its own so that all of them stay loaded. Each measurement runs in its own child
process, so its resident memory belongs to it alone:

* the pool: ``Engine(settings, load_registered=False)`` (the serving engine with the base,
  float32 on CPU), then ``engine.load_adapter(folder)`` for each adapter (validate, install into
  the registry, inject, smoke test with 8 greedy tokens, activate), timed, with the process RSS
  (VmRSS) after each step; then ``engine.unload_adapter`` of each, timed.
* the restart alternative: for each adapter, the tokenizer and the base loaded from scratch plus
  ``PeftModel.from_pretrained`` of the adapter (the work of a restarted server, less the process
  start and imports, which are reported apart); then one ``merge_and_unload()`` model's
  ``get_memory_footprint()``.

Table 1 compares the load times (p50 and their ratio); table 2 compares the pool's RSS growth for
one base + N adapters with N merged full models (N x the base's parameter bytes, and N x the
measured footprint of one merged model).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from bench.results import print_table, record  # noqa: E402
from indexing.process_memory import resident_mb, resident_part_mb  # noqa: E402

DEFAULT_ADAPTERS = 3
MB = 1024 * 1024


# --- output -----------------------------------------------------------------------------------


# --- measuring ----------------------------------------------------------------------------------

def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (VmRSS; RssAnon and RssFile are its anonymous and
    file-backed parts), after a garbage collection; NaN where it cannot be read."""
    gc.collect()
    return resident_mb() if field == "VmRSS" else resident_part_mb(field)


def parameter_bytes(model, lora: bool | None = None) -> int:
    """Bytes of the model's parameters (tied weights counted once): all of them, only the LoRA
    ones (``lora=True``) or all but the LoRA ones (``lora=False``)."""
    return sum(p.numel() * p.element_size() for name, p in model.named_parameters()
               if lora is None or ("lora_" in name) == lora)


def smoke_test(model, tokenizer) -> None:
    """What the engine's smoke test runs: one forward pass and a few greedy tokens."""
    import torch

    from assistant.serving.engine_base import SMOKE_NEW_TOKENS, SMOKE_QUESTION

    prompt = tokenizer.apply_chat_template([{"role": "user", "content": SMOKE_QUESTION}], tokenize=False,
                                           add_generation_prompt=True)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
    with torch.no_grad():
        model(**inputs)
        model.generate(**inputs, max_new_tokens=SMOKE_NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id)


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


# --- adapters -------------------------------------------------------------------------------------

def write_lora_adapter(base, folder: Path, domain: str, *, seed: int, scale: float = 0.3) -> Path:
    """A real LoRA adapter made by peft on the real base, with random (not trained) weights that
    visibly change the base's output (the recipe of tests/conftest.py)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from adapters.registry import adapter_manifest

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base.path))
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.mul_(scale)
    peft_model.save_pretrained(str(folder))
    (folder / "README.md").unlink(missing_ok=True)
    (folder / "manifest.json").write_text(json.dumps(adapter_manifest(domain, base, metrics={"seed": seed})))
    return folder


def adapter_folders(work: Path) -> list[Path]:
    return sorted((work / "incoming").iterdir())


def settings_for(work: Path):
    from assistant.settings import load_settings

    return load_settings(data_dir=work / "data", _env_file=None)


# --- child: the pool --------------------------------------------------------------------------------

def measure_pool(work: Path) -> dict:
    import importlib

    from assistant.serving.engine import Engine
    from assistant.serving.engine_base import SMOKE_QUESTION

    importlib.import_module("peft")  # imported before the first RSS reading, like everything the pool needs

    settings = settings_for(work)
    rss_start = rss_mb()
    engine, start_s = timed(lambda: Engine(settings, load_registered=False))
    # The base's weights are mapped from its safetensors file and only become resident when a
    # forward pass reads them: run one first, so the base's memory is not counted as the adapters'.
    engine.submit([{"role": "user", "content": SMOKE_QUESTION}], max_new_tokens=8).text()
    rss_base = rss_mb()
    names, load_s, rss_after = [], [], []
    for folder in adapter_folders(work):
        adapter, seconds = timed(lambda f=folder: engine.load_adapter(f))
        names.append(adapter.name)
        load_s.append(seconds)
        rss_after.append(rss_mb())
    lora_bytes = engine.call(lambda: parameter_bytes(engine.pool.model, lora=True))
    unload_s = [timed(lambda n=name: engine.unload_adapter(n))[1] for name in names]
    engine.close()
    return {"start_s": start_s, "rss_start_mb": rss_start, "rss_base_mb": rss_base, "names": names,
            "load_s": load_s, "rss_after_mb": rss_after, "lora_mb": lora_bytes / MB, "unload_s": unload_s,
            "rss_anon_mb": rss_mb("RssAnon"), "rss_file_mb": rss_mb("RssFile"),
            "rss_unloaded_mb": rss_mb(), "quantization": settings.serve_quantization}


# --- child: the restart alternative ----------------------------------------------------------------

def measure_restart(work: Path) -> dict:
    started = time.perf_counter()
    from peft import PeftModel

    from adapters.base_model import load_model, load_tokenizer, resolve_base_model
    import_s = time.perf_counter() - started

    settings = settings_for(work)

    def restart(folder: Path):
        base = resolve_base_model(settings.base_model, settings.models_dir)
        tokenizer = load_tokenizer(base)
        model = load_model(base, settings.serve_quantization, "cpu")
        model.eval()
        return PeftModel.from_pretrained(model, str(folder)), tokenizer

    restart_s, smoke_s, model = [], [], None
    for folder in adapter_folders(work):
        model = None  # the previous "server" is gone before the next one starts
        (model, tokenizer), seconds = timed(lambda f=folder: restart(f))
        restart_s.append(seconds)
        smoke_s.append(timed(lambda: smoke_test(model, tokenizer))[1])
    base_bytes = parameter_bytes(model, lora=False)
    merged, merge_s = timed(model.merge_and_unload)
    return {"import_s": import_s, "restart_s": restart_s, "smoke_s": smoke_s, "base_param_mb": base_bytes / MB,
            "merge_s": merge_s, "merged_footprint_mb": merged.get_memory_footprint() / MB}


CHILDREN = {"pool": measure_pool, "restart": measure_restart}


def run_child(kind: str, work: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", kind, "--work", str(work)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"the {kind} measurement failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- tables ------------------------------------------------------------------------------------------

def load_time_table(pool: dict, restart: dict) -> None:
    with_smoke = [again + smoke for again, smoke in zip(restart["restart_s"], restart["smoke_s"])]
    columns = zip(pool["names"], pool["load_s"], restart["restart_s"], with_smoke, pool["unload_s"])
    rows = [[name, f"{load:.2f}", f"{again:.2f}", f"{again / load:.2f}x", f"{smoked:.2f}", f"{smoked / load:.2f}x",
             f"{unload * 1000:.0f}"] for name, load, again, smoked, unload in columns]
    load_p50, restart_p50 = float(np.median(pool["load_s"])), float(np.median(restart["restart_s"]))
    smoked_p50 = float(np.median(with_smoke))
    rows.append(["p50", f"{load_p50:.2f}", f"{restart_p50:.2f}", f"{restart_p50 / load_p50:.2f}x", f"{smoked_p50:.2f}",
                 f"{smoked_p50 / load_p50:.2f}x", f"{np.median(pool['unload_s']) * 1000:.0f}"])
    group, restart_name = "putting an adapter into service", "full reload: imports + base + adapter + smoke test, p50"
    record(group, restart_name, restart["import_s"] + smoked_p50, "s", better="lower")
    record(group, "hot-load into the running pool (pool.load, with its smoke test), p50", load_p50, "s", restart_name,
           "lower")
    print_table(f"Table 1: putting an adapter into service - pool.load(folder) into a running AdapterPool vs a "
                f"restart (tokenizer + base from scratch + PeftModel.from_pretrained); default base "
                f"(serve_quantization={pool['quantization']}) on CPU, {len(pool['names'])} random LoRA adapters "
                f"(r=4, q_proj+v_proj), {os.cpu_count()} cores",
                ["adapter", "pool.load s", "restart s", "restart / load", "restart + smoke s", "(r + s) / load",
                 "pool.unload ms"], rows,
                ["pool.load = validate + install into the registry + inject + smoke test (forward pass + 8 greedy "
                 "tokens) + activate; the first one also wraps the base in a PeftModel",
                 "restart + smoke = the restart followed by the same smoke test, which also pages in the base's "
                 "memory-mapped weights (from_pretrained maps the safetensors file lazily)",
                 f"AdapterPool start (the base alone, before its first forward pass): {pool['start_s']:.2f}s; a real "
                 f"restart also pays the process start and the imports of torch/transformers/peft "
                 f"({restart['import_s']:.1f}s here) and drops the chats in progress"])


def memory_table(pool: dict, restart: dict) -> None:
    n = len(pool["names"])
    base_growth = pool["rss_base_mb"] - pool["rss_start_mb"]
    adapters_growth = pool["rss_after_mb"][-1] - pool["rss_base_mb"]
    pool_total = base_growth + adapters_growth
    merged_params = n * restart["base_param_mb"]
    merged_footprints = n * restart["merged_footprint_mb"]
    rows = [["pool: the base, after one forward pass", f"{base_growth:.0f}", "RSS growth"],
            [f"pool: {n} adapters on it", f"{adapters_growth:.0f}",
             f"RSS growth; their LoRA weights: {pool['lora_mb']:.1f} MB"],
            [f"pool: one base + {n} adapters", f"{pool_total:.0f}", "RSS growth"],
            [f"{n} merged models: {n} x base parameter bytes", f"{merged_params:.0f}",
             f"computed, {restart['base_param_mb']:.0f} MB each"],
            [f"{n} merged models: {n} x merged get_memory_footprint()", f"{merged_footprints:.0f}",
             f"one merge_and_unload() measured: {restart['merged_footprint_mb']:.0f} MB"]]
    record("serving memory", f"{n} merged models (footprint)", merged_footprints, "MB", better="lower")
    record("serving memory", f"one base + {n} adapters (pool RSS growth)", pool_total, "MB",
           f"{n} merged models (footprint)", "lower")
    previous = [pool["rss_base_mb"], *pool["rss_after_mb"][:-1]]
    steps = ", ".join(f"{after - before:+.0f}" for before, after in zip(previous, pool["rss_after_mb"]))
    print_table(f"Table 2: memory of one shared base + {n} adapters vs {n} merged full models (RSS = VmRSS of the "
                f"pool's own process; MB = 2^20 bytes)",
                ["what", "MB", "how"], rows,
                [f"one base + {n} adapters takes {pool_total / merged_footprints:.2f} of the merged models' "
                 f"footprint ({merged_footprints - pool_total:.0f} MB less)",
                 f"pool RSS: {pool['rss_start_mb']:.0f} MB after imports, {pool['rss_base_mb']:.0f} with the base, "
                 f"per adapter {steps}; at the end {pool['rss_anon_mb']:.0f} anonymous + {pool['rss_file_mb']:.0f} "
                 f"file-backed (the base's weights are mapped from its safetensors file); "
                 f"{pool['rss_unloaded_mb']:.0f} after unloading all",
                 f"merge_and_unload() took {restart['merge_s']:.2f}s"])


# --- main ----------------------------------------------------------------------------------------------

def prepare(work: Path, count: int) -> None:
    from adapters.base_model import resolve_base_model

    settings = settings_for(work)
    base, convert_s = timed(lambda: resolve_base_model(settings.base_model, settings.models_dir))
    incoming = work / "incoming"
    incoming.mkdir()
    started = time.perf_counter()
    for i in range(count):
        write_lora_adapter(base, incoming / f"adapter-{i + 1:02d}", f"bench{i + 1:02d}", seed=i + 1)
    print(f"  base ready in {convert_s:.1f}s; wrote {count} adapters in {time.perf_counter() - started:.1f}s",
          flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--adapters", type=int, default=DEFAULT_ADAPTERS,
                        help=f"LoRA adapters to load (default {DEFAULT_ADAPTERS})")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.work)))
        return
    if args.adapters < 1:
        parser.error("--adapters must be >= 1")

    started = time.perf_counter()
    print(f"hot_load: {os.cpu_count()} CPUs, --adapters {args.adapters}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-hot-load-") as scratch:
        work = Path(scratch)
        prepare(work, args.adapters)
        pool = run_child("pool", work)
        print(f"  pool: loaded {len(pool['names'])} adapters", flush=True)
        restart = run_child("restart", work)
        print("  restart: done", flush=True)
    load_time_table(pool, restart)
    memory_table(pool, restart)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
