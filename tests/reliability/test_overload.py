"""Overload: with the chat queue full, a further request is refused at once with a clear "busy,
try again" (HTTP 503; gradio_client's QueueError) instead of hanging, and the requests already
accepted still complete.

The app runs with one worker and one place in the queue (``ui_concurrency=1``,
``ui_queue_max_size=1``). The test keeps the serving engine's thread busy with a command that
waits for the test (as a long step would), so which request is running, which is waiting and
which is refused follows from the order of events and never from timing.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from gradio_client import Client
from gradio_client.utils import QueueError, Status

from conftest import served_app

QUESTIONS = ["What reverses the effect of warfarin?", "Which law created the Federal Reserve System?",
             "Which president appointed Earl Warren?"]
BUSY = "Queue is full! Please try again."
STATUS_TIMEOUT_S = 60  # bounds against hanging, not speed checks
REFUSAL_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def tiny_queue_app(demo_env, embedder):
    settings = demo_env.settings.model_copy(update={"ui_concurrency": 1, "ui_queue_max_size": 1,
                                                    "max_new_tokens": 8})
    with served_app(settings, demo_env.graph, embedder) as running:
        yield running


def wait_for_status(job, wanted: Status) -> None:
    deadline = time.monotonic() + STATUS_TIMEOUT_S
    while job.status().code != wanted:
        assert not job.done(), f"the job ended before reaching {wanted}: {job.status()}"
        assert time.monotonic() < deadline, f"the job never reached {wanted}: {job.status()}"
        time.sleep(0.05)


def test_a_full_queue_refuses_with_busy_and_the_accepted_requests_complete(tiny_queue_app):
    url = tiny_queue_app.url
    client = Client(url, verbose=False)
    release = threading.Event()
    busy = tiny_queue_app.pipeline.engine.call_later(lambda: release.wait(STATUS_TIMEOUT_S))
    try:  # the engine's thread is busy until release is set
        running = client.submit(QUESTIONS[0], "auto", api_name="/ask")
        wait_for_status(running, Status.PROCESSING)  # the one worker took it; it waits for the model
        waiting = client.submit(QUESTIONS[1], "auto", api_name="/ask")
        wait_for_status(waiting, Status.IN_QUEUE)  # the one place in the queue

        # (result with a timeout: were a request accepted instead, the test fails rather than hangs)
        with pytest.raises(QueueError, match=BUSY):
            client.submit(QUESTIONS[2], "auto", api_name="/ask").result(timeout=REFUSAL_TIMEOUT_S)
        with pytest.raises(QueueError, match=BUSY):  # the streaming chat shares the queue
            client.submit(QUESTIONS[2], [], "auto", api_name="/chat").result(timeout=REFUSAL_TIMEOUT_S)
        plain = httpx.post(f"{url}gradio_api/call/ask", json={"data": [QUESTIONS[2], "auto"]}, timeout=30)
        assert plain.status_code == 503 and "Queue is full" in plain.json()["detail"]
        assert not running.done() and not waiting.done()  # refusing others dropped neither
    finally:
        release.set()
    assert busy.result(timeout=STATUS_TIMEOUT_S)

    answers = [running.result(timeout=300), waiting.result(timeout=300)]
    assert [a["domain"] for a in answers] == ["medicine", "finance"]
    assert all(a["text"] and not a["error"] for a in answers)
    # The queue has drained: a new request is accepted and answered.
    after = client.predict(QUESTIONS[2], "auto", api_name="/ask")
    assert after["domain"] == "law" and after["text"] and not after["error"]
