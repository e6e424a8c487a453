"""The ``assistant`` command: a table of sub-commands, each a thin call into the library."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from assistant.cli.adapters import cmd_adapters, cmd_dataset, cmd_train
from assistant.cli.chat import cmd_ask, cmd_chat
from assistant.settings import load_settings


def cmd_index(args: argparse.Namespace) -> int:
    from indexing.graph_connection import GraphConnection
    from indexing.graph_store import GraphStore
    from indexing.pipeline import index_source

    settings = load_settings()
    with GraphConnection.open(settings.graph_params) as connection:
        graph = GraphStore(connection, settings.domains_dir)
        graph.ensure_indexes()
        report = index_source(settings.indexing_params, Path(args.source), args.domain, dry_run=args.dry_run,
                              progress=not args.quiet, graph=graph)
    print(report.format())
    return 0 if report.ok else 1


def cmd_graph(args: argparse.Namespace) -> int:
    from indexing.graph_connection import GraphConnection
    from indexing.graph_render import draw_subgraph
    from indexing.graph_store import GraphStore

    settings = load_settings()
    with GraphConnection.open(settings.graph_params) as connection:
        graph = GraphStore(connection, settings.domains_dir)
        links = graph.link_entities(args.domain, args.entity, limit=3)
        if not links:
            print(f"no entity in {args.domain!r} matches {args.entity!r}", file=sys.stderr)
            return 1
        keys = [links[0].key]
        subgraph = graph.subgraph(args.domain, keys, hops=args.hops, limit=args.limit)
    out = draw_subgraph(subgraph, Path(args.out), title=f"{links[0].name} ({args.domain}, {args.hops} hops)", focus=set(keys))
    print(f"{out}: {len(subgraph.nodes)} entities, {len(subgraph.edges)} relations around {links[0].name!r}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from indexing.domain_summary import summarise_domains

    settings = load_settings()
    print(f"data dir: {settings.data_dir}")
    print(f"graph: {settings.neo4j_uri or 'embedded FalkorDB in ' + str(settings.graph_dir)}")
    rows = summarise_domains(settings.domains_dir)
    if not rows:
        print("no domains indexed yet: run `assistant index --source PATH` or `make run`")
        return 0
    header = (f"{'domain':<16} {'version':<9} {'docs':>6} {'chunks':>7} {'entities':>8} {'relations':>9} "
              f"{'index':<6} {'created':<26} health")
    print(header)
    print("-" * len(header))
    for row in rows:
        health = "ok" if row.healthy else f"UNHEALTHY: {row.problem}"
        print(f"{row.domain:<16} {row.version or '-':<9} {row.documents:>6} {row.chunks:>7} {row.entities:>8} "
              f"{row.relations:>9} {row.index_type or '-':<6} {row.created or '-':<26} {health}")
    return 0 if all(row.healthy for row in rows) else 1


def _share(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError("a share between 0 and 1, e.g. 0.8")
    return value


def cmd_eval(args: argparse.Namespace) -> int:
    from assistant.evaluation.report import summary_markdown, write_report
    from assistant.evaluation.runner import EvalOptions, run_evaluation
    from assistant.evaluation.workspace import workspace_settings

    if args.train_share is not None and not args.train_adapters:
        print("error: --train-share splits the questions for --train-adapters; add it, or drop --train-share",
              file=sys.stderr)
        return 2
    settings = load_settings()
    options = EvalOptions(Path(args.corpus), Path(args.questions), k=args.k, limit=args.limit,
                          generate=not args.no_generate, train_adapters=args.train_adapters,
                          train_steps=args.train_steps, use_served_adapters=not args.no_served_adapters,
                          max_new_tokens=args.max_new_tokens, progress=not args.quiet,
                          train_share=args.train_share, split_seed=args.split_seed)
    out = Path(args.out) if args.out else workspace_settings(settings, options.corpus).data_dir / "report"
    report = run_evaluation(settings, options, save=lambda partial: write_report(partial, out, charts=False))
    written = write_report(report, out)
    print(summary_markdown(report))
    print("Written: " + ", ".join(str(path) for path in written))
    return 0


COMMANDS = {
    "index": (cmd_index, "index a corpus folder or corpus.jsonl into FAISS and the knowledge graph"),
    "status": (cmd_status, "list indexed domains with counts, versions and health"),
    "graph": (cmd_graph, "draw an entity's neighbourhood in a domain's knowledge graph to a PNG"),
    "dataset": (cmd_dataset, "build a domain's fine-tuning dataset from its index and graph"),
    "train": (cmd_train, "train (or resume) a domain's QLoRA adapter, evaluate it and register it"),
    "ask": (cmd_ask, "answer one question with evidence from the right domain"),
    "chat": (cmd_chat, "an interactive chat in the terminal"),
    "adapters": (cmd_adapters, "list, show, validate or remove LoRA adapters"),
    "eval": (cmd_eval, "measure routing, retrieval, answers and adapters on a corpus and question set"),
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
    picture = sub.choices["graph"]
    picture.add_argument("--domain", required=True)
    picture.add_argument("--entity", required=True, help="an entity name or alias (fuzzy matched)")
    picture.add_argument("--hops", type=int, choices=(1, 2), default=2)
    picture.add_argument("--limit", type=int, default=40, help="most relations drawn")
    picture.add_argument("--out", default="graph.png")
    dataset = sub.choices["dataset"]
    dataset.add_argument("--domain", required=True)
    dataset.add_argument("--user-file", action="append", default=[],
                         help="a JSONL of {messages: [...]} or {prompt, completion} lines to include (repeatable)")
    dataset.add_argument("--quiet", action="store_true", help="no progress bars")
    train = sub.choices["train"]
    train.add_argument("--domain", required=True)
    train.add_argument("--from-adapter", help="warm-start from this registered adapter (e.g. another domain's)")
    train.add_argument("--max-steps", type=int,
                       help="optimizer steps (default: train_epochs passes over the data, capped by train_max_steps)")
    train.add_argument("--name", help="adapter name (default: <domain>-vN)")
    train.add_argument("--rebuild-dataset", action="store_true", help="build the dataset again first")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    for name in ("ask", "chat"):
        chat = sub.choices[name]
        if name == "ask":
            chat.add_argument("question")
        chat.add_argument("--domain", help="skip routing and use this domain")
        chat.add_argument("--show-evidence", action="store_true", help="list the facts and passages used")
    evaluate = sub.choices["eval"]
    evaluate.add_argument("--corpus", required=True, help="corpus.jsonl, a folder of domain sub-folders, or one domain's folder")
    evaluate.add_argument("--questions", required=True, help="questions.jsonl, or a folder of *.jsonl question files")
    evaluate.add_argument("--k", type=int, default=5, help="retrieval depth for recall@k (default 5)")
    evaluate.add_argument("--limit", type=int, help="evaluate at most N questions, spread over the domains")
    evaluate.add_argument("--out", help="report folder (default: report/ in the corpus's eval workspace)")
    evaluate.add_argument("--no-generate", action="store_true", help="routing and retrieval only; no answers")
    evaluate.add_argument("--train-adapters", action="store_true",
                          help="train an adapter per domain from its corpus, plus the transfer rows")
    evaluate.add_argument("--train-steps", type=int,
                          help="steps per trained adapter (default: train_epochs passes, capped by train_max_steps)")
    evaluate.add_argument("--no-served-adapters", action="store_true",
                          help="do not use the app's adapters for domains of the same name")
    evaluate.add_argument("--max-new-tokens", type=int, default=None,
                          help="answer token ceiling (default: the max_new_tokens setting; answers end at answer_max_sentences)")
    evaluate.add_argument("--train-share", type=_share, default=None,
                          help="with --train-adapters: train each domain's adapter on this share of its questions too "
                               "(labelled evidence-reading examples) and score only the rest, e.g. 0.8")
    evaluate.add_argument("--split-seed", type=int, default=0, help="seed of the --train-share split (default 0)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    adapters = sub.choices["adapters"]
    adapters.add_argument("action", choices=("list", "show", "validate", "remove", "load", "unload", "rollback"))
    adapters.add_argument("name", nargs="?", help="adapter name (show, remove, unload), folder (validate, load), "
                                                  "or domain (unload, rollback)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "adapters" and args.action != "list" and not args.name:
        build_parser().error(f"adapters {args.action} needs a name")
    handler, _ = COMMANDS[args.command]
    with _sigterm_unwinds():
        try:
            return handler(args)
        except BaseException as exc:
            # Stopped raised inside a library's C code can surface as another exception (numpy's
            # tofile turns it into a TypeError): what counts is that SIGTERM arrived.
            if isinstance(exc, Stopped) or SIGTERM_SEEN.is_set():
                print("stopped (SIGTERM); the graph server this command started is stopped with a save",
                      file=sys.stderr)
                return 128 + signal.SIGTERM
            if isinstance(exc, (ValueError, RuntimeError, OSError)):
                print(f"error: {exc}", file=sys.stderr)
                return 2
            raise


class Stopped(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C, so every `with` closes what it opened."""


SIGTERM_SEEN = threading.Event()


@contextmanager
def _sigterm_unwinds():
    """SIGTERM (a `timeout`, a service manager) kills Python without unwinding by default, which
    left the graph server a command started running as an orphan. While a command runs, SIGTERM
    raises Stopped instead, so the connection closes and stops that server with a final save.
    Only the main thread can set signal handlers; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        SIGTERM_SEEN.set()
        raise Stopped()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
