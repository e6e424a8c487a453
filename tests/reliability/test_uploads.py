"""Hostile uploads through AdminService (what the admin tab's upload buttons call): zip slip,
symbolic links (zip entries and uploaded files), zip bombs and lying zip headers, files over the
size limit, pickled weights, an adapter for another base model, path tricks in file names.

Each is refused with a reason; afterwards no file exists outside the upload area that did not
before, the upload area holds no leftovers, and the app serves what it served (active adapters,
registered adapters, each domain's index version). tests/test_ui.py covers the basic refusals
(``..`` and absolute zip entries, a .bin in a zip, a broken zip, a script, a corpus over the limit).
"""

from __future__ import annotations

import json
import os
import pickle
import stat
import struct
import time
import zipfile
from pathlib import Path

import pytest
from pydantic import SecretStr

from assistant.admin.service import AdminError, AdminService
from assistant.settings import load_settings
from conftest import write_lora_adapter
from indexing.versions import DomainVersions

LIMIT = 5_000_000  # max_upload_bytes here; the test adapter is ~60 KB


@pytest.fixture(scope="module")
def good_adapter(base_model, tmp_path_factory) -> dict[str, bytes]:
    folder = write_lora_adapter(base_model, tmp_path_factory.mktemp("adapter") / "good", "finance", seed=31)
    return {path.name: path.read_bytes() for path in folder.iterdir()}


@pytest.fixture(scope="module")
def admin(running_app, tmp_path_factory):
    """An AdminService over the served app's pipeline and model, whose own data dir (and so
    upload area) is private to this module."""
    settings = load_settings(data_dir=tmp_path_factory.mktemp("upload-admin") / "data", _env_file=None,
                             admin_password=SecretStr("upload-test-password"), max_upload_bytes=LIMIT)
    service = AdminService(settings, running_app.pipeline, None)
    yield service
    service.jobs.shutdown()


@pytest.fixture(scope="module")
def session(admin) -> str:
    return admin.login("admin", "upload-test-password")


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and link under root (links not followed): path -> (size, mtime)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            info = os.lstat(os.path.join(folder, name))
            found[os.path.relpath(os.path.join(folder, name), root)] = (info.st_size, info.st_mtime_ns)
    return found


def _serving_state(running_app) -> dict:
    pool, settings = running_app.pipeline.engine.pool, running_app.pipeline.settings
    return {"active": pool.active(), "loaded": [row["name"] for row in pool.list()],
            "registered": [info.name for info in pool.registry.list()],
            "versions": {domain: DomainVersions(settings.domains_dir, domain).current()
                         for domain in ("medicine", "finance", "law")}}


@pytest.fixture
def unchanged(admin, running_app):
    """Checks, after the test, that nothing outside the upload area changed (the module's data
    dir and the served app's) and that the upload area is empty again."""
    uploads = admin.settings.data_dir / "uploads"
    watched = [admin.settings.data_dir, running_app.pipeline.settings.data_dir]
    before = [{k: v for k, v in _files(root).items() if not k.startswith("uploads")} for root in watched]
    state = _serving_state(running_app)
    yield
    after = [{k: v for k, v in _files(root).items() if not k.startswith("uploads")} for root in watched]
    assert after == before, "files changed outside the upload area"
    assert _serving_state(running_app) == state
    leftovers = [p for p in uploads.rglob("*")] if uploads.exists() else []
    assert not leftovers, leftovers


def _zip(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]],
         compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return path


def _entry(name: str, kind: int) -> zipfile.ZipInfo:
    """A zip entry recording a Unix file type (a link, a FIFO, ...) in its mode bits."""
    info = zipfile.ZipInfo(name)
    info.external_attr = (kind | 0o777) << 16
    return info


class RunsCode:
    """Unpickling this creates a folder: proof that a pickle was loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


# --- adapters as a zip -------------------------------------------------------------------------

def _zip_cases(good: dict[str, bytes], secret: Path, outside: Path) -> dict[str, tuple[list, str]]:
    files = list(good.items())
    config = good["adapter_config.json"]
    return {
        "zip slip ../": (files + [("../../escaped.txt", b"x")], "absolute path or '..'"),
        "zip slip inside a folder": (files + [("adapter/../../../escaped.txt", b"x")], "absolute path or '..'"),
        "zip slip absolute": (files + [(str(outside / "absolute.txt"), b"x")], "absolute path or '..'"),
        "zip slip backslashes": (files + [("..\\..\\escaped.txt", b"x")], "absolute path or '..'"),
        "symlink entry to a secret": ([(n, d) for n, d in files if n != "adapter_config.json"]
                                      + [(_entry("adapter_config.json", stat.S_IFLNK), str(secret).encode())],
                                      "symbolic link"),
        "symlink entry to a folder": (files + [(_entry("README.md", stat.S_IFLNK), b"/etc")], "symbolic link"),
        "fifo entry": (files + [(_entry("README.md", stat.S_IFIFO), b"")], "special file"),
        "pickled .pt": (files + [("adapter_model.pt", pickle.dumps({"w": 1}))], "pickled weights are refused"),
        "pickled .pkl": (files + [("weights.pkl", pickle.dumps({"w": 1}))], "pickled weights are refused"),
        "the same file twice": (files + [("other/adapter_config.json", config)], "appears twice"),
        "too many entries": (files + [(f"README{i}.txt", b"") for i in range(20)], "entries"),
    }


CASES = ["zip slip ../", "zip slip inside a folder", "zip slip absolute", "zip slip backslashes",
         "symlink entry to a secret", "symlink entry to a folder", "fifo entry", "pickled .pt", "pickled .pkl",
         "the same file twice", "too many entries"]


@pytest.mark.parametrize("case", CASES)
def test_hostile_adapter_zips_are_refused(admin, session, good_adapter, running_app, tmp_path, unchanged, case):
    secret = running_app.pipeline.settings.data_dir / "admin_password"
    entries, reason = _zip_cases(good_adapter, secret, tmp_path / "outside")[case]
    with pytest.raises(AdminError, match=reason):
        admin.upload_adapter(session, [_zip(tmp_path / "upload.zip", entries)])
    assert not (tmp_path / "outside").exists()


def test_a_zip_bomb_is_refused_from_its_headers(admin, session, good_adapter, tmp_path, unchanged):
    bomb = {**good_adapter, "adapter_model.safetensors": bytes(20_000_000)}  # 20 MB of zeros, ~20 KB packed
    with pytest.raises(AdminError, match="compression ratio over 100"):
        admin.upload_adapter(session, [_zip(tmp_path / "bomb.zip", list(bomb.items()), zipfile.ZIP_DEFLATED)])
    # packs 2:1 (an ordinary ratio) into a zip under the limit, but unpacks to more than the limit
    halves = b"".join(os.urandom(512) + bytes(512) for _ in range(LIMIT // 1024 + 64))
    big = {**good_adapter, "adapter_model.safetensors": halves}
    archive = _zip(tmp_path / "big.zip", list(big.items()), zipfile.ZIP_DEFLATED)
    assert archive.stat().st_size < LIMIT
    with pytest.raises(AdminError, match=f"unpacked adapter is larger than {LIMIT} bytes"):
        admin.upload_adapter(session, [archive])


def _lie_about_size(archive: Path, name: str, declared: int) -> None:
    """Rewrite the uncompressed size an entry declares, in its local header and the central directory."""
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as bundle:
        info = bundle.getinfo(name)
    local = info.header_offset
    struct.pack_into("<I", data, local + 22, declared)
    central = data.find(b"PK\x01\x02")  # the central directory records; find this entry's
    while data[central + 46:central + 46 + len(name)] != name.encode():
        central = data.find(b"PK\x01\x02", central + 4)
    struct.pack_into("<I", data, central + 24, declared)
    archive.write_bytes(bytes(data))


@pytest.mark.parametrize("declared", [10, 10**9], ids=["declares less", "declares more"])
def test_a_zip_whose_headers_lie_about_sizes_is_refused(admin, session, good_adapter, tmp_path, unchanged, declared):
    archive = _zip(tmp_path / "liar.zip", list(good_adapter.items()), zipfile.ZIP_DEFLATED)
    _lie_about_size(archive, "adapter_config.json", declared)
    with pytest.raises(AdminError) as refused:
        admin.upload_adapter(session, [archive])
    reasons = ("not a valid zip", "CRC", "larger than", "compression ratio", "header says", "malformed")
    assert any(reason in str(refused.value) for reason in reasons), refused.value


# --- adapters as files -------------------------------------------------------------------------

def _write(folder: Path, files: dict[str, bytes]) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    return paths


@pytest.mark.parametrize("name", ["adapter_model.bin", "adapter_model.pt", "weights.pkl"])
def test_pickled_weights_are_refused_and_never_loaded(admin, session, good_adapter, tmp_path, unchanged, name):
    marker = tmp_path / "pickle-ran"
    payload = pickle.dumps(RunsCode(marker))
    others = {k: v for k, v in good_adapter.items() if k != "adapter_model.safetensors"}
    with pytest.raises(AdminError, match="adapter upload holds only"):
        admin.upload_adapter(session, _write(tmp_path / "files", {**others, name: payload}))
    with pytest.raises(AdminError, match="pickled weights are refused"):
        admin.upload_adapter(session, [_zip(tmp_path / "pickled.zip", list({**others, name: payload}.items()))])
    assert not marker.exists()


def test_a_pickle_named_like_safetensors_is_refused_and_never_loaded(admin, session, good_adapter, tmp_path, unchanged):
    marker = tmp_path / "pickle-ran"
    disguised = {**good_adapter, "adapter_model.safetensors": pickle.dumps(RunsCode(marker))}
    with pytest.raises(AdminError, match="adapter_model.safetensors is unreadable"):
        admin.upload_adapter(session, _write(tmp_path / "files", disguised))
    assert not marker.exists()


def test_an_adapter_for_another_base_model_is_refused(admin, session, good_adapter, tmp_path, unchanged):
    manifest = json.loads(good_adapter["manifest.json"])
    manifest.update(base_model="SomeOther-7B", base_fingerprint="f" * 64)
    other = {**good_adapter, "manifest.json": json.dumps(manifest).encode()}
    with pytest.raises(AdminError, match="trained on another base model"):
        admin.upload_adapter(session, _write(tmp_path / "files", other))


def test_uploaded_symbolic_links_are_refused(admin, session, good_adapter, running_app, tmp_path, unchanged):
    secret = running_app.pipeline.settings.data_dir / "admin_password"
    files = _write(tmp_path / "files", {k: v for k, v in good_adapter.items() if k != "adapter_config.json"})
    link = tmp_path / "files" / "adapter_config.json"
    link.symlink_to(secret)
    with pytest.raises(AdminError, match="symbolic link"):
        admin.upload_adapter(session, files + [link])
    zip_link = tmp_path / "adapter.zip"
    zip_link.symlink_to(_zip(tmp_path / "real.zip", list(good_adapter.items())))
    with pytest.raises(AdminError, match="symbolic link"):
        admin.upload_adapter(session, [zip_link])
    note = tmp_path / "note.md"
    note.symlink_to(secret)
    with pytest.raises(AdminError, match="symbolic link"):
        admin.upload_corpus(session, "medicine", [note])


def test_uploads_over_the_size_limit_are_refused_before_copying(admin, session, good_adapter, tmp_path, unchanged):
    big = {**good_adapter, "adapter_model.safetensors": bytes(LIMIT + 1)}
    with pytest.raises(AdminError, match=f"adapter is larger than {LIMIT} bytes"):
        admin.upload_adapter(session, _write(tmp_path / "files", big))
    huge = tmp_path / "huge.zip"
    huge.write_bytes(bytes(LIMIT + 1))
    with pytest.raises(AdminError, match=f"larger than {LIMIT} bytes"):
        admin.upload_adapter(session, [huge])
    (tmp_path / "a.md").write_bytes(b"# A\n" + bytes(LIMIT // 2))
    (tmp_path / "b.md").write_bytes(b"# B\n" + bytes(LIMIT // 2))
    with pytest.raises(AdminError, match=f"larger than {LIMIT} bytes"):
        admin.upload_corpus(session, "medicine", [tmp_path / "a.md", tmp_path / "b.md"])


# --- corpus uploads ----------------------------------------------------------------------------

def test_path_tricks_in_corpus_file_names_stay_in_the_upload_area(admin, session, running_app, tmp_path):
    before = _files(running_app.pipeline.settings.data_dir)
    outside_before = _files(admin.settings.data_dir.parent)
    tricky = tmp_path / "..\\..\\escaped.md"  # a legal Linux file name that looks like a Windows path
    tricky.write_text("# Escaped\nA document whose name tries to climb out of the upload folder.\n")
    job = admin.upload_corpus(session, "medicine", [tricky], dry_run=True)
    deadline = time.monotonic() + 120
    while admin.jobs.jobs[job.id].status not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert admin.jobs.jobs[job.id].status == "done", admin.jobs.jobs[job.id].result
    stored = list((admin.settings.data_dir / "uploads").rglob("*.md"))
    assert [p.name for p in stored] == ["escaped.md"] and stored[0].parent.parent.name == "medicine"
    new = set(_files(admin.settings.data_dir.parent)) - set(outside_before)
    assert all(path.startswith(os.path.join("data", "uploads", "medicine")) for path in new), new
    assert _files(running_app.pipeline.settings.data_dir) == before
    for path in stored:  # leave the upload area empty for the other tests' checks
        path.unlink()
        path.parent.rmdir()
    (admin.settings.data_dir / "uploads" / "medicine").rmdir()
