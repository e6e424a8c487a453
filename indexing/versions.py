"""A domain's index versions on disk, and the atomic switch between them.

::

    data/domains/<domain>/
        CURRENT                    name of the serving version ("v000003"), replaced atomically
        .lock                      held by the one writer (re-index) of this domain
        versions/v000003/          a complete version: manifest.json (+ manifest.sha256) + the files it lists
        versions/.building-<id>/   a version being written; never read

A new version is written beside the old one, fsynced, renamed into ``versions/`` and only then
named in CURRENT (``os.replace``), so a reader sees either the old or the new version, never a
half-written one. The previous version is kept so a reader that loaded it a moment ago still
finds its files. Leftovers of a crashed build are removed by the next writer.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from indexing.atomic_files import fsync_dir, write_text_atomic

CURRENT_FILE = "CURRENT"
LOCK_FILE = ".lock"
VERSIONS_DIR = "versions"
MANIFEST_FILE = "manifest.json"
MANIFEST_CHECKSUM_FILE = "manifest.sha256"  # the manifest's own checksum (it holds the data files')
BUILDING_PREFIX = ".building-"
# \A...\Z, not ^...$: "$" also matches before a trailing newline, so "v000001\n" would pass.
_VERSION_NAME = re.compile(r"\Av(\d{6,})\Z")


class IndexBusy(RuntimeError):
    """Another process is re-indexing this domain right now."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DomainVersions:
    def __init__(self, domains_dir: Path, domain: str):
        self.domain = domain
        self.root = Path(domains_dir) / domain
        self.versions_dir = self.root / VERSIONS_DIR

    # --- reading ---------------------------------------------------------------------------
    def current(self) -> str | None:
        try:
            name = (self.root / CURRENT_FILE).read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return name if _VERSION_NAME.match(name) else None

    def path(self, version: str) -> Path:
        return self.versions_dir / version

    def current_path(self) -> Path | None:
        version = self.current()
        return self.path(version) if version else None

    def all_versions(self) -> list[str]:
        if not self.versions_dir.is_dir():
            return []
        return sorted(p.name for p in self.versions_dir.iterdir() if _VERSION_NAME.match(p.name))

    # --- writing (hold the lock) -----------------------------------------------------------
    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_FILE, "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise IndexBusy(f"domain {self.domain!r} is being re-indexed by another process") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def new_build_dir(self) -> Path:
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        path = self.versions_dir / f"{BUILDING_PREFIX}{uuid.uuid4().hex[:12]}"
        path.mkdir()
        return path

    def next_version(self) -> str:
        numbers = [int(_VERSION_NAME.match(v).group(1)) for v in self.all_versions()]
        return f"v{(max(numbers) + 1 if numbers else 1):06d}"

    def commit(self, build_dir: Path, version: str) -> Path:
        """Move a finished build into place (not yet serving). Its files must be complete."""
        for item in sorted(build_dir.rglob("*"), reverse=True):  # files first, then their folders
            if item.is_dir():
                fsync_dir(item)
            else:
                with open(item, "rb") as f:
                    os.fsync(f.fileno())
        final = self.path(version)
        os.rename(build_dir, final)
        fsync_dir(self.versions_dir)
        return final

    def switch(self, version: str) -> None:
        """Make ``version`` the serving one, atomically."""
        if not (self.path(version) / MANIFEST_FILE).is_file():
            raise FileNotFoundError(f"version {version} of {self.domain} has no manifest")
        write_text_atomic(self.root / CURRENT_FILE, version, durable=True)

    def cleanup(self, keep: int = 2) -> list[str]:
        """Remove crashed builds, versions newer than CURRENT (built but never switched to),
        and all but the ``keep`` newest versions up to CURRENT. Returns what was removed."""
        removed = []
        if not self.versions_dir.is_dir():
            return removed
        for item in self.versions_dir.iterdir():
            if item.name.startswith(BUILDING_PREFIX):
                shutil.rmtree(item, ignore_errors=True)
                removed.append(item.name)
        for stray in self.root.glob(f".{CURRENT_FILE}.*"):
            stray.unlink(missing_ok=True)
        current = self.current()
        versions = self.all_versions()
        if current is None:
            serving = []
            abandoned = versions
        else:
            serving = [v for v in versions if v <= current]
            abandoned = [v for v in versions if v > current]
        for version in abandoned + serving[:-keep]:
            shutil.rmtree(self.path(version), ignore_errors=True)
            removed.append(version)
        return removed

    def remove_domain(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def read_manifest(version_dir: Path) -> dict:
    """The version's manifest; ValueError when it fails its checksum (the data files are
    checked against the checksums inside it, so it must be intact itself). A version
    written before manifests had a checksum file is read unchecked."""
    path = version_dir / MANIFEST_FILE
    data = path.read_bytes()
    try:
        expected = (version_dir / MANIFEST_CHECKSUM_FILE).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        expected = None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{version_dir / MANIFEST_CHECKSUM_FILE} is unreadable ({exc})") from exc
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise ValueError(f"{path} is corrupted (checksum mismatch); re-index the domain to repair it")
    manifest = json.loads(data.decode("utf-8"))
    if not isinstance(manifest, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return manifest


def write_manifest(version_dir: Path, manifest: dict) -> None:
    data = json.dumps(manifest, indent=1, ensure_ascii=False).encode("utf-8")
    (version_dir / MANIFEST_FILE).write_bytes(data)
    (version_dir / MANIFEST_CHECKSUM_FILE).write_text(hashlib.sha256(data).hexdigest(), encoding="ascii")


def list_domains(domains_dir: Path) -> list[str]:
    if not Path(domains_dir).is_dir():
        return []
    return sorted(p.name for p in Path(domains_dir).iterdir() if p.is_dir() and (p / CURRENT_FILE).exists())
