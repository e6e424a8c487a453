"""The ``assistant`` command: a table of sub-commands, each a thin call into the library."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from assistant.settings import load_settings


def cmd_index(args: argparse.Namespace) -> int:
    from indexing.pipeline import index_source

    settings = load_settings()
    report = index_source(settings, Path(args.source), args.domain, dry_run=args.dry_run, progress=not args.quiet)
    print(report.format())
    return 0 if report.ok else 1


def cmd_status(args: argparse.Namespace) -> int:
    from indexing.catalog import summarise_domains

    settings = load_settings()
    print(f"data dir: {settings.data_dir}")
    print(f"graph: {settings.neo4j_uri or 'embedded FalkorDB in ' + str(settings.graph_dir)}")
    rows = summarise_domains(settings.domains_dir)
    if not rows:
        print("no domains indexed yet: run `assistant index --source PATH` or `make run`")
        return 0
    header = f"{'domain':<16} {'version':<9} {'docs':>6} {'chunks':>7} {'index':<6} {'created':<26} health"
    print(header)
    print("-" * len(header))
    for row in rows:
        health = "ok" if row.healthy else f"UNHEALTHY: {row.problem}"
        print(f"{row.domain:<16} {row.version or '-':<9} {row.documents:>6} {row.chunks:>7} "
              f"{row.index_type or '-':<6} {row.created or '-':<26} {health}")
    return 0 if all(row.healthy for row in rows) else 1


COMMANDS = {
    "index": (cmd_index, "index a corpus folder or corpus.jsonl into FAISS (and, later, the graph)"),
    "status": (cmd_status, "list indexed domains with counts, versions and health"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assistant", description="Chat assistant with graph-grounded retrieval")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text)
    index = sub.choices["index"]
    index.add_argument("--source", required=True, help="a folder of .txt/.md/.html/.pdf/.jsonl files, or a corpus.jsonl")
    index.add_argument("--domain", help="domain name (default: each JSONL line's domain, else the folder name)")
    index.add_argument("--dry-run", action="store_true", help="report what would change; write nothing")
    index.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    handler, _ = COMMANDS[args.command]
    try:
        return handler(args)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
