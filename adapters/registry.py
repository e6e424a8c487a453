"""The adapter registry: LoRA adapter folders in the data dir, and the checks an adapter must
pass before it is listed or attached to the base model.

An adapter is a folder with ``adapter_model.safetensors``, ``adapter_config.json`` (peft's) and
``manifest.json`` (domain, base model name and fingerprint, data hash, settings, metrics).
Validation reads only JSON and safetensors headers: nothing pickled is ever loaded, and nothing
is executed. A folder is installed by renaming a validated copy into place, so a half-written
adapter is never listed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import safe_open

from adapters.base_model import BaseModel

WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
MANIFEST_FILE = "manifest.json"
REQUIRED_FILES = (WEIGHTS_FILE, CONFIG_FILE, MANIFEST_FILE)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
ADAPTER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# peft key: base_model.model.<module path>.lora_A.weight (optionally with an adapter name).
_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<part>[AB])(?:\.[^.]+)?\.weight$")


class AdapterInvalid(ValueError):
    """An adapter folder failed validation; the message names the problem."""


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    path: Path
    domain: str
    base_model: str
    base_fingerprint: str
    rank: int
    target_modules: tuple[str, ...]
    created: str | None = None
    metrics: dict = field(default_factory=dict)


def base_weight_shapes(base: BaseModel) -> dict[str, tuple[int, ...]]:
    """Every weight of the base checkpoint and its shape, from the safetensors headers only."""
    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(base.path.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                shapes[key] = tuple(f.get_slice(key).get_shape())
    return shapes


def validate_adapter(path: Path, base: BaseModel, shapes: dict[str, tuple[int, ...]] | None = None,
                     name: str | None = None) -> AdapterInfo:
    """Check an adapter folder against the base; raise AdapterInvalid naming the first problem."""
    path = Path(path)
    if not path.is_dir():
        raise AdapterInvalid(f"{path} is not a folder")
    pickled = sorted(p.name for p in path.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickled:
        raise AdapterInvalid(f"pickled weights are refused ({', '.join(pickled)}); only safetensors are accepted")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise AdapterInvalid(f"missing {', '.join(missing)}")
    config = _read_json(path / CONFIG_FILE)
    manifest = _read_json(path / MANIFEST_FILE)
    rank, targets = _check_config(config)
    _check_manifest(manifest, base)
    shapes = shapes if shapes is not None else base_weight_shapes(base)
    _check_targets(targets, shapes)
    _check_tensors(path / WEIGHTS_FILE, rank, shapes)
    return AdapterInfo(name or path.name, path, manifest["domain"], manifest["base_model"], manifest["base_fingerprint"],
                       rank, tuple(targets), manifest.get("created"), manifest.get("metrics", {}))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterInvalid(f"{path.name} is malformed ({exc})") from None
    if not isinstance(data, dict):
        raise AdapterInvalid(f"{path.name} must hold a JSON object")
    return data


def _check_config(config: dict) -> tuple[int, list[str]]:
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise AdapterInvalid(f"{CONFIG_FILE}: peft_type must be LORA, not {config.get('peft_type')!r}")
    rank = config.get("r")
    if not isinstance(rank, int) or rank <= 0:
        raise AdapterInvalid(f"{CONFIG_FILE}: r (the LoRA rank) must be a positive integer")
    targets = config.get("target_modules")
    if isinstance(targets, str):
        targets = [targets]
    if not targets or not all(isinstance(t, str) and t for t in targets):
        raise AdapterInvalid(f"{CONFIG_FILE}: target_modules must name the modules the adapter changes")
    return rank, list(targets)


def _check_manifest(manifest: dict, base: BaseModel) -> None:
    for key in ("domain", "base_model", "base_fingerprint"):
        if not isinstance(manifest.get(key), str) or not manifest[key]:
            raise AdapterInvalid(f"{MANIFEST_FILE}: missing {key!r}")
    if manifest["base_fingerprint"] != base.fingerprint:
        raise AdapterInvalid(f"trained on another base model ({manifest['base_model']}, fingerprint "
                             f"{manifest['base_fingerprint'][:12]}...), not the serving base {base.name} "
                             f"({base.fingerprint[:12]}...)")


def _module_names(shapes: dict[str, tuple[int, ...]]) -> set[str]:
    return {key.removesuffix(".weight") for key in shapes if key.endswith(".weight")}


def _check_targets(targets: list[str], shapes: dict[str, tuple[int, ...]]) -> None:
    modules = _module_names(shapes)
    for target in targets:
        if not any(m == target or m.endswith("." + target) for m in modules):
            raise AdapterInvalid(f"target module {target!r} does not exist in the base model")


def _check_tensors(weights: Path, rank: int, shapes: dict[str, tuple[int, ...]]) -> None:
    try:
        with safe_open(str(weights), framework="pt") as f:
            tensors = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for a damaged header
        raise AdapterInvalid(f"{WEIGHTS_FILE} is unreadable ({exc})") from None
    if not tensors:
        raise AdapterInvalid(f"{WEIGHTS_FILE} holds no tensors")
    for key, shape in tensors.items():
        match = _LORA_KEY.match(key)
        if match is None:
            continue  # e.g. modules_to_save; their names are checked by peft when loading
        module, part = match.group("module"), match.group("part")
        base_shape = shapes.get(module + ".weight")
        if base_shape is None or len(base_shape) != 2:
            raise AdapterInvalid(f"{key}: the base model has no linear weight {module}")
        out_features, in_features = base_shape
        expected = (rank, in_features) if part == "A" else (out_features, rank)
        if shape != expected:
            raise AdapterInvalid(f"{key} has shape {shape}, expected {expected} for the base and rank {rank}")


def adapter_manifest(domain: str, base: BaseModel, **details) -> dict:
    """The manifest fields validation relies on, plus whatever the trainer records (data hash,
    settings, metrics)."""
    from datetime import datetime, timezone

    return {"domain": domain, "base_model": base.name, "base_fingerprint": base.fingerprint,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **details}


class AdapterRegistry:
    def __init__(self, adapters_dir: Path):
        self.root = Path(adapters_dir)

    def list(self) -> list[AdapterInfo]:
        """Installed adapters (their manifests); an unreadable folder is left out."""
        found = []
        if not self.root.is_dir():
            return found
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                manifest, config = _read_json(folder / MANIFEST_FILE), _read_json(folder / CONFIG_FILE)
                found.append(AdapterInfo(folder.name, folder, manifest["domain"], manifest["base_model"],
                                         manifest["base_fingerprint"], int(config["r"]),
                                         tuple(config.get("target_modules") or ()), manifest.get("created"),
                                         manifest.get("metrics", {})))
            except (AdapterInvalid, KeyError, TypeError, ValueError):
                continue
        return found

    def path(self, name: str) -> Path:
        if not ADAPTER_NAME.match(name):
            raise AdapterInvalid(f"{name!r} is not a valid adapter name (lowercase letters, digits, . _ -)")
        return self.root / name

    def get(self, name: str) -> AdapterInfo:
        for info in self.list():
            if info.name == name:
                return info
        raise AdapterInvalid(f"no adapter named {name!r}")

    def next_name(self, domain: str) -> str:
        """``<domain>-vN`` with the first N not yet taken."""
        taken = {p.name for p in self.root.glob(f"{domain}-v*")} if self.root.is_dir() else set()
        number = 1
        while f"{domain}-v{number}" in taken:
            number += 1
        return f"{domain}-v{number}"

    def install(self, source: Path, name: str, base: BaseModel) -> AdapterInfo:
        """Validate ``source``, copy it beside the registry, and rename it into place."""
        target = self.path(name)
        if target.exists():
            raise AdapterInvalid(f"an adapter named {name!r} already exists")
        validate_adapter(source, base, name=name)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".incoming-{uuid.uuid4().hex[:8]}"
        try:
            shutil.copytree(source, staging, symlinks=False)
            os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return validate_adapter(target, base, name=name)

    def remove(self, name: str) -> None:
        target = self.path(name)
        if not target.is_dir():
            raise AdapterInvalid(f"no adapter named {name!r}")
        shutil.rmtree(target)
