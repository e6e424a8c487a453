"""What the admin tab (and the admin API) can do, with no UI code: log in, list domains and
adapters, re-index, upload corpora and adapters, hot-load, roll back, unload, train, status.

Every public method of :class:`AdminService` except :meth:`login` takes the caller's session
token first and refuses it unless it came from a successful login, so the UI, the API and a
direct HTTP call to an endpoint are all checked in the same place.

Long work (re-index, training) runs as a :class:`Job` on one background worker, one job at a
time (two CPU-heavy jobs at once on two cores only make both slower), with progress the UI
polls. Chat keeps answering from the serving versions meanwhile: a re-index switches a domain
only when its new version is complete, and a trained adapter is hot-loaded only after it
validates and passes its smoke test.

Uploads are untrusted: size limits, only known file types, symbolic links refused (a file that
is one, or a zip entry that would be one), zip entries with absolute paths or ``..`` refused, zip
bombs refused from the headers (unpacked size, compression ratio) and again while unpacking
(headers can lie), everything written to a temporary folder and moved into place only after it
validates.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import queue
import secrets
import shutil
import stat
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

from adapters.registry import CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE
from assistant.adapter_pool import AdapterLoadError
from assistant.admin_sessions import AdminSessions, SessionRefused
from assistant.pipeline import ChatPipeline
from assistant.settings import Settings
from indexing.catalog import summarise_domains
from indexing.corpus import SUPPORTED_SUFFIXES
from indexing.graph_store import GraphStore

log = logging.getLogger(__name__)

ADMIN_PASSWORD_FILE = "admin_password"
MAX_LOGIN_BACKOFF_S = 15 * 60
ADAPTER_FILES = {WEIGHTS_FILE, CONFIG_FILE, MANIFEST_FILE}
# Real adapter files compress a little (float weights) to ~10x (JSON); far more is a zip bomb.
MAX_ZIP_RATIO = 100
# The three adapter files, a README, and the folders they may sit in.
MAX_ZIP_ENTRIES = 16
COPY_CHUNK = 1 << 20


class AdminDenied(PermissionError):
    """The caller is not logged in as admin."""


class AdminError(ValueError):
    """An admin request was refused (bad upload, unknown domain, ...); the message says why."""


def admin_password(settings: Settings) -> tuple[str, Path | None]:
    """The admin password from settings, else one generated on first use and kept in a file of
    mode 0600 in the data dir. Returns the password and that file (None when set in settings)."""
    if settings.admin_password is not None:
        return settings.admin_password.get_secret_value(), None
    path = settings.data_dir / ADMIN_PASSWORD_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(18) + "\n")
    return path.read_text().strip(), path


@dataclass
class Job:
    id: str
    kind: str
    target: str
    status: str = "queued"  # queued, running, done, failed
    progress: float = 0.0
    message: str = ""
    result: str = ""
    created: float = field(default_factory=time.time)
    finished: float | None = None

    def report(self, progress: float, message: str) -> None:
        self.progress, self.message = max(0.0, min(1.0, progress)), message


class JobRunner:
    """One worker thread running jobs in submission order."""

    def __init__(self):
        self.jobs: dict[str, Job] = {}
        self.stopping = threading.Event()  # set at shutdown: running jobs stop at their next step
        self._queue: queue.Queue[tuple[Job, Callable[[Job], str]] | None] = queue.Queue()
        self._counter = itertools.count(1)
        self._worker = threading.Thread(target=self._work, name="admin-jobs", daemon=True)
        self._worker.start()

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Ask the running job to stop (training checkpoints and resumes next time) and wait a while."""
        self.stopping.set()
        self._queue.put(None)
        self._worker.join(timeout_s)

    def submit(self, kind: str, target: str, work: Callable[[Job], str]) -> Job:
        job = Job(f"{kind}-{next(self._counter)}", kind, target)
        self.jobs[job.id] = job
        self._queue.put((job, work))
        return job

    def pending(self) -> int:
        return sum(job.status in ("queued", "running") for job in self.jobs.values())

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self.stopping.is_set():
                return
            job, work = item
            job.status = "running"
            try:
                job.result = work(job)
                job.status, job.progress = "done", 1.0
            except Exception as exc:  # a failed job is reported, the worker goes on
                log.exception("admin job %s failed", job.id)
                job.status, job.result = "failed", f"{type(exc).__name__}: {exc}"
            job.finished = time.time()


class AdminService:
    def __init__(self, settings: Settings, pipeline: ChatPipeline, graph: GraphStore | None):
        self.settings, self.pipeline, self.graph = settings, pipeline, graph
        self.jobs = JobRunner()
        self.sessions = AdminSessions(lifetime_s=settings.admin_session_s, idle_s=settings.admin_idle_timeout_s,
                                      failures_allowed=settings.admin_login_failures_allowed,
                                      backoff_s=settings.admin_login_backoff_s, max_backoff_s=MAX_LOGIN_BACKOFF_S)
        self._password, self.password_file = admin_password(settings)

    # --- sessions ------------------------------------------------------------------------------
    def login(self, username: str, password: str) -> str:
        try:
            self.sessions.refuse_while_paused()
        except SessionRefused as exc:
            raise AdminDenied(str(exc)) from None
        good_user = hmac.compare_digest((username or "").encode(), self.settings.admin_username.encode())
        good_password = hmac.compare_digest((password or "").encode(), self._password.encode())
        if not (good_user and good_password):
            time.sleep(0.5)  # slows guessing down; the global backoff stops it
            self.sessions.failed()
            raise AdminDenied("wrong admin username or password")
        return self.sessions.open()

    def check(self, token: str | None, *, activity: bool = True) -> None:
        try:
            self.sessions.check(token, activity=activity)
        except SessionRefused as exc:
            raise AdminDenied(str(exc)) from None

    def logout(self, token: str) -> str:
        self.check(token)
        self.sessions.close(token)
        return "Logged out."

    def upload_ticket(self, token: str) -> str:
        """A value that lets the browser send files to Gradio's upload route (see web_guards.py)
        for as long as this session lasts, and allows nothing else."""
        self.check(token)
        return self.sessions.ticket(token)

    def upload_ticket_valid(self, ticket: str | None) -> bool:
        return self.sessions.ticket_valid(ticket)

    def overview(self, token: str) -> tuple[list[dict], list[dict], dict]:
        """Domains, adapters and status for the admin tab's polling, which is not an admin action:
        an open tab alone does not keep a session from idling out."""
        self.check(token, activity=False)
        return self._domain_rows(), self._adapter_rows(), self._status()

    # --- domains -------------------------------------------------------------------------------
    def domains(self, token: str) -> list[dict]:
        self.check(token)
        return self._domain_rows()

    def _domain_rows(self) -> list[dict]:
        return [{"domain": r.domain, "version": r.version, "documents": r.documents, "chunks": r.chunks,
                 "entities": r.entities, "relations": r.relations, "index": r.index_type,
                 "last indexed": r.created, "health": "ok" if r.healthy else r.problem}
                for r in summarise_domains(self.settings.domains_dir)]

    def reindex(self, token: str, domain: str, source: str | Path, dry_run: bool = False) -> Job:
        """(Re-)index a server-side folder (or corpus file) into ``domain`` in the background."""
        self.check(token)
        domain = self._domain_name(domain)
        path = self._index_source(source)
        return self.jobs.submit("dry-run" if dry_run else "reindex", domain,
                                lambda job: self._run_reindex(job, domain, path, dry_run))

    def _index_source(self, source: str | Path) -> Path:
        """A server folder (or file) under one of the allowed roots, symlinks resolved: the admin
        tab is a web page, and must not read whatever the server's user can read."""
        path = Path(source).expanduser()
        roots = self.settings.allowed_index_roots
        resolved = path.resolve()
        if not any(resolved == root or resolved.is_relative_to(root) for root in (r.resolve() for r in roots)):
            raise AdminError(f"{path} is outside the folders that may be indexed ({', '.join(map(str, roots))}; "
                             "the index_roots setting)")
        if not resolved.exists():
            raise AdminError(f"{path} does not exist on the server")
        return resolved

    def upload_corpus(self, token: str, domain: str, files: Sequence[str | Path], dry_run: bool = False) -> Job:
        """Uploaded corpus files become the domain's new source folder, then it is re-indexed."""
        self.check(token)
        domain = self._domain_name(domain)
        folder = self._receive_corpus(domain, [Path(f) for f in files])
        return self.jobs.submit("dry-run" if dry_run else "reindex", domain,
                                lambda job: self._run_reindex(job, domain, folder, dry_run))

    def _run_reindex(self, job: Job, domain: str, source: Path, dry_run: bool) -> str:
        from indexing.pipeline import index_source

        job.report(0.05, f"reading {source}")
        report = index_source(self.settings, source, domain, dry_run=dry_run, progress=False, graph=self.graph,
                              embedder=self.pipeline.router.embedder)
        job.report(1.0, "dry run finished" if dry_run else "new version serving" if report.ok else "failed")
        if not report.ok:
            raise AdminError(report.format())
        return report.format()

    def _receive_corpus(self, domain: str, files: list[Path]) -> Path:
        if not files:
            raise AdminError("no files uploaded")
        staging = Path(tempfile.mkdtemp(prefix="upload-", dir=self._uploads_dir()))
        try:
            total = 0
            for file in files:
                name = _safe_name(file.name)
                if Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
                    raise AdminError(f"{name}: unsupported file type (use {', '.join(sorted(SUPPORTED_SUFFIXES))})")
                total += _regular_file_size(file)
                if total > self.settings.max_upload_bytes:
                    raise AdminError(f"the upload is larger than {self.settings.max_upload_bytes} bytes")
                shutil.copyfile(file, staging / name, follow_symlinks=False)
            target = self._uploads_dir() / domain / time.strftime("%Y%m%d-%H%M%S")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging, target)
            return target
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # --- adapters ------------------------------------------------------------------------------
    def adapters(self, token: str) -> list[dict]:
        self.check(token)
        return self._adapter_rows()

    def _adapter_rows(self) -> list[dict]:
        pool = self.pipeline.engine.pool
        loaded = {row["name"]: row for row in pool.list()}
        rows = []
        for info in pool.registry.list():
            metrics = info.metrics or {}
            base, adapter = metrics.get("base", {}), metrics.get("adapter", {})
            rows.append({"name": info.name, "domain": info.domain, "base": info.base_model,
                         "compatible": info.base_fingerprint == pool.base.fingerprint,
                         "F1 base -> adapter": f"{base.get('f1', '-')} -> {adapter.get('f1', '-')}",
                         "loaded": info.name in loaded, "active": pool.adapter_for(info.domain) == info.name,
                         "created": info.created})
        for broken in pool.registry.broken():  # what a crash or a bad copy left: shown, never served
            rows.append({"name": broken.name, "domain": "", "base": "", "compatible": False,
                         "F1 base -> adapter": f"INVALID: {broken.problem}", "loaded": False, "active": False,
                         "created": None})
        return rows

    def load_adapter(self, token: str, name_or_folder: str) -> str:
        self.check(token)
        adapter = self._pool_call(lambda: self.pipeline.engine.load_adapter(name_or_folder))
        return f"{adapter.name} now serves {adapter.domain}"

    def upload_adapter(self, token: str, files: Sequence[str | Path]) -> str:
        """An adapter as a .zip or as its three files; validated, installed and hot-loaded."""
        self.check(token)
        staging = Path(tempfile.mkdtemp(prefix="adapter-", dir=self._uploads_dir()))
        try:
            self._receive_adapter([Path(f) for f in files], staging)
            adapter = self._pool_call(lambda: self.pipeline.engine.load_adapter(staging))
            return f"{adapter.name} now serves {adapter.domain}"
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def rollback(self, token: str, domain: str) -> str:
        self.check(token)
        adapter = self._pool_call(lambda: self.pipeline.engine.rollback_adapter(domain))
        return f"{domain} rolled back to {adapter.name}"

    def unload(self, token: str, name_or_domain: str) -> str:
        self.check(token)
        name = self._pool_call(lambda: self.pipeline.engine.unload_adapter(name_or_domain))
        return f"{name} unloaded; its domain answers with the base model"

    def train(self, token: str, domain: str, max_steps: int | None = None) -> Job:
        """Build the domain's dataset, train an adapter, and hot-load it, in the background."""
        self.check(token)
        domain = self._domain_name(domain)
        return self.jobs.submit("train", domain, lambda job: self._run_training(job, domain, max_steps))

    def train_in_background(self, domain: str, max_steps: int, announce: Callable[[str], None] | None = None) -> Job:
        """For the app itself (first-run demo adapters): the same job without a session, saying
        on the console when each adapter serves."""
        announce = announce or (lambda message: print(message, flush=True))

        def work(job: Job) -> str:
            try:
                result = self._run_training(job, domain, max_steps)
            except Exception as exc:
                announce(f"demo adapter for {domain} failed: {exc}")
                raise
            announce(f"demo adapter ready: {result}")
            return result

        return self.jobs.submit("train", domain, work)

    def _run_training(self, job: Job, domain: str, max_steps: int | None) -> str:
        from adapters.dataset import build_dataset
        from adapters.train import train_adapter

        job.report(0.02, "building the dataset")
        report = build_dataset(self.settings, domain, self.graph, progress=False)
        steps = max_steps or self.settings.train_max_steps
        job.report(0.1, f"training ({report.total('train')} examples)")
        def on_step(step: int, loss: float) -> None:
            job.report(0.1 + 0.75 * step / steps, f"step {step}/{steps}, loss {loss:.3f}")
            if self.jobs.stopping.is_set():
                raise KeyboardInterrupt  # the trainer checkpoints; the same job resumes after a restart

        result = train_adapter(self.settings, domain, max_steps=steps, progress=False, on_step=on_step)
        job.report(0.95, f"hot-loading {result.adapter}")
        self.pipeline.engine.load_adapter(result.adapter)
        base, adapter = result.metrics.get("base", {}), result.metrics.get("adapter", {})
        return (f"{result.adapter} serves {domain}: F1 {base.get('f1')} -> {adapter.get('f1')}, "
                f"answer loss {base.get('val_loss')} -> {adapter.get('val_loss')}")

    def _receive_adapter(self, files: list[Path], target: Path) -> None:
        if len(files) == 1 and files[0].suffix.lower() == ".zip":
            self._unzip_adapter(files[0], target)
        else:
            names = [_safe_name(file.name) for file in files]
            for name in names:
                if name not in ADAPTER_FILES:
                    raise AdminError(f"{name}: an adapter upload holds only {', '.join(sorted(ADAPTER_FILES))} "
                                     "(or one .zip of them)")
            if sum(_regular_file_size(file) for file in files) > self.settings.max_upload_bytes:
                raise AdminError(f"the adapter is larger than {self.settings.max_upload_bytes} bytes")
            for file, name in zip(files, names):
                shutil.copyfile(file, target / name, follow_symlinks=False)
        total = sum(p.stat().st_size for p in target.iterdir())
        if total > self.settings.max_upload_bytes:
            raise AdminError(f"the adapter is larger than {self.settings.max_upload_bytes} bytes")

    def _unzip_adapter(self, archive: Path, target: Path) -> None:
        if _regular_file_size(archive) > self.settings.max_upload_bytes:
            raise AdminError(f"the upload is larger than {self.settings.max_upload_bytes} bytes")
        try:
            with zipfile.ZipFile(archive) as bundle:
                entries = bundle.infolist()
                if len(entries) > MAX_ZIP_ENTRIES:
                    raise AdminError(f"refused zip with {len(entries)} entries (an adapter has at most "
                                     f"{MAX_ZIP_ENTRIES})")
                members = [m for m in entries if not m.is_dir()]
                for member in members:
                    _check_zip_entry(member)
                if sum(m.file_size for m in members) > self.settings.max_upload_bytes:
                    raise AdminError(f"the unpacked adapter is larger than {self.settings.max_upload_bytes} bytes")
                budget = self.settings.max_upload_bytes
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

    # --- status ----------------------------------------------------------------------------------
    def status(self, token: str) -> dict:
        self.check(token)
        return self._status()

    def _status(self) -> dict:
        return {"graph": self._graph_state(), "memory_mb": _resident_mb(), "adapters": self.pipeline.engine.pool.active(),
                "engine": self.pipeline.engine.occupancy(),
                "jobs_pending": self.jobs.pending(),
                "jobs": [{"id": j.id, "target": j.target, "status": j.status, "progress": round(j.progress, 2),
                          "message": j.message, "result": j.result[:3000]} for j in list(self.jobs.jobs.values())[-10:]]}

    def job(self, token: str, job_id: str) -> Job:
        self.check(token)
        if job_id not in self.jobs.jobs:
            raise AdminError(f"no job {job_id!r}")
        return self.jobs.jobs[job_id]

    def _graph_state(self) -> str:
        if self.graph is None:
            return "not connected (answers use passages only)"
        return "up" if self.graph.connection.ping() else "DOWN (answers use passages only)"

    # --- helpers ---------------------------------------------------------------------------------
    def _pool_call(self, change: Callable):
        try:
            return change()
        except AdapterLoadError as exc:
            raise AdminError(str(exc)) from exc

    def _uploads_dir(self) -> Path:
        path = self.settings.data_dir / "uploads"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @staticmethod
    def _domain_name(domain: str) -> str:
        from indexing.corpus import DOMAIN_NAME

        domain = (domain or "").strip().lower()
        if not DOMAIN_NAME.match(domain):
            raise AdminError(f"{domain!r} is not a valid domain name (lowercase letters, digits, - and _)")
        return domain


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


def _resident_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


