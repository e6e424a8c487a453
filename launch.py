"""Start the app: graph server, first-run indexing of the demo domains, then the chat UI.

Usage: ``python launch.py [--host H] [--port P] [--share] [--bootstrap-only]`` (``make run``
does this after installing). Serves Gradio on 127.0.0.1:7860 by default until Ctrl-C, which
stops the graph server with a save.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from assistant.bootstrap import bootstrap, demo_sources
from assistant.settings import load_settings
from indexing.domain_summary import summarise_domains


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
    result = bootstrap(settings)
    graph = result.connection
    running = None
    try:
        print(f"\nData dir:      {settings.data_dir}")
        kind = "embedded FalkorDB, private socket, no network port" if graph.server else f"external, {graph.transport_name}"
        print(f"Graph server:  {graph.uri} ({kind})")
        if graph.server:
            print(f"Graph secret:  {settings.graph_dir / 'secret'} (mode 0600)")
        for row in summarise_domains(settings.domains_dir):
            state = "ok" if row.healthy else f"UNHEALTHY: {row.problem}"
            print(f"Domain {row.domain:<10} {row.version}  {row.documents} documents, {row.chunks} chunks, "
                  f"{row.entities} entities, {row.relations} relations  [{state}]")
        if args.bootstrap_only:
            return 0
        from assistant.server import queue_demo_adapters, serve

        print("Loading the base model and adapters ...", flush=True)
        running = serve(settings, result.graph, host=args.host, port=args.port, share=args.share)
        password_file = running.admin.password_file
        print(f"\nChat:          {running.url}")
        print(f"Admin login:   user {settings.admin_username!r}, password "
              + (f"in {password_file} (mode 0600)" if password_file else "from the admin_password setting"))
        if not args.no_demo_adapters:
            queued = queue_demo_adapters(running, [s.name for s in demo_sources(settings)], settings.demo_adapter_steps)
            if queued:
                print(f"Training quick demo adapters in the background ({', '.join(queued)}; "
                      f"{settings.demo_adapter_steps} steps each); until each is ready its domain uses the base model.")
        stop = threading.Event()
        # Ctrl-C and SIGTERM only set a flag: the loop ends between checks, never inside one.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        print("Ctrl-C stops (the graph is saved).", flush=True)
        while not stop.wait(1.0):
            if graph.server and graph.server.ensure_running():
                print("graph server had stopped; restarted it", flush=True)
        print("Stopping ...", flush=True)
        return 0
    finally:
        if running is not None:
            running.close()
        graph.close()
        print("Stopped.")


if __name__ == "__main__":
    sys.exit(main())
