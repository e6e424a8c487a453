"""Every domain's LoRA adapter as a named PEFT adapter on one shared base model, hot-loadable.

One base model serves all domains; each request of a batch names its own adapter (or none),
so adapters are never switched under a running answer. The pool is the serving engine's
(assistant/serving/engine.py): its methods that touch the model (:meth:`serve`, :meth:`unload`,
:meth:`pin`, :meth:`unpin`) run on the engine's thread only, between decode steps, so nothing
here takes a lock. What other threads read (:meth:`adapter_for`, :meth:`active`, :meth:`list`)
comes from dictionaries that are replaced whole, never changed in place, so a reader sees one
state or the next, never half of a change. :meth:`resolve` (validation and installation, file
work only) runs on the caller's thread, so the engine never waits for a disk.

Hot-load (:meth:`resolve` then :meth:`serve`): validate with the registry (installing a folder
from outside it under ``<domain>-vN``), load the weights beside the serving ones, run a smoke
test (finite logits, non-empty text), then point the domain at the new adapter in one
assignment. Any failure removes the half-loaded adapter and leaves the previous one serving; the
error says why. Requests pin the adapter they started with: an adapter that is unloaded or
replaced stops being chosen at once, and its weights go when its last request ends. The active
choice per domain (and the one before it, for rollback) is kept in ``adapters/active.json`` so
a restart serves what was serving.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from adapters.base_model import BaseModel, load_model, load_tokenizer, resolve_base_model
from adapters.registry import AdapterInfo, AdapterInvalid, AdapterRegistry, base_weight_shapes, validate_adapter
from assistant.settings import Settings
from indexing.atomic_files import write_text_atomic

log = logging.getLogger(__name__)

ACTIVE_FILE = "active.json"
_VERSION = re.compile(r"-v(\d+)\Z")  # \Z: "$" would also match before a trailing newline


class AdapterLoadError(RuntimeError):
    """An adapter could not be loaded or activated; whatever served before still serves."""


@dataclass(frozen=True)
class ServingAdapter:
    name: str
    domain: str
    path: Path
    metrics: dict = field(default_factory=dict)
    loaded_at: str = ""


# The smoke test an adapter passes before it serves: (pool, adapter name) -> None, raising
# AdapterLoadError when the adapter's answer is broken. The engine runs it with its own decoder.
SmokeTest = Callable[["AdapterPool", str], None]


class AdapterPool:
    def __init__(self, settings: Settings, base: BaseModel | None = None, device: str = "cpu",
                 load_weights: bool = True):
        """``load_weights`` False: the weights live on a remote generation server
        (assistant/serving/remote_engine.py); the pool still validates adapters, keeps which one serves
        each domain, and smoke-tests each through the server before it serves."""
        self.settings = settings
        self.base = base or resolve_base_model(settings.base_model, settings.models_dir)
        self.tokenizer = load_tokenizer(self.base)
        self.model = load_model(self.base, settings.serve_quantization, device) if load_weights else None
        if self.model is not None:
            self.model.eval()
        self.registry = AdapterRegistry(settings.adapters_dir)
        self._shapes = base_weight_shapes(self.base)
        # Replaced whole on every change (see the module docstring); the engine's thread writes.
        self._loaded: dict[str, ServingAdapter] = {}
        self._active: dict[str, str] = {}  # domain -> adapter name
        self._previous: dict[str, str] = {}  # domain -> the adapter before the active one
        self._pins: Counter[str] = Counter()  # adapter -> requests running with it
        self._retired: set[str] = set()  # no longer served, weights kept until their last request ends

    # --- reading (any thread) --------------------------------------------------------------------
    def adapter_for(self, domain: str | None) -> str | None:
        return self._active.get(domain) if domain else None

    def is_loaded(self, name: str) -> bool:
        return name in self._loaded

    def previous_for(self, domain: str) -> str | None:
        return self._previous.get(domain)

    def list(self) -> list[dict]:
        loaded, active, previous = self._loaded, self._active, self._previous
        rows = []
        for name, adapter in sorted(loaded.items()):
            rows.append({"name": name, "domain": adapter.domain, "active": active.get(adapter.domain) == name,
                         "previous": previous.get(adapter.domain) == name, "path": str(adapter.path),
                         "loaded_at": adapter.loaded_at, "metrics": adapter.metrics})
        return rows

    def active(self) -> dict[str, str]:
        return dict(self._active)

    def startup_choices(self) -> list[str]:
        """At start-up (the engine's thread): each domain's remembered adapter, else its newest
        valid version; the remembered previous adapters become rollback targets again."""
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
        return [name for _, name in sorted(choices.items())]

    def resolve(self, source: str | Path) -> AdapterInfo:
        """Validate ``source`` (a registry name or a folder) and return its registry entry,
        installing a folder from elsewhere first. File work only: any thread."""
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

    def forget_failed_install(self, source: str | Path, info: AdapterInfo) -> None:
        """After a failed hot-load of a folder from outside the registry: remove the copy that
        :meth:`resolve` installed as ``info.name``, so a refused adapter is not listed as one
        that could serve (the source folder stays). File work only: any thread."""
        copied = Path(source).is_dir() and Path(source).resolve() != info.path.resolve()
        if copied and info.name not in self._loaded and info.path.is_dir():
            self.registry.remove(info.name)

    # --- changes (the engine's thread only) ------------------------------------------------------
    def serve(self, info: AdapterInfo, smoke_test: SmokeTest, domain: str | None = None) -> ServingAdapter:
        """Load a resolved adapter (if it is not loaded), smoke-test it, and make it serve its domain."""
        if info.name not in self._loaded:
            self._inject(info, smoke_test)
        self._activate(domain or info.domain, info.name)
        log.info("adapter %s now serves %s", info.name, domain or info.domain)
        return self._loaded[info.name]

    def unload(self, name_or_domain: str) -> str:
        """Stop serving an adapter (by name, or a domain's active one); its domain falls back to
        the base model. Requests already running with it finish with it. Returns the name."""
        name = self._active.get(name_or_domain, name_or_domain)
        adapter = self._loaded.get(name)
        if adapter is None:
            raise AdapterLoadError(f"no loaded adapter or domain named {name_or_domain!r}")
        self._active = {d: n for d, n in self._active.items() if n != name}
        self._previous = {d: n for d, n in self._previous.items() if n != name}
        self._remove_weights(name)
        self._save_active()
        return name

    def pin(self, name: str | None) -> None:
        """A request starts with ``name``: its weights stay until :meth:`unpin`."""
        if name is not None:
            if name not in self._loaded:
                raise AdapterLoadError(f"adapter {name!r} is not loaded")
            self._pins[name] += 1

    def unpin(self, name: str | None) -> None:
        if name is None:
            return
        self._pins[name] -= 1
        if self._pins[name] <= 0:
            del self._pins[name]
            if name in self._retired:
                self._retired.discard(name)
                self._delete_from_model(name)

    # --- internals -------------------------------------------------------------------------------
    def _inject(self, info: AdapterInfo, smoke_test: SmokeTest) -> None:
        """Load the weights, smoke-test them, or remove them again."""
        from peft import PeftModel

        try:
            if info.name in self._retired:  # unloaded but still finishing answers: the same weights
                self._retired.discard(info.name)
            elif self.model is None:  # remote generation: the server holds the weights
                pass
            elif self._is_peft():
                self.model.load_adapter(str(info.path), adapter_name=info.name)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(info.path), adapter_name=info.name)
            if self.model is not None:
                self.model.eval()
            self._loaded = {**self._loaded, info.name: ServingAdapter(
                info.name, info.domain, info.path, info.metrics, datetime.now(timezone.utc).isoformat(timespec="seconds"))}
            smoke_test(self, info.name)
        except Exception as exc:
            self._remove_weights(info.name)
            raise AdapterLoadError(f"adapter {info.name} failed to load: {exc}") from exc

    def _activate(self, domain: str, name: str) -> None:
        current = self._active.get(domain)
        if current == name:
            return
        self._active = {**self._active, domain: name}  # the switch: one assignment
        if current is not None:
            dropped = self._previous.get(domain)
            self._previous = {**self._previous, domain: current}
            if dropped and dropped not in (current, name):
                self._remove_weights(dropped)  # keep active + previous loaded, no more
        self._save_active()

    def _remove_weights(self, name: str) -> None:
        """Stop listing the adapter; its weights go now, or when its last running request ends."""
        if name not in self._loaded:
            return
        self._loaded = {n: a for n, a in self._loaded.items() if n != name}
        if self._pins.get(name):
            self._retired.add(name)
        else:
            self._delete_from_model(name)

    def _delete_from_model(self, name: str) -> None:
        if not self._is_peft() or name not in self.model.peft_config:
            return
        if len(self.model.peft_config) == 1:
            self.model = self.model.unload()  # the last adapter: back to the plain base
        else:
            if name in self.model.active_adapters:
                self.model.set_adapter(next(n for n in self.model.peft_config if n != name))
            self.model.delete_adapter(name)

    def _is_peft(self) -> bool:
        return hasattr(self.model, "peft_config")

    def _read_active(self) -> dict:
        try:
            return json.loads((self.registry.root / ACTIVE_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def _save_active(self) -> None:
        self.registry.root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.registry.root / ACTIVE_FILE,
                          json.dumps({"active": self._active, "previous": self._previous}, indent=2))
