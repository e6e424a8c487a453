"""Corpus files and adapters uploaded through the admin tab, received into folders after checks.

Uploads are untrusted: size limits, only known file types, symbolic links refused (a file that
is one, or a zip entry that would be one), zip entries with absolute paths or ``..`` refused, zip
bombs refused from the headers (unpacked size, compression ratio) and again while unpacking
(headers can lie), everything written to a temporary folder and moved into place only after it
validates.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath

from adapters.registry import CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE
from assistant.admin.errors import AdminError
from indexing.corpus import SUPPORTED_SUFFIXES

ADAPTER_FILES = {WEIGHTS_FILE, CONFIG_FILE, MANIFEST_FILE}
# Real adapter files compress a little (float weights) to ~10x (JSON); far more is a zip bomb.
MAX_ZIP_RATIO = 100
# The three adapter files, a README, and the folders they may sit in.
MAX_ZIP_ENTRIES = 16
COPY_CHUNK = 1 << 20


def receive_corpus(files: list[Path], uploads_dir: Path, domain: str, max_bytes: int) -> Path:
    """Corpus files copied into a new folder ``uploads_dir/domain/<time>``, which appears only once
    all of them passed; returns that folder."""
    if not files:
        raise AdminError("no files uploaded")
    staging = Path(tempfile.mkdtemp(prefix="upload-", dir=uploads_dir))
    try:
        total = 0
        for file in files:
            name = _safe_name(file.name)
            if Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
                raise AdminError(f"{name}: unsupported file type (use {', '.join(sorted(SUPPORTED_SUFFIXES))})")
            total += _regular_file_size(file)
            if total > max_bytes:
                raise AdminError(f"the upload is larger than {max_bytes} bytes")
            shutil.copyfile(file, staging / name, follow_symlinks=False)
        target = uploads_dir / domain / time.strftime("%Y%m%d-%H%M%S")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def receive_adapter(files: list[Path], target: Path, max_bytes: int) -> None:
    """An adapter, as one .zip or as its files, unpacked or copied into the folder ``target``."""
    if len(files) == 1 and files[0].suffix.lower() == ".zip":
        _unzip_adapter(files[0], target, max_bytes)
    else:
        names = [_safe_name(file.name) for file in files]
        for name in names:
            if name not in ADAPTER_FILES:
                raise AdminError(f"{name}: an adapter upload holds only {', '.join(sorted(ADAPTER_FILES))} "
                                 "(or one .zip of them)")
        if sum(_regular_file_size(file) for file in files) > max_bytes:
            raise AdminError(f"the adapter is larger than {max_bytes} bytes")
        for file, name in zip(files, names):
            shutil.copyfile(file, target / name, follow_symlinks=False)
    total = sum(p.stat().st_size for p in target.iterdir())
    if total > max_bytes:
        raise AdminError(f"the adapter is larger than {max_bytes} bytes")


def _unzip_adapter(archive: Path, target: Path, max_bytes: int) -> None:
    if _regular_file_size(archive) > max_bytes:
        raise AdminError(f"the upload is larger than {max_bytes} bytes")
    try:
        with zipfile.ZipFile(archive) as bundle:
            entries = bundle.infolist()
            if len(entries) > MAX_ZIP_ENTRIES:
                raise AdminError(f"refused zip with {len(entries)} entries (an adapter has at most "
                                 f"{MAX_ZIP_ENTRIES})")
            members = [m for m in entries if not m.is_dir()]
            for member in members:
                _check_zip_entry(member)
            if sum(m.file_size for m in members) > max_bytes:
                raise AdminError(f"the unpacked adapter is larger than {max_bytes} bytes")
            budget = max_bytes
            written: set[str] = set()
            for member in members:
                name = PurePosixPath(member.filename).name
                if name == "README.md":
                    continue
                if name not in ADAPTER_FILES:
                    raise AdminError(f"{member.filename}: not an adapter file (only "
                                     f"{', '.join(sorted(ADAPTER_FILES))}; pickled weights are refused)")
                if name in written:
                    raise AdminError(f"refused zip entry {member.filename!r} ({name} appears twice)")
                written.add(name)
                budget -= _extract_bounded(bundle, member, target / name, budget)
    except zipfile.BadZipFile as exc:
        raise AdminError(f"{archive.name} is not a valid zip file ({exc})") from exc


def _check_zip_entry(member: zipfile.ZipInfo) -> None:
    """Refuse an entry that would land outside the folder, be a link, or is a compression bomb."""
    path = PurePosixPath(member.filename)
    if path.is_absolute() or ".." in path.parts or "\\" in member.filename:
        raise AdminError(f"refused zip entry {member.filename!r} (absolute path or '..')")
    kind = stat.S_IFMT(member.external_attr >> 16)  # Unix file type, when the zip recorded one
    if kind and kind != stat.S_IFREG:
        raise AdminError(f"refused zip entry {member.filename!r} (a symbolic link or special file)")
    if member.file_size > MAX_ZIP_RATIO * max(member.compress_size, 1):
        raise AdminError(f"refused zip entry {member.filename!r} (compression ratio over {MAX_ZIP_RATIO}: "
                         "a zip bomb?)")


def _extract_bounded(bundle: zipfile.ZipFile, member: zipfile.ZipInfo, out_path: Path, budget: int) -> int:
    """Unpack one entry, counting the bytes as they come: more than the header declared, or than
    the upload budget left, is refused. Returns the bytes written."""
    limit = min(member.file_size, budget)
    written = 0
    with bundle.open(member) as source, open(out_path, "xb") as out:
        while chunk := source.read(COPY_CHUNK):
            written += len(chunk)
            if written > limit:
                raise AdminError(f"refused zip entry {member.filename!r} (unpacks to more than its header says "
                                 "or than the upload limit)")
            out.write(chunk)
    return written


def _regular_file_size(path: Path) -> int:
    """The size of an uploaded file, refusing links and anything but a plain file."""
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise AdminError(f"refused {path.name!r} (a symbolic link or special file, not a plain file)")
    return info.st_size


def _safe_name(name: str) -> str:
    """The file's own name (no folders), refusing names that only make sense as paths."""
    base = Path(name.replace("\\", "/")).name
    if base in ("", ".", "..") or base.startswith("."):
        raise AdminError(f"refused file name {name!r}")
    return base
