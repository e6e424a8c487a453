"""Start the app: graph server, first-run indexing of the demo domains, then serve.

Usage: ``python launch.py [--bootstrap-only]`` (``make run`` does this after installing).
For now it serves the graph until Ctrl-C; the chat UI arrives with a later issue.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from assistant.bootstrap import bootstrap
from assistant.settings import load_settings
from indexing.catalog import summarise_domains


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-only", action="store_true", help="set up and index, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    settings = load_settings()
    result = bootstrap(settings)
    graph = result.connection
    try:
        print(f"\nData dir:      {settings.data_dir}")
        print(f"Graph server:  {graph.uri} ({'embedded FalkorDB' if graph.server else 'external Neo4j'})")
        if graph.server:
            print(f"Graph secret:  {settings.graph_dir / 'secret'} (mode 0600)")
        for row in summarise_domains(settings.domains_dir):
            state = "ok" if row.healthy else f"UNHEALTHY: {row.problem}"
            print(f"Domain {row.domain:<10} {row.version}  {row.documents} documents, {row.chunks} chunks, "
                  f"{row.entities} entities, {row.relations} relations  [{state}]")
        if args.bootstrap_only:
            return 0
        print("\nRunning. `assistant status` in another shell shows the domains. Ctrl-C stops (the graph is saved).")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(1.0):
                if graph.server and graph.server.ensure_running():
                    print("graph server had stopped; restarted it", flush=True)
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        graph.close()
        print("Stopped.")


if __name__ == "__main__":
    sys.exit(main())
