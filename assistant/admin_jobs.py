"""Long admin work (re-index, training) as a :class:`Job` on one background worker, one job at a
time (two CPU-heavy jobs at once on two cores only make both slower), with progress the UI polls."""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger(__name__)


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
