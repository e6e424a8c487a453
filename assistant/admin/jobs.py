"""Long admin work (re-index, training) as a :class:`Job` on one background worker, one job at a
time (two CPU-heavy jobs at once on two cores only make both slower), with progress the UI polls.

The job table is read by the UI's status poll while the worker and admin requests change it, so
it is guarded by a lock and readers get snapshots; finished jobs beyond a bound are forgotten
(queued and running ones never are), so a long-running app does not grow it without end.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from indexing.openmp_threads import one_thread_here

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
KEEP_FINISHED = 100  # finished jobs kept for the status view (it shows the newest 10)
STOP_POLL_S = 0.2  # how often a shutdown wait also checks whether the caller gave up on it


class JobStopped(Exception):
    """Raised by work that stopped because the runner is shutting down (its message says where)."""


@dataclass
class Job:
    id: str
    kind: str
    target: str
    status: str = "queued"  # queued, running, done, failed, stopped (by shutdown; resumable work resumes)
    progress: float = 0.0
    message: str = ""
    result: str = ""
    created: float = field(default_factory=time.time)
    finished: float | None = None

    def report(self, progress: float, message: str) -> None:
        self.progress, self.message = max(0.0, min(1.0, progress)), message


class JobRunner:
    """One worker thread running jobs in submission order."""

    def __init__(self, keep_finished: int = KEEP_FINISHED):
        self._jobs: dict[str, Job] = {}  # in submission order; guarded by _lock
        self._lock = threading.Lock()
        self._keep_finished = keep_finished
        self.stopping = threading.Event()  # set at shutdown: running jobs stop at their next step
        self._queue: queue.Queue[tuple[Job, Callable[[Job], str]] | None] = queue.Queue()
        self._counter = itertools.count(1)
        self._worker = threading.Thread(target=self._work, name="admin-jobs", daemon=True)
        self._worker.start()

    # --- reading (any thread) -------------------------------------------------------------------
    @property
    def jobs(self) -> dict[str, Job]:
        """A snapshot of the table: id -> job, oldest first."""
        with self._lock:
            return dict(self._jobs)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def recent(self, count: int) -> list[Job]:
        """The newest ``count`` jobs, oldest first."""
        with self._lock:
            return list(self._jobs.values())[-count:] if count > 0 else []

    def pending(self) -> int:
        with self._lock:
            return sum(job.status in ACTIVE for job in self._jobs.values())

    def running(self) -> Job | None:
        with self._lock:
            return next((job for job in self._jobs.values() if job.status == "running"), None)

    # --- changing ---------------------------------------------------------------------------------
    def submit(self, kind: str, target: str, work: Callable[[Job], str]) -> Job:
        with self._lock:  # ids, the table and the queue all in one order
            job = Job(f"{kind}-{next(self._counter)}", kind, target)
            self._jobs[job.id] = job
            self._prune()
            self._queue.put((job, work))
        return job

    def shutdown(self, wait_s: float = 10.0, give_up: threading.Event | None = None) -> bool:
        """Ask the running job to stop (training stops after its current step and checkpoints, so
        it resumes next time) and wait for the worker to end, at most ``wait_s`` seconds or until
        ``give_up`` is set. True when the worker has ended; queued jobs are not started."""
        self.stopping.set()
        self._queue.put(None)
        deadline = time.monotonic() + wait_s
        while self._worker.is_alive():
            left = deadline - time.monotonic()
            if left <= 0 or (give_up is not None and give_up.is_set()):
                return False
            self._worker.join(min(left, STOP_POLL_S))
        return True

    def _prune(self) -> None:
        """Forget the oldest finished jobs beyond the bound; the caller holds the lock."""
        finished = [job_id for job_id, job in self._jobs.items() if job.status not in ACTIVE]
        for job_id in finished[:max(0, len(finished) - self._keep_finished)]:
            del self._jobs[job_id]

    def _work(self) -> None:
        one_thread_here()  # re-index and training beside a serving engine on the CPU: indexing/openmp_threads.py
        while True:
            item = self._queue.get()
            if item is None or self.stopping.is_set():
                return
            job, work = item
            job.status = "running"
            status, result = self._run(job, work)
            with self._lock:  # finished and pruned in one step: the table never holds more than the bound
                job.status, job.result, job.finished = status, result, time.time()
                if status == "done":
                    job.progress = 1.0
                self._prune()

    @staticmethod
    def _run(job: Job, work: Callable[[Job], str]) -> tuple[str, str]:
        try:
            return "done", work(job)
        except JobStopped as exc:
            return "stopped", str(exc)
        except Exception as exc:  # a failed job is reported, the worker goes on
            log.exception("admin job %s failed", job.id)
            return "failed", f"{type(exc).__name__}: {exc}"
