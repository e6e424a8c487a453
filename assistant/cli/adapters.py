"""The ``assistant adapters``, ``dataset`` and ``train`` commands: list, show, validate, activate
or remove LoRA adapters, build a domain's fine-tuning dataset, train and register an adapter."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from assistant.settings import load_settings


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
            info = validate_adapter(Path(args.name), resolve_base_model(settings.base_model, settings.models_dir))
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
    from assistant.serving.adapter_pool import AdapterLoadError
    from assistant.serving.engine import Engine

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
    """The domain's dataset, with evidence-reading examples from the chat's own retrieval."""
    from adapters.dataset import build_dataset
    from indexing.graph_connection import GraphConnection, GraphError
    from indexing.graph_store import GraphStore

    files = [Path(p) for p in user_files]
    try:
        connection = GraphConnection.open(settings.graph_params)
    except GraphError as exc:  # the dataset is still built from passages; the report says so
        print(f"warning: graph unavailable ({exc})", file=sys.stderr)
        return build_dataset(settings.dataset_params, domain, None, files, progress,
                             reader=_reader(settings, domain, None))
    with connection:
        graph = GraphStore(connection, settings.domains_dir)
        return build_dataset(settings.dataset_params, domain, graph, files, progress,
                             reader=_reader(settings, domain, graph))


def _reader(settings, domain: str, graph):
    """The chat's retrieval in ``domain``, or None (no reading examples) when it has no index."""
    from assistant.answering.training_evidence import evidence_reader
    from indexing.vector_store import IndexUnavailable, VectorStore

    try:
        VectorStore(settings.domains_dir).get(domain)
    except (IndexUnavailable, OSError, ValueError):
        return None  # build_dataset says what is wrong with the index
    return evidence_reader(settings, domain, graph)


def cmd_dataset(args: argparse.Namespace) -> int:
    report = _build_dataset(load_settings(), args.domain, args.user_file, not args.quiet)
    print(report.format())
    return 0 if report.total("train") else 1


def cmd_train(args: argparse.Namespace) -> int:
    from adapters.dataset_files import META_FILE
    from adapters.train import train_adapter

    settings = load_settings()
    if args.rebuild_dataset or not (settings.datasets_dir / args.domain / META_FILE).is_file():
        print(_build_dataset(settings, args.domain, [], not args.quiet).format())
    result = train_adapter(settings.training_params, args.domain, from_adapter=args.from_adapter, max_steps=args.max_steps,
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
    for label, sets in result.metrics.get("fact_recall", {}).items():
        recalled = "  ".join(f"{name.replace('_', '-')} facts {r['recalled']:.3f} (F1 {r['f1']:.3f}, n={r['n']})"
                             for name, r in sets.items())
        print(f"  {label:<8} closed-book recall: {recalled}")
    return 0
