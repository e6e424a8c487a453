"""What the admin tab (and the admin API) can do, with no UI code: log in, list domains and
adapters, re-index, upload corpora and adapters, hot-load, roll back, unload, train, status.

Every public method of :class:`AdminService` except :meth:`login` takes the caller's session
token first and refuses it unless it came from a successful login, so the UI, the API and a
direct HTTP call to an endpoint are all checked in the same place.

Long work (re-index, training) runs as a job in the background (admin_jobs.py). Chat keeps
answering from the serving versions meanwhile: a re-index switches a domain only when its new
version is complete, and a trained adapter is hot-loaded only after it validates and passes its
smoke test. Uploads are untrusted and checked in admin_uploads.py.
"""

from __future__ import annotations

import hmac
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from adapters.registry import ADAPTER_NAME
from assistant.admin.errors import AdminDenied, AdminError
from assistant.admin.jobs import Job, JobRunner, JobStopped
from assistant.admin.password import admin_password
from assistant.admin.sessions import AdminSessions, SessionRefused
from assistant.admin.uploads import receive_adapter, receive_corpus
from assistant.answering.pipeline import ChatPipeline
from assistant.serving.adapter_pool import AdapterLoadError
from assistant.settings import Settings
from indexing.domain_name import DOMAIN_NAME
from indexing.domain_summary import summarise_domains
from indexing.graph_store import GraphStore
from indexing.process_memory import resident_mb

__all__ = ["AdminDenied", "AdminError", "AdminService", "Job"]

MAX_LOGIN_BACKOFF_S = 15 * 60


class AdminService:
    def __init__(self, settings: Settings, pipeline: ChatPipeline, graph: GraphStore | None):
        self.settings, self.pipeline, self.graph = settings, pipeline, graph
        self.jobs = JobRunner()
        self.sessions = AdminSessions(lifetime_s=settings.admin_session_s, idle_s=settings.admin_idle_timeout_s,
                                      failures_allowed=settings.admin_login_failures_allowed,
                                      backoff_s=settings.admin_login_backoff_s, max_backoff_s=MAX_LOGIN_BACKOFF_S,
                                      budget=settings.admin_login_budget,
                                      budget_window_s=settings.admin_login_budget_window_s)
        self._password, self.password_file = admin_password(settings)

    # --- sessions ------------------------------------------------------------------------------
    def login(self, username: str, password: str, address: str | None = None) -> str:
        """A new session's token. ``address`` is the caller's (the web app passes the client's):
        failures pause only that address, and addresses that never logged in share a global
        budget of checks (admin_sessions.py); either refusal comes before the password is checked."""
        try:
            attempt = self.sessions.admit(address)
        except SessionRefused as exc:
            raise AdminDenied(str(exc)) from None
        good_user = hmac.compare_digest((username or "").encode(), self.settings.admin_username.encode())
        good_password = hmac.compare_digest((password or "").encode(), self._password.encode())
        if not (good_user and good_password):
            self.sessions.failed(attempt)  # counted before the wait, so parallel tries see it
            time.sleep(0.5)  # slows guessing down; the pauses and the budget stop it
            raise AdminDenied("wrong admin username or password")
        return self.sessions.open(attempt)

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
        folder = receive_corpus([Path(f) for f in files], self._uploads_dir(), domain, self.settings.max_upload_bytes)
        return self.jobs.submit("dry-run" if dry_run else "reindex", domain,
                                lambda job: self._run_reindex(job, domain, folder, dry_run))

    def _run_reindex(self, job: Job, domain: str, source: Path, dry_run: bool) -> str:
        from indexing.pipeline import index_source

        job.report(0.05, f"reading {source}")
        report = index_source(self.settings.indexing_params, source, domain, dry_run=dry_run, progress=False,
                              graph=self.graph, embedder=self.pipeline.router.embedder)
        job.report(1.0, "dry run finished" if dry_run else "new version serving" if report.ok else "failed")
        if not report.ok:
            raise AdminError(report.format())
        return report.format()

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
        """Hot-load a registered adapter by name, or an adapter folder under the allowed roots."""
        self.check(token)
        source = self._adapter_source(name_or_folder)
        adapter = self._pool_call(lambda: self.pipeline.engine.load_adapter(source))
        return f"{adapter.name} now serves {adapter.domain}"

    def _adapter_source(self, name_or_folder: str) -> Path:
        """A registered adapter's folder, or a folder under one of the allowed adapter roots with
        symlinks resolved: the admin tab is a web page, and must not make the server walk (and
        describe) whatever its user can read. The refusal reads the same whether or not the path
        exists outside the roots."""
        text = (name_or_folder or "").strip()
        registry = self.pipeline.engine.pool.registry
        if ADAPTER_NAME.fullmatch(text) and text in {info.name for info in registry.list()}:
            return registry.path(text)
        roots = self.settings.allowed_adapter_roots
        try:
            resolved = Path(text).expanduser().resolve() if text else None
        except (OSError, ValueError, RuntimeError):  # a NUL byte, an unknown ~user, a symlink loop
            resolved = None
        if resolved is None or not any(resolved == root or resolved.is_relative_to(root)
                                       for root in (r.resolve() for r in roots)):
            raise AdminError(f"{text!r} is neither a registered adapter nor a folder inside the folders adapters may "
                             f"be loaded from ({', '.join(map(str, roots))}; the adapter_roots setting)")
        if not resolved.is_dir():
            raise AdminError(f"{text} is not a folder on the server")
        return resolved

    def upload_adapter(self, token: str, files: Sequence[str | Path]) -> str:
        """An adapter as a .zip or as its three files; validated, installed and hot-loaded."""
        self.check(token)
        staging = Path(tempfile.mkdtemp(prefix="adapter-", dir=self._uploads_dir()))
        try:
            receive_adapter([Path(f) for f in files], staging, self.settings.max_upload_bytes)
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
            except JobStopped as exc:
                announce(f"demo adapter for {domain}: {exc} (the next start does)")
                raise
            except Exception as exc:
                announce(f"demo adapter for {domain} failed: {exc}")
                raise
            announce(f"demo adapter ready: {result}")
            return result

        return self.jobs.submit("train", domain, work)

    def _run_training(self, job: Job, domain: str, max_steps: int | None) -> str:
        from adapters.batches import TrainingError
        from adapters.dataset import build_dataset
        from adapters.train import planned_steps, train_adapter
        from assistant.answering.training_evidence import evidence_reader

        job.report(0.02, "building the dataset (with evidence-reading examples from the chat's own retrieval)")
        reader = evidence_reader(self.settings, domain, self.graph, embedder=self.pipeline.router.embedder)
        report = build_dataset(self.settings.dataset_params, domain, self.graph, progress=False, reader=reader)
        if self.jobs.stopping.is_set():  # loading the model for training would only delay the shutdown
            raise JobStopped("stopped before training began")
        steps = planned_steps(self.settings.training_params, report.total("train"), max_steps)
        job.report(0.1, f"training ({report.total('train')} examples)")
        reached = 0

        def on_step(step: int, loss: float) -> None:
            nonlocal reached
            reached = step
            job.report(0.1 + 0.75 * step / steps, f"step {step}/{steps}, loss {loss:.3f}")
            if self.jobs.stopping.is_set():
                raise KeyboardInterrupt  # the trainer checkpoints this step, then raises TrainingError

        try:
            result = train_adapter(self.settings.training_params, domain, max_steps=steps, progress=False,
                                   on_step=on_step)
        except TrainingError:
            if not (self.jobs.stopping.is_set() and reached):
                raise
            raise JobStopped(f"stopped after step {reached} of {steps} and checkpointed: training {domain} "
                             f"again for {steps} steps resumes there") from None
        job.report(0.95, f"hot-loading {result.adapter}")
        self.pipeline.engine.load_adapter(result.adapter)
        base, adapter = result.metrics.get("base", {}), result.metrics.get("adapter", {})
        return (f"{result.adapter} serves {domain}: F1 {base.get('f1')} -> {adapter.get('f1')}, "
                f"answer loss {base.get('val_loss')} -> {adapter.get('val_loss')}")

    # --- status ----------------------------------------------------------------------------------
    def status(self, token: str) -> dict:
        self.check(token)
        return self._status()

    def _status(self) -> dict:
        return {"graph": self._graph_state(), "memory_mb": round(resident_mb(default=0.0), 1),
                "adapters": self.pipeline.engine.pool.active(),
                "engine": self.pipeline.engine.occupancy(),
                "jobs_pending": self.jobs.pending(),
                "jobs": [{"id": j.id, "target": j.target, "status": j.status, "progress": round(j.progress, 2),
                          "message": j.message, "result": j.result[:3000]} for j in self.jobs.recent(10)]}

    def job(self, token: str, job_id: str) -> Job:
        self.check(token)
        job = self.jobs.get(job_id)
        if job is None:
            raise AdminError(f"no job {job_id!r} (finished jobs are kept only for a while)")
        return job

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
        domain = (domain or "").strip().lower()
        if not DOMAIN_NAME.match(domain):
            raise AdminError(f"{domain!r} is not a valid domain name (lowercase letters, digits, - and _)")
        return domain
