"""Stage 2 of an evaluation: answers written by the product's own answering path (the
AnswerWriter that the chat and ``/ask`` use: graph facts first, the sentence limit, attribution)
on its serving engine, and scored.

Four configurations per question (run_records.CONFIG_LABELS): the base model and, where the
routed domain has one, its adapter, each with and without retrieval, compared pair by pair on
the same questions with a bootstrap interval (scored_answers.paired_section). The adapter is
the routed domain's: the app's served adapter for a domain of the same name (copied into the
workspace, never changed in place) or one trained by ``--train-adapters``.
Each answer is scored as served (the ``strict_grounding`` setting) and, from the same
generation, with the other setting, so one run measures both.
"""

from __future__ import annotations

import json
import logging
from typing import Callable, Sequence

from tqdm import tqdm

from adapters.registry import AdapterInvalid, AdapterRegistry
from assistant.answering.answer_writer import AnswerWriter
from assistant.evaluation.run_records import (ADAPTER_CLOSED, ADAPTER_RAG, BASE_RAG, CLOSED_BOOK, CONFIG_LABELS,
                                              EvalOptions, QuestionRun)
from assistant.evaluation.scored_answers import answer_many, paired_section, score_config
from assistant.evaluation.transfer import train_domain_adapters, transfer_section
from assistant.evaluation.workspace import Workspace
from assistant.serving.adapter_pool import AdapterLoadError, AdapterPool
from assistant.serving.engine import Engine
from assistant.settings import Settings

log = logging.getLogger(__name__)


Checkpoint = Callable[[str, dict], None]  # (the stage just done, the report's sections so far)


def answer_all(workspace: Workspace, runs: Sequence[QuestionRun], options: EvalOptions, app: Settings,
               encode, checkpoint: Checkpoint) -> None:
    """``encode``: the retrieval's embedder (attribution compares sentences with it);
    ``checkpoint`` is called after training, after the answers and after the transfer rows."""
    settings = workspace.settings
    engine = Engine(settings, load_registered=False)
    try:
        _answer_all(AnswerWriter(settings, engine, encode), workspace, runs, options, app, checkpoint)
    finally:
        engine.close()


def _answer_all(writer: AnswerWriter, workspace: Workspace, runs: Sequence[QuestionRun], options: EvalOptions,
                app: Settings, checkpoint: Checkpoint) -> None:
    engine = writer.engine
    pool = engine.pool
    domains = sorted({run.question.domain for run in runs})
    section: dict = {"adapters": {}, "adapter_notes": []}
    if options.use_served_adapters:
        section["adapters"].update(copy_served_adapters(app, workspace, pool, domains, section["adapter_notes"]))
    if options.train_adapters:
        section["training"] = train_domain_adapters(workspace, pool, domains, options)
        section["adapters"].update(section["training"]["adapters"])
        checkpoint("adapters trained", section)
    for name in section["adapters"].values():
        engine.load_adapter(name)
    work = []
    for run in runs:
        work += [(CLOSED_BOOK, run, None, False), (BASE_RAG, run, None, True)]
        if adapter := pool.adapter_for(run.routed):
            work += [(ADAPTER_RAG, run, adapter, True), (ADAPTER_CLOSED, run, adapter, False)]
    answers = answer_many(writer, [(run, adapter, grounded) for _, run, adapter, grounded in work],
                          options.max_new_tokens)
    for (config, run, _, _), answer in zip(work, tqdm(answers, total=len(work), desc="answer", unit="answer",
                                                      disable=not options.progress)):
        run.answers[config] = answer
    section["answers"] = {config: score_config(runs, config) for config in CONFIG_LABELS}
    paired = [run for run in runs if ADAPTER_RAG in run.answers]  # the adapter's questions only
    section["adapter_vs_base"] = {config: score_config(paired, config) for config in (BASE_RAG, ADAPTER_RAG)}
    section["paired"] = paired_section(runs)
    checkpoint("answers", section)
    if options.train_adapters:
        section["transfer"] = transfer_section(workspace, writer, runs, section["training"], options)
        checkpoint("transfer", section)


def copy_served_adapters(app: Settings, workspace: Workspace, pool: AdapterPool, domains: list[str],
                         notes: list[str]) -> dict[str, str]:
    """The app's active adapter of each same-named domain, copied into the workspace registry
    (the app's files are only read). Returns domain -> adapter name."""
    served = AdapterRegistry(app.adapters_dir)
    try:
        active = json.loads((app.adapters_dir / "active.json").read_text()).get("active", {})
    except (OSError, ValueError):
        active = {}
    chosen: dict[str, str] = {}
    for domain in domains:
        name = active.get(domain) or _newest(served, domain, pool)
        if not name:
            continue
        try:
            if not pool.registry.path(name).is_dir():
                pool.registry.install(served.path(name), name, pool.base)
            chosen[domain] = name
        except (AdapterInvalid, AdapterLoadError, OSError) as exc:
            notes.append(f"served adapter {name} not used for {domain}: {exc}")
    return chosen


def _newest(registry: AdapterRegistry, domain: str, pool: AdapterPool) -> str | None:
    candidates = [info for info in registry.list()
                  if info.domain == domain and info.base_fingerprint == pool.base.fingerprint]
    return max(candidates, key=lambda info: info.created or "").name if candidates else None
