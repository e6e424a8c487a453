"""The ``assistant`` command: a table of sub-commands, each a thin call into the library."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from assistant.settings import load_settings


def cmd_index(args: argparse.Namespace) -> int:
    from indexing.graph_connection import GraphConnection
    from indexing.graph_store import GraphStore
    from indexing.pipeline import index_source

    settings = load_settings()
    with GraphConnection.open(settings) as connection:
        graph = GraphStore(connection, settings.domains_dir)
        graph.ensure_indexes()
        report = index_source(settings, Path(args.source), args.domain, dry_run=args.dry_run,
                              progress=not args.quiet, graph=graph)
    print(report.format())
    return 0 if report.ok else 1


def cmd_graph(args: argparse.Namespace) -> int:
    from indexing.graph_connection import GraphConnection
    from indexing.graph_render import draw_subgraph
    from indexing.graph_store import GraphStore

    settings = load_settings()
    with GraphConnection.open(settings) as connection:
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
    from indexing.catalog import summarise_domains

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


def _metrics_summary(metrics: dict) -> str:
    """"F1 0.10 -> 0.21, EM 0.00 -> 0.10 (base -> adapter)" from a manifest's metrics."""
    base, adapter = metrics.get("base"), metrics.get("adapter")
    if not base or not adapter:
        return "no evaluation"
    return (f"F1 {base['f1']:.2f} -> {adapter['f1']:.2f}, EM {base['exact_match']:.2f} -> {adapter['exact_match']:.2f}, "
            f"val loss {base['val_loss']:.2f} -> {adapter['val_loss']:.2f} (base -> adapter, n={adapter['n']})")


def cmd_adapters(args: argparse.Namespace) -> int:
    from adapters.base_model import resolve_base_model
    from adapters.registry import AdapterInvalid, AdapterRegistry, validate_adapter

    settings = load_settings()
    registry = AdapterRegistry(settings.adapters_dir)
    try:
        if args.action == "list":
            adapters, broken = registry.list(), registry.broken()
            if not adapters:
                print(f"no adapters in {settings.adapters_dir}")
            for info in adapters:
                print(f"{info.name:<24} {info.domain:<12} rank {info.rank:<3} base {info.base_model} "
                      f"({info.base_fingerprint[:12]})  {_metrics_summary(info.metrics)}")
            for bad in broken:  # half-written or damaged folders: never served, and here is why
                print(f"{bad.name:<24} INVALID: {bad.problem}")
        elif args.action == "show":
            info = registry.get(args.name)
            print(json.dumps({**info.__dict__, "path": str(info.path)}, indent=2, default=str))
        elif args.action == "validate":
            info = validate_adapter(Path(args.name), resolve_base_model(settings))
            print(f"valid: {info.domain} adapter, rank {info.rank}, targets {', '.join(info.target_modules)}")
        elif args.action == "remove":
            registry.remove(args.name)
            print(f"removed {args.name}")
        else:
            return _change_serving_adapters(settings, args.action, args.name)
    except AdapterInvalid as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    return 0


def _change_serving_adapters(settings, action: str, target: str) -> int:
    """load / unload / rollback in this process's pool; the choice is saved in
    data/adapters/active.json, which is what the app serves from its next start. (A running
    app is changed through its admin API.)"""
    from assistant.adapter_pool import AdapterLoadError
    from assistant.engine import Engine

    engine = Engine(settings)
    try:
        if action == "load":
            adapter = engine.load_adapter(target)
            print(f"loaded {adapter.name} for {adapter.domain}: validated, smoke-tested, now the active adapter")
        elif action == "unload":
            print(f"unloaded {engine.unload_adapter(target)}; its domain answers with the base model")
        else:
            adapter = engine.rollback_adapter(target)
            print(f"rolled {target} back to {adapter.name}")
        print(json.dumps(engine.pool.active(), indent=2))
    except AdapterLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.close()
    return 0


def _build_dataset(settings, domain: str, user_files: list[str], progress: bool):
    from adapters.dataset import build_dataset
    from indexing.graph_connection import GraphConnection, GraphError
    from indexing.graph_store import GraphStore

    try:
        connection = GraphConnection.open(settings)
    except GraphError as exc:  # the dataset is still built from passages; the report says so
        print(f"warning: graph unavailable ({exc})", file=sys.stderr)
        return build_dataset(settings, domain, None, [Path(p) for p in user_files], progress)
    with connection:
        return build_dataset(settings, domain, GraphStore(connection, settings.domains_dir),
                             [Path(p) for p in user_files], progress)


def cmd_dataset(args: argparse.Namespace) -> int:
    report = _build_dataset(load_settings(), args.domain, args.user_file, not args.quiet)
    print(report.format())
    return 0 if report.total("train") else 1


def cmd_train(args: argparse.Namespace) -> int:
    from adapters.dataset import META_FILE
    from adapters.train import train_adapter

    settings = load_settings()
    if args.rebuild_dataset or not (settings.datasets_dir / args.domain / META_FILE).is_file():
        print(_build_dataset(settings, args.domain, [], not args.quiet).format())
    result = train_adapter(settings, args.domain, from_adapter=args.from_adapter, max_steps=args.max_steps,
                           name=args.name, progress=not args.quiet)
    print(f"adapter {result.adapter} in {result.path}: {result.steps} steps "
          f"({'stopped early, ' if result.stopped_early else ''}{result.tokens_per_second:.0f} tokens/s, "
          f"{result.seconds:.0f} s), loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}, "
          f"best validation loss {result.best_val_loss}")
    for label in ("base", "adapter"):
        m = result.metrics.get(label)
        if m:
            yes_no = "-" if m["yesno_accuracy"] is None else f"{m['yesno_accuracy']:.3f}"
            print(f"  {label:<8} EM {m['exact_match']:.3f}  F1 {m['f1']:.3f}  yes/no acc {yes_no}  "
                  f"val loss {m['val_loss']:.3f}  perplexity {m['perplexity']:.2f}  (n={m['n']})")
    return 0


def _open_pipeline(settings):
    """The chat pipeline over the local data dir; without a graph (said on stderr) if it is down."""
    from assistant.pipeline import ChatPipeline
    from indexing.graph_connection import GraphConnection, GraphError
    from indexing.graph_store import GraphStore

    try:
        connection = GraphConnection.open(settings)
        graph = GraphStore(connection, settings.domains_dir)
    except GraphError as exc:
        print(f"warning: knowledge graph unavailable, answering from passages only ({exc})", file=sys.stderr)
        connection, graph = None, None
    try:
        return ChatPipeline.create(settings, graph), connection
    except BaseException:  # loading the model failed or was stopped: stop the graph server started above
        if connection:
            connection.close()
        raise


def _print_answer(answer, show_evidence: bool) -> None:
    adapter = answer.adapter or "base model"
    where = answer.domain or "all domains (router abstained)"
    print(f"\n[{where}, confidence {answer.confidence:.2f}, {adapter}; "
          + ", ".join(f"{k} {v:.2f}s" for k, v in answer.timings.items()) + "]")
    for note in answer.notes:
        print(f"note: {note}")
    if answer.sentences:  # what was streamed, after attribution: the answer as the chat shows it
        print(f"answer: {answer.text}")
    if show_evidence:
        for index, sentence in enumerate(answer.sentences, 1):
            cites = ", ".join(f"[{n}]" for n in sentence.citations) or "nothing"
            state = "supported" if sentence.supported else "UNSUPPORTED"
            print(f"  sentence {index}: {state} (support {sentence.score:.2f}), cites {cites}")
        for fact in answer.facts:
            print(f"  [{answer.evidence_number(fact)}] fact: {fact.text}  ({', '.join(fact.titles) or '-'}; "
                  f"chunk {fact.fact.chunk_ids[0] if fact.fact.chunk_ids else '-'})")
        for passage in answer.passages:
            print(f"  [{answer.evidence_number(passage)}] {passage.title} ({passage.chunk_id}): {passage.text[:160]}...")


def cmd_ask(args: argparse.Namespace) -> int:
    from assistant.pipeline import Answer

    pipeline, connection = _open_pipeline(load_settings())
    try:
        answer = None
        for item in pipeline.stream(args.question, domain=args.domain):
            if isinstance(item, Answer):
                answer = item
            else:
                print(item, end="", flush=True)
        if answer.error and not answer.text:
            print(answer.text)
        _print_answer(answer, args.show_evidence)
        return 1 if answer.error else 0
    finally:
        pipeline.engine.close()
        if connection:
            connection.close()


def cmd_chat(args: argparse.Namespace) -> int:
    from assistant.pipeline import Answer

    pipeline, connection = _open_pipeline(load_settings())
    history: list[dict] = []
    print("Ask a question (empty line or Ctrl-D to quit).")
    try:
        while True:
            try:
                question = input("\nyou> ").strip()
            except EOFError:
                break
            if not question:
                break
            print("assistant> ", end="", flush=True)
            for item in pipeline.stream(question, history, domain=args.domain):
                if isinstance(item, Answer):
                    _print_answer(item, args.show_evidence)
                    history += [{"role": "user", "content": question}, {"role": "assistant", "content": item.text}]
                else:
                    print(item, end="", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        pipeline.engine.close()
        if connection:
            connection.close()
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from assistant.evaluation.report import summary_markdown, write_report
    from assistant.evaluation.runner import EvalOptions, run_evaluation
    from assistant.evaluation.workspace import workspace_settings

    settings = load_settings()
    options = EvalOptions(Path(args.corpus), Path(args.questions), k=args.k, limit=args.limit,
                          generate=not args.no_generate, train_adapters=args.train_adapters,
                          train_steps=args.train_steps, use_served_adapters=not args.no_served_adapters,
                          max_new_tokens=args.max_new_tokens, progress=not args.quiet)
    report = run_evaluation(settings, options)
    out = Path(args.out) if args.out else workspace_settings(settings, options.corpus).data_dir / "report"
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
    train.add_argument("--max-steps", type=int, help="optimizer steps (default: the train_max_steps setting)")
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
    evaluate.add_argument("--train-steps", type=int, help="steps per trained adapter (default: train_max_steps)")
    evaluate.add_argument("--no-served-adapters", action="store_true",
                          help="do not use the app's adapters for domains of the same name")
    evaluate.add_argument("--max-new-tokens", type=int, default=None,
                          help="answer token ceiling (default: the max_new_tokens setting; answers end at answer_max_sentences)")
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
