"""The admin job runner (assistant/admin/jobs.py) on its own: a job table that threads read while
others submit, pruned to a bound without ever losing a queued or running job, and a shutdown that
waits for the running job to stop but never forever. Pure logic: the jobs are small functions."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from assistant.admin.jobs import JobRunner, JobStopped

HANG_GUARD_S = 60  # only against a hang; no test here waits for time


@pytest.fixture
def runner():
    runner = JobRunner(keep_finished=5)
    yield runner
    runner.shutdown(wait_s=HANG_GUARD_S)


@pytest.fixture
def frequent_thread_switches():
    """Switch threads every microsecond instead of every 5 ms, so a reader iterating the table
    while another thread inserts overlaps on nearly every poll (as the UI's status poll does)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def _wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen"
        time.sleep(0.001)


def test_reading_the_table_while_threads_submit_never_fails_and_it_stays_bounded(runner, frequent_thread_switches):
    submitters, per_thread = 8, 300
    errors = []
    done_submitting = threading.Event()

    def submit_many():
        try:
            for i in range(per_thread):
                runner.submit("noop", f"t{i}", lambda job: "ok")
        except Exception as exc:
            errors.append(exc)

    def poll():
        try:
            while not done_submitting.is_set():
                runner.pending()
                recent = runner.recent(10)
                runner.jobs
                if recent:
                    runner.get(recent[-1].id)
        except Exception as exc:
            errors.append(exc)

    pollers = [threading.Thread(target=poll) for _ in range(2)]
    threads = [threading.Thread(target=submit_many) for _ in range(submitters)]
    for thread in pollers + threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_GUARD_S)
    done_submitting.set()
    for thread in pollers:
        thread.join(HANG_GUARD_S)
    assert errors == []
    _wait_until(lambda: runner.pending() == 0, "the worker finishing every job")
    assert len(runner.jobs) == 5  # 2400 submitted: only the newest finished ones are kept
    assert all(job.status == "done" for job in runner.jobs.values())
    numbers = [int(job.id.rsplit("-", 1)[1]) for job in runner.recent(10)]
    assert numbers == sorted(numbers) and numbers[-1] == submitters * per_thread  # the newest are kept


def test_pruning_forgets_old_finished_jobs_but_never_a_queued_or_running_one(runner):
    finished = [runner.submit("noop", "old", lambda job: "ok") for _ in range(8)]
    _wait_until(lambda: runner.pending() == 0, "the first jobs finishing")
    started, release = threading.Event(), threading.Event()

    def blocking(job):
        started.set()
        release.wait(HANG_GUARD_S)
        return "released"

    running = runner.submit("train", "law", blocking)
    started.wait(HANG_GUARD_S)
    queued = [runner.submit("reindex", f"q{i}", lambda job: "ok") for i in range(7)]  # more than the bound
    try:
        table = runner.jobs
        assert running.id in table and table[running.id].status == "running"
        assert all(table[job.id].status == "queued" for job in queued)
        assert [job_id for job_id in table if job_id.startswith("noop")] == [job.id for job in finished[-5:]]
        assert runner.get(finished[0].id) is None and runner.running() is running
        assert runner.pending() == 8
    finally:
        release.set()
    _wait_until(lambda: runner.pending() == 0, "the queued jobs finishing")
    assert list(runner.jobs) == [job.id for job in queued[-5:]]  # now finished, so pruned like any other


def test_shutdown_waits_for_the_running_job_to_stop_and_starts_no_queued_one(runner):
    started, steps = threading.Event(), []

    def training(job):  # like _run_training: a step, then a look at whether to stop
        started.set()
        while True:
            steps.append(len(steps) + 1)
            if runner.stopping.is_set():
                raise JobStopped(f"stopped after step {steps[-1]}")

    job = runner.submit("train", "law", training)
    queued = runner.submit("train", "finance", lambda j: "should not run")
    started.wait(HANG_GUARD_S)
    assert runner.shutdown(wait_s=HANG_GUARD_S) is True
    assert job.status == "stopped" and job.result == f"stopped after step {steps[-1]}"
    assert queued.status == "queued" and runner.pending() == 1


def test_shutdown_of_a_job_that_does_not_stop_gives_up_after_its_bound_or_when_told(runner):
    started, release = threading.Event(), threading.Event()

    def stubborn(job):  # a step far longer than the wait (a long evaluation, say)
        started.set()
        release.wait(HANG_GUARD_S)
        return "finished anyway"

    job = runner.submit("train", "law", stubborn)
    started.wait(HANG_GUARD_S)
    try:
        assert runner.shutdown(wait_s=0.05) is False and job.status == "running"
        told = threading.Event()
        told.set()  # a second Ctrl-C: stop waiting at once, whatever the bound
        assert runner.shutdown(wait_s=HANG_GUARD_S, give_up=told) is False and job.status == "running"
    finally:
        release.set()
    assert runner.shutdown(wait_s=HANG_GUARD_S) is True and job.status == "done"
