"""``--train-adapters``: an adapter per domain trained from that domain's corpus (its index and
graph, with evidence-reading examples from the eval's own retrieval), plus, with ``--train-share``,
the training share of the questions as labelled examples (never the questions it scores), and
the transfer rows.

Each domain's adapter trains for ``train_epochs`` passes over its dataset (or ``--train-steps``).
Its training record (steps, seconds, tokens/s, the validation losses) and its closed-book recall
of trained and held-out facts (adapters/evaluate.py) go into the report beside the answer scores.

Transfer: with the first two domains A and B (alphabetical), B's questions are answered with
retrieval by the base model, by A's adapter (does an adapter from another domain help or
hurt?), by B's adapter trained from scratch, by B's adapter warm-started from A's weights with
the same number of steps (does what A's adapter learnt, e.g. citing evidence, carry over?), and
by one "mixed" adapter trained on A's and B's data together (A's questions too, against A's own
adapter). Convergence: the steps the warm start took to reach the from-scratch run's best
validation loss, against the steps the from-scratch run took.

Adapters are named ``<domain>-eval-s<steps>``, ``<B>-from-<A>-s<steps>`` and
``mixed-<A>-<B>-s<steps>`` in the workspace and reused by later runs while their dataset is
unchanged.
"""

from __future__ import annotations

import json
import time
from typing import Sequence

from adapters.dataset import build_dataset
from adapters.dataset_files import META_FILE, combine_datasets, dataset_hash
from adapters.train import planned_steps, train_adapter
from assistant.answering.answer_writer import AnswerWriter
from assistant.answering.training_evidence import evidence_reader
from assistant.evaluation import metrics
from assistant.evaluation.run_records import BASE_RAG, EvalOptions, QuestionRun
from assistant.evaluation.scored_answers import answer_many
from assistant.evaluation.workspace import Workspace
from assistant.serving.adapter_pool import AdapterPool

MIXED = "mixed"


def train_domain_adapters(workspace: Workspace, pool: AdapterPool, domains: Sequence[str], options: EvalOptions) -> dict:
    settings = workspace.settings
    section: dict = {"adapters": {}, "domains": {}}
    for domain in domains:
        if domain not in workspace.domains:
            continue
        user_files = [options.train_questions] if options.train_questions else []
        report = build_dataset(settings.dataset_params, domain, workspace.graph, user_files, progress=options.progress,
                               reader=evidence_reader(settings, domain, workspace.graph))
        steps = planned_steps(settings.training_params, report.total("train"), options.train_steps)
        name = f"{domain}-eval-s{steps}"
        entry = _train_or_reuse(workspace, pool, domain, name, steps, None, options)
        entry["dataset"] = {"train": report.total("train"), "validation": report.total("validation")}
        section["domains"][domain] = entry
        section["adapters"][domain] = name
    return section


def _train_or_reuse(workspace: Workspace, pool: AdapterPool, domain: str, name: str, steps: int,
                    warm_from: str | None, options: EvalOptions, dataset: str | None = None) -> dict:
    settings = workspace.settings
    folder = settings.datasets_dir / (dataset or domain)
    data_hash = dataset_hash(folder)
    if pool.registry.path(name).is_dir():
        manifest = _manifest(pool.registry.get(name).path)
        if manifest.get("data_hash") == data_hash:
            return _entry(name, steps, warm_from, manifest, reused=True, seconds=0.0)
        pool.registry.remove(name)  # trained on an older dataset
    started = time.perf_counter()
    result = train_adapter(settings.training_params, domain, from_adapter=warm_from, max_steps=steps, name=name,
                           dataset_dir=folder, progress=options.progress)
    return _entry(name, steps, warm_from, _manifest(result.path), reused=False,
                  seconds=round(time.perf_counter() - started, 1))


def _entry(name: str, steps: int, warm_from: str | None, manifest: dict, reused: bool, seconds: float) -> dict:
    training = manifest.get("training", {})
    return {"adapter": name, "steps": steps, "reused": reused, "seconds": seconds, "warm_start": warm_from,
            "training": {key: training.get(key) for key in ("steps", "seconds", "tokens_per_second", "val_losses",
                                                            "best_val_loss", "best_step", "stopped_early")},
            "metrics": _brief(manifest.get("metrics", {}))}


def transfer_section(workspace: Workspace, writer: AnswerWriter, runs: Sequence[QuestionRun], training: dict,
                     options: EvalOptions) -> dict:
    engine = writer.engine
    trained = training["adapters"]
    if len(trained) < 2:
        return {"note": "transfer needs two domains with adapters"}
    source, target = sorted(trained)[:2]
    steps = training["domains"][target]["steps"]
    warm_name = f"{target}-from-{source}-s{steps}"
    warm = _train_or_reuse(workspace, engine.pool, target, warm_name, steps, trained[source], options)
    mixed = _train_mixed(workspace, engine.pool, source, target, options)
    by_domain = {domain: [run for run in runs if run.question.domain == domain] for domain in (source, target)}
    rows = [{"setting": f"base model + retrieval on {target}", **_config_scores(by_domain[target], BASE_RAG)}]
    for label, adapter, domain in (
            (f"{source}'s adapter on {target}", trained[source], target),
            (f"{target}'s adapter, from scratch", trained[target], target),
            (f"{target}'s adapter, warm-started from {source}'s", warm_name, target),
            (f"mixed adapter ({source} + {target}) on {target}", mixed["adapter"], target),
            (f"base model + retrieval on {source}", None, source),
            (f"{source}'s adapter on {source}", trained[source], source),
            (f"mixed adapter ({source} + {target}) on {source}", mixed["adapter"], source)):
        rows.append({"setting": label, "adapter": adapter,
                     **(_answer_scores(writer, by_domain[domain], adapter, options) if adapter
                        else _config_scores(by_domain[domain], BASE_RAG))})
    for domain in (source, target):  # each domain's own adapter serves it again
        engine.load_adapter(trained[domain])
    scratch = training["domains"][target]
    return {"source": source, "target": target, "warm_start_training": warm, "mixed_training": mixed,
            "convergence": convergence(scratch["training"].get("val_losses") or [],
                                       warm["training"].get("val_losses") or []),
            "rows": rows}


def _train_mixed(workspace: Workspace, pool: AdapterPool, source: str, target: str, options: EvalOptions) -> dict:
    """One adapter on both domains' data: every train and validation example of each."""
    settings = workspace.settings
    folder_name = f"{MIXED}-{source}-{target}"
    combine_datasets(settings.datasets_dir / folder_name,
                     [settings.datasets_dir / source, settings.datasets_dir / target])
    examples = json.loads((settings.datasets_dir / folder_name / META_FILE).read_text())["counts"]["train"]
    steps = planned_steps(settings.training_params, examples, 2 * options.train_steps if options.train_steps else None)
    return _train_or_reuse(workspace, pool, MIXED, f"{folder_name}-s{steps}", steps, None, options, folder_name)


def _answer_scores(writer: AnswerWriter, runs: Sequence[QuestionRun], adapter: str, options: EvalOptions) -> dict:
    writer.engine.load_adapter(adapter)
    return _scores(list(answer_many(writer, [(run, adapter, True) for run in runs], options.max_new_tokens)))


def convergence(scratch: Sequence[Sequence[float]], warm: Sequence[Sequence[float]]) -> dict:
    """Steps to the from-scratch run's best validation loss: the scratch run's own (the step of
    its best) and the warm start's (its first validation at or below that loss; None: never)."""
    if not scratch:
        return {"note": "no validation losses recorded"}
    best_step, best = min(((int(step), loss) for step, loss in scratch), key=lambda pair: (pair[1], pair[0]))
    reached = next((int(step) for step, loss in warm if loss <= best), None)
    ratio = None if reached is None or best_step == 0 else round(reached / best_step, 3)
    return {"scratch_best_val_loss": best, "scratch_steps": best_step, "warm_steps": reached, "ratio": ratio,
            "warm_best_val_loss": min((loss for _, loss in warm), default=None)}


def _config_scores(runs: Sequence[QuestionRun], config: str) -> dict:
    return _scores([run.answers[config] for run in runs if config in run.answers])


def _scores(answers: Sequence[dict]) -> dict:
    return {"n": len(answers), "exact_match": metrics.mean(a["em"] for a in answers),
            "f1": metrics.mean(a["f1"] for a in answers), "contains": metrics.mean(a["contains"] for a in answers)}


def _manifest(path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def _brief(scores: dict) -> dict:
    """Base vs adapter on the dataset's held-out questions (adapters/evaluate.py), in short, and
    closed-book recall of trained and held-out facts."""
    brief: dict = {label: {key: scores[label].get(key) for key in ("exact_match", "f1", "val_loss")}
                   for label in ("base", "adapter") if isinstance(scores.get(label), dict)}
    if isinstance(scores.get("fact_recall"), dict):
        brief["fact_recall"] = scores["fact_recall"]
    return brief

