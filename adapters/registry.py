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
from indexing.domain_name import DOMAIN_NAME

WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
MANIFEST_FILE = "manifest.json"
REQUIRED_FILES = (WEIGHTS_FILE, CONFIG_FILE, MANIFEST_FILE)
# Folders an install or a training run writes before renaming them into place.
STAGING_PREFIXES = (".incoming-", ".staging-")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# \A...\Z, not ^...$: "$" also matches before a trailing newline ("law-v1\n" would pass).
ADAPTER_NAME = re.compile(r"\A[a-z0-9][a-z0-9._-]{0,63}\Z")
# peft key: base_model.model.<module path>.lora_A.weight (optionally with an adapter name).
_LORA_KEY = re.compile(r"\Abase_model\.model\.(?P<module>.+)\.lora_(?P<part>[AB])(?:\.[^.]+)?\.weight\Z")


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


def read_adapter(path: Path, name: str | None = None) -> AdapterInfo:
    """An adapter folder's entry, checked for completeness without the base model: no pickled
    files, the three files present, the JSON well-formed, the weights' safetensors header
    complete (a truncated file fails it). A folder a crash left half-written fails here."""
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
    _check_manifest_fields(manifest)
    _lora_tensors(path / WEIGHTS_FILE)
    return AdapterInfo(name or path.name, path, manifest["domain"], manifest["base_model"], manifest["base_fingerprint"],
                       rank, tuple(targets), manifest.get("created"), manifest.get("metrics", {}))


def validate_adapter(path: Path, base: BaseModel, shapes: dict[str, tuple[int, ...]] | None = None,
                     name: str | None = None) -> AdapterInfo:
    """Check an adapter folder against the base; raise AdapterInvalid naming the first problem."""
    info = read_adapter(path, name)
    if info.base_fingerprint != base.fingerprint:
        raise AdapterInvalid(f"trained on another base model ({info.base_model}, fingerprint "
                             f"{info.base_fingerprint[:12]}...), not the serving base {base.name} "
                             f"({base.fingerprint[:12]}...)")
    shapes = shapes if shapes is not None else base_weight_shapes(base)
    _check_targets(list(info.target_modules), shapes)
    _check_tensors(info.path / WEIGHTS_FILE, info.rank, shapes)
    return info


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


def _check_manifest_fields(manifest: dict) -> None:
    for key in ("domain", "base_model", "base_fingerprint"):
        if not isinstance(manifest.get(key), str) or not manifest[key]:
            raise AdapterInvalid(f"{MANIFEST_FILE}: missing {key!r}")
    # The domain picks which questions the adapter answers: it must be a name an index could have.
    if not DOMAIN_NAME.fullmatch(manifest["domain"]):
        raise AdapterInvalid(f"{MANIFEST_FILE}: domain {manifest['domain']!r} is not a valid domain name "
                             "(lowercase letters, digits, - and _, at most 64)")


def _module_names(shapes: dict[str, tuple[int, ...]]) -> set[str]:
    return {key.removesuffix(".weight") for key in shapes if key.endswith(".weight")}


def _check_targets(targets: list[str], shapes: dict[str, tuple[int, ...]]) -> None:
    modules = _module_names(shapes)
    for target in targets:
        if not any(m == target or m.endswith("." + target) for m in modules):
            raise AdapterInvalid(f"target module {target!r} does not exist in the base model")


def _tensor_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the safetensors header, which safetensors checks against
    the file's length: a truncated file is refused here without reading its data."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            tensors = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for a damaged header
        raise AdapterInvalid(f"{WEIGHTS_FILE} is unreadable ({exc})") from None
    if not tensors:
        raise AdapterInvalid(f"{WEIGHTS_FILE} holds no tensors")
    return tensors


def _lora_tensors(weights: Path) -> dict[str, tuple[str, str, tuple[int, ...]]]:
    """key -> (module, "A" or "B", shape). Any other tensor is refused: peft would load it into the
    base model as it is (a modules_to_save copy replaces a whole layer), which no check here covers."""
    tensors = {}
    for key, shape in _tensor_shapes(weights).items():
        match = _LORA_KEY.fullmatch(key)
        if match is None:
            raise AdapterInvalid(f"{WEIGHTS_FILE}: tensor {key!r} is not a LoRA weight "
                                 "(base_model.model.<module>.lora_A/lora_B.weight); only LoRA adapters are accepted")
        tensors[key] = (match.group("module"), match.group("part"), shape)
    return tensors


def _check_tensors(weights: Path, rank: int, shapes: dict[str, tuple[int, ...]]) -> None:
    for key, (module, part, shape) in _lora_tensors(weights).items():
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


@dataclass(frozen=True)
class BrokenAdapter:
    """A folder in the registry that is not a complete adapter, and why; never served."""

    name: str
    path: Path
    problem: str


def _cause(exc: OSError) -> str:
    """An OS error's cause in words. shutil.copytree gathers its per-file errors into one
    shutil.Error whose argument is a list of (source, target, reason): the first reason."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        return str(exc.args[0][0][-1])
    return exc.strerror or str(exc)


class AdapterRegistry:
    def __init__(self, adapters_dir: Path):
        self.root = Path(adapters_dir)

    def list(self) -> list[AdapterInfo]:
        """Installed, complete adapters; a half-written or damaged folder is left out (see broken)."""
        return self._scan()[0]

    def broken(self) -> list[BrokenAdapter]:
        """Folders that are not complete adapters, with the reason: what a crash or a bad copy
        left behind, for listings to show. Each is skipped by list() and never served."""
        return self._scan()[1]

    def _scan(self) -> tuple[list[AdapterInfo], list[BrokenAdapter]]:
        found: list[AdapterInfo] = []
        broken: list[BrokenAdapter] = []
        if not self.root.is_dir():
            return found, broken
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if folder.name.startswith(STAGING_PREFIXES):
                broken.append(BrokenAdapter(folder.name, folder, "an unfinished install (in progress, or left by a "
                                                                 "crash); never served"))
            elif folder.name.startswith("."):
                continue
            else:
                try:
                    found.append(read_adapter(folder))
                except AdapterInvalid as exc:
                    broken.append(BrokenAdapter(folder.name, folder, str(exc)))
        return found, broken

    def path(self, name: str) -> Path:
        if not ADAPTER_NAME.fullmatch(name):
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
        staging = self.root / f"{STAGING_PREFIXES[0]}{uuid.uuid4().hex[:8]}"
        try:
            shutil.copytree(source, staging, symlinks=False)
            os.rename(staging, target)
        except OSError as exc:  # a full disk, a read-only folder: say which install failed, and why
            message = f"installing adapter {name!r} into {self.root} failed: {_cause(exc)}"
            raise (OSError(exc.errno, message) if exc.errno else OSError(message)) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return validate_adapter(target, base, name=name)

    def remove(self, name: str) -> None:
        target = self.path(name)
        if not target.is_dir():
            raise AdapterInvalid(f"no adapter named {name!r}")
        shutil.rmtree(target)
