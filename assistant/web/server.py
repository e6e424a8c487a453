"""The running app: chat pipeline, admin service and Gradio server, started in this process.

launch.py calls :func:`serve` after the bootstrap; the tests call it on a free port.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from gradio.utils import get_upload_folder
from starlette.middleware import Middleware

from assistant.admin.service import AdminService
from assistant.answering.pipeline import ChatPipeline
from assistant.serving.engine_base import EngineBase
from assistant.settings import Settings
from assistant.web import openai_api
from assistant.web.guards import AdminUploadGuard, RequestSizeLimit
from indexing.embedding import Embedder
from indexing.graph_store import GraphStore

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network at run time


@dataclass
class RunningApp:
    app: object  # gradio.Blocks
    url: str
    pipeline: ChatPipeline
    admin: AdminService
    owns_engine: bool = True  # False when the caller passed in an engine it keeps using

    def close(self, job_wait_s: float = 10.0, give_up: threading.Event | None = None) -> bool:
        """Stop the admin jobs (a training job stops after its current step and checkpoints),
        waiting at most ``job_wait_s`` or until ``give_up`` is set, then the web server and the
        engine. True when every worker thread has ended; False when one may still be inside torch,
        where a normal interpreter exit aborts ("terminate called without an active exception")."""
        jobs_ended = self.admin.jobs.shutdown(job_wait_s, give_up)
        self.app.close()
        if self.owns_engine:
            self.pipeline.engine.close()
        return jobs_ended and not (self.owns_engine and self.pipeline.engine.alive)


def serve(settings: Settings, graph: GraphStore | None, *, host: str | None = None, port: int | None = None,
          share: bool = False, engine: EngineBase | None = None, embedder: Embedder | None = None) -> RunningApp:
    """Build everything and start Gradio without blocking; returns once it is listening."""
    from assistant.web.ui import PAGE_CSS, PAGE_JS, build_app

    pipeline = ChatPipeline.create(settings, graph, embedder=embedder, engine=engine)
    admin = AdminService(settings, pipeline, graph)
    app = build_app(settings, pipeline, admin)
    # A full queue refuses a request at once (HTTP 503: gradio_client raises "Queue is full! Please try
    # again.", the browser shows "This application is currently busy. Please try again.") instead of
    # letting it wait minutes; sizes from bench/load.py.
    app.queue(default_concurrency_limit=settings.ui_concurrency, max_size=settings.ui_queue_max_size)
    guards = [Middleware(RequestSizeLimit, max_bytes=settings.max_request_bytes),
              Middleware(AdminUploadGuard, ticket_valid=admin.upload_ticket_valid, folder=get_upload_folder,
                         max_folder_bytes=settings.upload_cache_max_bytes)]
    app.launch(server_name=host or settings.ui_host, server_port=port or settings.ui_port, share=share,
               prevent_thread_lock=True, quiet=True, ssr_mode=False, max_file_size=settings.max_upload_bytes,
               # Unexpected exceptions reach the browser as a plain "Error" (their text can hold paths
               # and addresses; the log has it); gr.Error messages, the admin refusals, still show.
               show_error=False, css=PAGE_CSS, js=PAGE_JS,
               # /v1 (assistant/web/openai_api.py) on the same server: its routes come before Gradio's.
               app_kwargs={"middleware": guards, "routes": openai_api.mount(settings, pipeline)})
    return RunningApp(app, app.local_url, pipeline, admin, owns_engine=engine is None)


def queue_demo_adapters(running: RunningApp, domains: list[str], steps: int) -> list[str]:
    """First run: train a quick adapter for each demo domain that has none, one after the other
    in the background; each is hot-loaded when it is ready, so chat works from the start."""
    if steps <= 0:
        return []
    registry = running.pipeline.engine.pool.registry
    have = {info.domain for info in registry.list()}
    queued = [d for d in domains if d not in have]
    for domain in queued:
        running.admin.train_in_background(domain, steps)
    return queued
