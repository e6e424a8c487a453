"""Start the app: graph server, first-run indexing of the demo domains, then the chat UI.

Usage: ``python launch.py [--host H] [--port P] [--share] [--bootstrap-only]`` (``make run``
does this after installing). Serves Gradio on 127.0.0.1:7860 by default until Ctrl-C or SIGTERM.

Stopping: a running admin job is asked to stop first. Training stops after its current step
(tens of seconds on 2 CPU cores) and checkpoints, so it resumes from there (demo adapters on the
next start); the app waits for that at most the ``shutdown_wait_s`` setting (180 s), or until a
second Ctrl-C or SIGTERM. Then the web server, the serving engine and the graph server (with a
save) stop. Exit status: 0 after Ctrl-C (SIGINT), 143 (128 + 15) after SIGTERM, as for a process
that SIGTERM ended, so a service manager sees the stop it asked for.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import traceback

from assistant.bootstrap import bootstrap, demo_sources
from assistant.settings import Settings, load_settings
from indexing.domain_summary import summarise_domains


class Interrupted(BaseException):
    """A stop signal during start-up: unwinds like Ctrl-C, so what was opened is closed."""


class StopSignals:
    """Ctrl-C and SIGTERM. The first asks the app to stop; a second stops waiting for the running job.

    While ``unwind`` is true (start-up, which has no loop to notice a flag) the first one raises
    :class:`Interrupted`; afterwards signals only set flags, so nothing is cut off half-way."""

    def __init__(self):
        self.requested, self.hurry = threading.Event(), threading.Event()
        self.signum: int | None = None
        self.unwind = True
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._received)

    def _received(self, signum: int, frame) -> None:
        if self.requested.is_set():
            self.hurry.set()
            return
        self.signum = signum
        self.requested.set()
        if self.unwind:
            raise Interrupted()

    @property
    def exit_code(self) -> int:
        return 128 + signal.SIGTERM if self.signum == signal.SIGTERM else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-only", action="store_true", help="set up and index, then exit")
    parser.add_argument("--host", help="address to listen on (default: the ui_host setting, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: the ui_port setting, 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link (off by default)")
    parser.add_argument("--no-demo-adapters", action="store_true", help="do not train quick demo adapters on first run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    settings = load_settings()
    signals = StopSignals()
    result = None
    try:
        if not args.bootstrap_only:  # before any torch work: the engine's decode keeps both cores' speed
            from assistant.serving.engine_base import share_cores_with_engine

            share_cores_with_engine(settings)
        result = bootstrap(settings)
        # From here on a signal only sets a flag: loading the engine runs torch on its own thread,
        # which an exception in this one would leave running.
        signals.unwind = False
    except BaseException:
        if result is not None:  # the signal came just after bootstrap returned
            result.connection.close()
        if not signals.requested.is_set():
            raise
        print("Stopped.", flush=True)
        return signals.exit_code
    graph = result.connection
    running = None
    try:
        _describe(settings, graph)
        if args.bootstrap_only:
            return 0
        running = _start(args, settings, result.graph, signals)
        print("Ctrl-C stops (the graph is saved).", flush=True)
        while not signals.requested.wait(1.0):
            if graph.server and graph.server.ensure_running():
                print("graph server had stopped; restarted it", flush=True)
        return signals.exit_code
    finally:
        ended = running is None or _stop(running, settings, signals)
        graph.close()
        print("Stopped.", flush=True)
        if not ended:
            _exit_now(signals)


def _describe(settings: Settings, graph) -> None:
    print(f"\nData dir:      {settings.data_dir}")
    kind = "embedded FalkorDB, private socket, no network port" if graph.server else f"external, {graph.transport_name}"
    print(f"Graph server:  {graph.uri} ({kind})")
    if graph.server:
        print(f"Graph secret:  {settings.graph_dir / 'secret'} (mode 0600)")
    for row in summarise_domains(settings.domains_dir):
        state = "ok" if row.healthy else f"UNHEALTHY: {row.problem}"
        print(f"Domain {row.domain:<10} {row.version}  {row.documents} documents, {row.chunks} chunks, "
              f"{row.entities} entities, {row.relations} relations  [{state}]")


def _start(args, settings: Settings, graph_store, signals: StopSignals):
    from assistant.web.server import queue_demo_adapters, serve

    print("Loading the base model and adapters ...", flush=True)
    running = serve(settings, graph_store, host=args.host, port=args.port, share=args.share)
    password_file = running.admin.password_file
    print(f"\nChat:          {running.url}")
    print(f"Admin login:   user {settings.admin_username!r}, password "
          + (f"in {password_file} (mode 0600)" if password_file else "from the admin_password setting"))
    if not args.no_demo_adapters and not signals.requested.is_set():
        queued = queue_demo_adapters(running, [s.name for s in demo_sources(settings)], settings.demo_adapter_steps)
        if queued:
            print(f"Training quick demo adapters in the background ({', '.join(queued)}; "
                  f"{settings.demo_adapter_steps} steps each); until each is ready its domain uses the base model.")
    return running


def _stop(running, settings: Settings, signals: StopSignals) -> bool:
    """Close the app, waiting (boundedly) for a running job to stop; True when no worker thread is left."""
    job = running.admin.jobs.running()
    if job is not None:
        print(f"Stopping: waiting for the {job.kind} job for {job.target} to stop"
              + (" after its current step and checkpoint" if job.kind == "train" else "")
              + f" (at most {settings.shutdown_wait_s:.0f} s; Ctrl-C again to stop without waiting) ...", flush=True)
    else:
        print("Stopping ...", flush=True)
    ended = running.close(settings.shutdown_wait_s, signals.hurry)
    if not ended:
        print("A worker thread did not stop in time; exiting without it"
              + (" (training resumes from its last periodic checkpoint)" if job is not None and job.kind == "train" else ""),
              flush=True)
    return ended


def _exit_now(signals: StopSignals) -> None:
    """A job thread is still inside torch, where the interpreter's normal exit aborts the process
    ("terminate called without an active exception"). Everything is saved by now: end here."""
    error = sys.exc_info()[1]
    if error is not None and not signals.requested.is_set():
        traceback.print_exception(error)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(signals.exit_code if signals.requested.is_set() else 1)


if __name__ == "__main__":
    sys.exit(main())
