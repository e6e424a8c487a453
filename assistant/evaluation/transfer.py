"""``--train-adapters``: an adapter per domain trained from that domain's corpus (its index and
graph, never the questions), and the transfer rows.

Transfer: with the first two domains A and B (alphabetical), B's questions are answered with
retrieval by the base model, by A's adapter (does an adapter from another domain help or
hurt?), by B's adapter trained from scratch, and by B's adapter warm-started from A's weights
with the same number of steps (does what A's adapter learnt, e.g. citing evidence, carry over?).

Adapters are named ``<domain>-eval-s<steps>`` (``<B>-from-<A>-s<steps>``) in the workspace and
reused by later runs while their dataset is unchanged.
"""

from __future__ import annotations

import json
import time
from typing import Sequence

from adapters.dataset import build_dataset
from adapters.dataset_files import dataset_hash
from adapters.train import train_adapter
from assistant.adapter_pool import AdapterPool
from assistant.answer_writer import AnswerWriter
from assistant.evaluation import metrics
from assistant.evaluation.run_records import BASE_RAG, EvalOptions, QuestionRun
from assistant.evaluation.scored_answers import answer_many
from assistant.evaluation.workspace import Workspace


def train_domain_adapters(workspace: Workspace, pool: AdapterPool, domains: Sequence[str], options: EvalOptions) -> dict:
    settings = workspace.settings
    steps = options.train_steps or settings.train_max_steps
    section: dict = {"steps": steps, "adapters": {}, "domains": {}}
    for domain in domains:
        if domain not in workspace.domains:
            continue
        report = build_dataset(settings.dataset_params, domain, workspace.graph, progress=options.progress)
        name = f"{domain}-eval-s{steps}"
        section["domains"][domain] = _train_or_reuse(workspace, pool, domain, name, steps, None, options)
        section["domains"][domain]["dataset"] = {"train": report.total("train"), "validation": report.total("validation")}
        section["adapters"][domain] = name
    return section


def _train_or_reuse(workspace: Workspace, pool: AdapterPool, domain: str, name: str, steps: int,
                    warm_from: str | None, options: EvalOptions) -> dict:
    settings = workspace.settings
    data_hash = dataset_hash(settings.datasets_dir / domain)
    if pool.registry.path(name).is_dir():
        info = pool.registry.get(name)
        manifest = _manifest(info.path)
        if manifest.get("data_hash") == data_hash:
            return {"adapter": name, "reused": True, "seconds": 0.0, "metrics": _brief(manifest.get("metrics", {}))}
        pool.registry.remove(name)  # trained on an older dataset
    started = time.perf_counter()
    result = train_adapter(settings.training_params, domain, from_adapter=warm_from, max_steps=steps, name=name,
                           progress=options.progress)
    return {"adapter": name, "reused": False, "seconds": round(time.perf_counter() - started, 1),
            "warm_start": warm_from, "metrics": _brief(result.metrics)}


def transfer_section(workspace: Workspace, writer: AnswerWriter, runs: Sequence[QuestionRun], training: dict,
                     options: EvalOptions) -> dict:
    engine = writer.engine
    trained = training["adapters"]
    if len(trained) < 2:
        return {"note": "transfer needs two domains with adapters"}
    source, target = sorted(trained)[:2]
    warm_name = f"{target}-from-{source}-s{training['steps']}"
    warm = _train_or_reuse(workspace, engine.pool, target, warm_name, training["steps"], trained[source], options)
    target_runs = [run for run in runs if run.question.domain == target]
    rows = [{"setting": f"base model + retrieval on {target}", **_config_scores(target_runs, BASE_RAG)}]
    for label, adapter in ((f"{source}'s adapter on {target}", trained[source]),
                           (f"{target}'s adapter, from scratch", trained[target]),
                           (f"{target}'s adapter, warm-started from {source}'s", warm_name)):
        engine.load_adapter(adapter)
        answers = list(answer_many(writer, [(run, adapter, True) for run in target_runs], options.max_new_tokens))
        rows.append({"setting": label, "adapter": adapter, "n": len(answers),
                     "exact_match": metrics.mean(a["em"] for a in answers),
                     "f1": metrics.mean(a["f1"] for a in answers),
                     "contains": metrics.mean(a["contains"] for a in answers)})
    engine.load_adapter(trained[target])  # the domain's own adapter serves it again
    return {"source": source, "target": target, "warm_start_training": warm, "rows": rows}


def _config_scores(runs: Sequence[QuestionRun], config: str) -> dict:
    answers = [run.answers[config] for run in runs if config in run.answers]
    return {"n": len(answers), "exact_match": metrics.mean(a["em"] for a in answers),
            "f1": metrics.mean(a["f1"] for a in answers), "contains": metrics.mean(a["contains"] for a in answers)}


def _manifest(path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def _brief(scores: dict) -> dict:
    """Base vs adapter on the dataset's held-out questions (adapters/evaluate.py), in short."""
    return {label: {key: scores[label].get(key) for key in ("exact_match", "f1", "val_loss")}
            for label in ("base", "adapter") if isinstance(scores.get(label), dict)}
