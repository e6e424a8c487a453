"""Every domain's LoRA adapter as a named PEFT adapter on one shared base model, hot-loadable.

One base model serves all domains; a request activates its domain's adapter (or none) for
itself only. Activation and generation happen under one lock, so a request's adapter can never
change under it; changes to the pool (load, unload, rollback) take the same lock only for the
moment they touch the model, after validation and installation have happened outside it. A
hot-load therefore waits at most for the generation in progress, and no chat is dropped.

Hot-load (:meth:`AdapterPool.load`): validate with the registry (installing a folder from
outside it under ``<domain>-vN``), load the weights beside the serving ones, run a smoke test
(finite logits, non-empty text), then point the domain at the new adapter in one assignment.
Any failure removes the half-loaded adapter and leaves the previous one serving; the error
says why. The active choice per domain (and the one before it, for rollback) is kept in
``adapters/active.json`` so a restart serves what was serving.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from adapters.base_model import BaseModel, load_model, load_tokenizer, resolve_base_model
from adapters.registry import AdapterInfo, AdapterInvalid, AdapterRegistry, base_weight_shapes, validate_adapter
from assistant.settings import Settings

log = logging.getLogger(__name__)

ACTIVE_FILE = "active.json"
SMOKE_QUESTION = "Name one organ of the human body."
SMOKE_NEW_TOKENS = 8
_VERSION = re.compile(r"-v(\d+)$")


class AdapterLoadError(RuntimeError):
    """An adapter could not be loaded or activated; whatever served before still serves."""


@dataclass(frozen=True)
class ServingAdapter:
    name: str
    domain: str
    path: Path
    metrics: dict = field(default_factory=dict)
    loaded_at: str = ""


class AdapterPool:
    def __init__(self, settings: Settings, base: BaseModel | None = None, *, load_registered: bool = True):
        self.settings = settings
        self.base = base or resolve_base_model(settings)
        self.tokenizer = load_tokenizer(self.base)
        self.model = load_model(self.base, settings.serve_quantization, "cpu" if settings.serve_quantization == "none" else None)
        self.model.eval()
        self.registry = AdapterRegistry(settings.adapters_dir)
        self._shapes = base_weight_shapes(self.base)
        self._lock = threading.RLock()  # the model: generation and adapter changes
        self._loaded: dict[str, ServingAdapter] = {}
        self._active: dict[str, str] = {}  # domain -> adapter name
        self._previous: dict[str, str] = {}  # domain -> the adapter before the active one
        if load_registered:
            self._load_registered()

    # --- serving ---------------------------------------------------------------------------------
    def adapter_for(self, domain: str | None) -> str | None:
        return self._active.get(domain) if domain else None

    @contextmanager
    def using(self, adapter: str | None) -> Iterator[object]:
        """The model with ``adapter`` active (None: the bare base) for the caller alone."""
        with self._lock:
            if adapter is not None and adapter not in self._loaded:
                raise AdapterLoadError(f"adapter {adapter!r} is not loaded")
            if adapter is None:
                if self._is_peft():
                    with self.model.disable_adapter():
                        yield self.model
                else:
                    yield self.model
            else:
                self.model.set_adapter(adapter)
                yield self.model

    def list(self) -> list[dict]:
        rows = []
        for name, adapter in sorted(self._loaded.items()):
            rows.append({"name": name, "domain": adapter.domain, "active": self._active.get(adapter.domain) == name,
                         "previous": self._previous.get(adapter.domain) == name, "path": str(adapter.path),
                         "loaded_at": adapter.loaded_at, "metrics": adapter.metrics})
        return rows

    def active(self) -> dict[str, str]:
        return dict(self._active)

    # --- changes ---------------------------------------------------------------------------------
    def load(self, source: str | Path) -> ServingAdapter:
        """Hot-load a registered adapter (by name) or an adapter folder, and make it serve its domain."""
        info = self._resolve(source)
        with self._lock:
            if info.name not in self._loaded:
                self._inject(info)
            self._activate(info.domain, info.name)
        log.info("adapter %s now serves %s", info.name, info.domain)
        return self._loaded[info.name]

    def unload(self, name_or_domain: str) -> str:
        """Stop serving an adapter (by name, or a domain's active one); its domain falls back to
        the base model. Returns the unloaded name."""
        with self._lock:
            name = self._active.get(name_or_domain, name_or_domain)
            adapter = self._loaded.get(name)
            if adapter is None:
                raise AdapterLoadError(f"no loaded adapter or domain named {name_or_domain!r}")
            if self._active.get(adapter.domain) == name:
                del self._active[adapter.domain]
            if self._previous.get(adapter.domain) == name:
                del self._previous[adapter.domain]
            self._remove_weights(name)
            self._save_active()
        return name

    def rollback(self, domain: str) -> ServingAdapter:
        """Serve the domain's previous adapter again (loading it back if it was dropped)."""
        previous = self._previous.get(domain)
        if previous is None:
            raise AdapterLoadError(f"{domain} has no previous adapter to roll back to")
        info = self._resolve(previous)
        with self._lock:
            if info.name not in self._loaded:
                self._inject(info)
            self._activate(domain, info.name)
        return self._loaded[info.name]

    # --- internals -------------------------------------------------------------------------------
    def _resolve(self, source: str | Path) -> AdapterInfo:
        """Validate ``source`` (a registry name or a folder) and return its registry entry,
        installing a folder from elsewhere first."""
        try:
            path = Path(source)
            registered = isinstance(source, str) and not path.is_dir() and (self.registry.root / source).is_dir()
            if registered:
                return validate_adapter(self.registry.path(source), self.base, self._shapes, name=source)
            if not path.is_dir():
                raise AdapterInvalid(f"{source} is neither a registered adapter nor a folder")
            if path.resolve().parent == self.registry.root.resolve():
                return validate_adapter(path, self.base, self._shapes, name=path.name)
            info = validate_adapter(path, self.base, self._shapes)
            return self.registry.install(path, self.registry.next_name(info.domain), self.base)
        except AdapterInvalid as exc:
            raise AdapterLoadError(f"refused {source}: {exc}") from exc
        except OSError as exc:  # installing it failed (disk full, read-only): nothing changed
            raise AdapterLoadError(f"could not install {source}: {exc}") from exc

    def _inject(self, info: AdapterInfo) -> None:
        """Load the weights under the lock, smoke-test them, or remove them again."""
        from peft import PeftModel

        try:
            if self._is_peft():
                self.model.load_adapter(str(info.path), adapter_name=info.name)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(info.path), adapter_name=info.name)
            self.model.eval()
            self._loaded[info.name] = ServingAdapter(info.name, info.domain, info.path, info.metrics,
                                                     datetime.now(timezone.utc).isoformat(timespec="seconds"))
            self._smoke_test(info.name)
        except Exception as exc:
            self._remove_weights(info.name)
            raise AdapterLoadError(f"adapter {info.name} failed to load: {exc}") from exc

    def _smoke_test(self, name: str) -> None:
        import torch

        prompt = self.tokenizer.apply_chat_template([{"role": "user", "content": SMOKE_QUESTION}], tokenize=False,
                                                    add_generation_prompt=True)
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        with self.using(name) as model, torch.no_grad():
            logits = model(**inputs).logits
            if not torch.isfinite(logits).all():
                raise AdapterLoadError("its logits are not finite (NaN or infinity)")
            output = model.generate(**inputs, max_new_tokens=SMOKE_NEW_TOKENS, do_sample=False,
                                    pad_token_id=self.tokenizer.pad_token_id)
        text = self.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        if not text.strip():
            raise AdapterLoadError("it generates empty text")

    def _activate(self, domain: str, name: str) -> None:
        current = self._active.get(domain)
        if current == name:
            return
        self._active[domain] = name  # the switch: one assignment, under the lock
        if current is not None:
            dropped = self._previous.get(domain)
            self._previous[domain] = current
            if dropped and dropped not in (current, name):
                self._remove_weights(dropped)  # keep active + previous loaded, no more
        self._save_active()

    def _remove_weights(self, name: str) -> None:
        if name not in self._loaded or not self._is_peft():
            self._loaded.pop(name, None)
            return
        self._loaded.pop(name)
        if name in self.model.peft_config:
            if len(self.model.peft_config) == 1:
                self.model = self.model.unload()  # the last adapter: back to the plain base
            else:
                if name in self.model.active_adapters:
                    self.model.set_adapter(next(n for n in self.model.peft_config if n != name))
                self.model.delete_adapter(name)

    def _is_peft(self) -> bool:
        return hasattr(self.model, "peft_config")

    def _load_registered(self) -> None:
        """At start-up: each domain's remembered adapter, else its newest valid version."""
        remembered = self._read_active()
        newest: dict[str, tuple[int, str]] = {}
        for info in self.registry.list():
            if info.base_fingerprint != self.base.fingerprint:
                continue
            match = _VERSION.search(info.name)
            version = int(match.group(1)) if match else 0
            if info.domain not in newest or version > newest[info.domain][0]:
                newest[info.domain] = (version, info.name)
        choices = {domain: name for domain, (_, name) in newest.items()}
        choices.update({d: n for d, n in remembered.get("active", {}).items() if (self.registry.root / n).is_dir()})
        self._previous = {d: n for d, n in remembered.get("previous", {}).items() if (self.registry.root / n).is_dir()}
        for domain, name in sorted(choices.items()):
            try:
                self.load(name)
            except AdapterLoadError as exc:
                log.error("not serving an adapter for %s: %s", domain, exc)

    def _read_active(self) -> dict:
        try:
            return json.loads((self.registry.root / ACTIVE_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def _save_active(self) -> None:
        self.registry.root.mkdir(parents=True, exist_ok=True)
        target = self.registry.root / ACTIVE_FILE
        temporary = target.with_name(f".{ACTIVE_FILE}.tmp")
        temporary.write_text(json.dumps({"active": self._active, "previous": self._previous}, indent=2))
        os.replace(temporary, target)
