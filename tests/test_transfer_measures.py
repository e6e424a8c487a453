"""What `eval --train-adapters` measures, as pure functions: how many steps a run plans, fact
recall, convergence of a warm start, the combined dataset of a mixed adapter, and the tables."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from adapters import prompts
from adapters.dataset import DatasetReport, write_dataset
from adapters.dataset_files import META_FILE, combine_datasets, dataset_hash, load_split
from adapters.evaluate import closed_book_facts, score_recall
from adapters.example import Example
from adapters.train import planned_steps, stopping_examples
from assistant.evaluation.report import summary_markdown
from assistant.evaluation.transfer import convergence
from assistant.evaluation.transfer_goals import goal_checks
from assistant.settings import load_settings


def _example(number: int, kind: str = "fact", split: str = "train", answer: str = "blood clots") -> Example:
    return Example(f"id{number:03d}", kind, f"g{number}", prompts.chat_messages("medicine", f"q{number}?", answer=answer),
                   answer, "span", split=split)


def test_a_run_plans_its_epochs_unless_told_its_steps(tmp_path):
    params = load_settings(data_dir=tmp_path, _env_file=None, train_batch_size=4, train_epochs=3.0).training_params
    assert planned_steps(params, 807) == 3 * 202  # ceil(807 / 4) steps a pass
    assert planned_steps(params, 807, max_steps=60) == 60  # an explicit count wins
    assert planned_steps(replace(params, train_epochs=0.5), 10) == 2  # half of ceil(10 / 4) = 3, rounded up
    assert planned_steps(replace(params, train_max_steps=100), 807) == 100  # the cap
    assert planned_steps(replace(params, train_epochs=0.01), 1) == 1  # never zero


def test_fact_recall_counts_the_gold_object_in_the_answer():
    examples = [_example(1, answer="blood clots"), _example(2, answer="vitamin K")]
    scores = score_recall(examples, ["Warfarin prevents blood clots [1].", "Insulin."])
    assert scores == {"n": 2, "recalled": 0.5, "exact_match": 0.0, "f1": pytest.approx(0.3333, abs=1e-4)}
    with pytest.raises(ValueError):  # one prediction per question
        score_recall(examples, ["only one"])


def test_closed_book_facts_takes_fact_questions_only_in_id_order():
    examples = [_example(5), _example(2, kind="grounded"), _example(9), _example(1), _example(3, kind="yesno")]
    assert [e.id for e in closed_book_facts(examples, 2)] == ["id001", "id005"]
    assert [e.id for e in closed_book_facts(examples, 10)] == ["id001", "id005", "id009"]


def test_convergence_reports_the_steps_a_warm_start_took_to_the_scratch_best():
    scratch = [[0, 3.0], [20, 2.0], [40, 1.5], [60, 1.6]]
    assert convergence(scratch, [[0, 2.5], [20, 1.4], [40, 1.2]]) == {
        "scratch_best_val_loss": 1.5, "scratch_steps": 40, "warm_steps": 20, "ratio": 0.5, "warm_best_val_loss": 1.2}
    never = convergence(scratch, [[0, 2.5], [20, 1.9]])
    assert never["warm_steps"] is None and never["ratio"] is None and never["warm_best_val_loss"] == 1.9
    assert "note" in convergence([], [[0, 1.0]])


def test_a_combined_dataset_holds_both_domains_examples_split_as_they_were(tmp_path):
    folders = []
    for offset, domain in ((0, "law"), (10, "finance")):
        report = DatasetReport(domain, tmp_path / domain)
        write_dataset(report, [_example(offset + 1), _example(offset + 2), _example(offset + 3, split="validation")])
        folders.append(report.folder)
    data_hash = combine_datasets(tmp_path / "mixed-finance-law", folders)
    mixed = tmp_path / "mixed-finance-law"
    assert sorted(e.id for e in load_split(mixed, "train")) == ["id001", "id002", "id011", "id012"]
    assert sorted(e.id for e in load_split(mixed, "validation")) == ["id003", "id013"]
    assert dataset_hash(mixed) == data_hash and json.loads((mixed / META_FILE).read_text())["counts"] == {
        "train": 4, "validation": 2}
    # a source dataset rebuilt with other examples gives the combination another hash
    write_dataset(DatasetReport("law", folders[0]), [_example(1), _example(4, split="validation")])
    assert combine_datasets(mixed, folders) != data_hash


def _report() -> dict:
    answers = {config: {"by_domain": {"law": {"contains": value, "f1": value / 2}}}
               for config, value in (("base_closed_book", 0.1), ("base_rag", 0.4), ("adapter_rag", 0.6))}
    recall = {"base": {"trained": {"recalled": 0.05}, "held_out": {"recalled": 0.02}},
              "adapter": {"trained": {"recalled": 0.55}, "held_out": {"recalled": 0.07}}}
    training = {"domains": {"law": {"adapter": "law-eval-s606", "steps": 606, "reused": False, "seconds": 1900.0,
                                    "training": {"steps": 606, "best_step": 400, "stopped_early": False,
                                                 "tokens_per_second": 240.5},
                                    "dataset": {"train": 807},
                                    "metrics": {"base": {"val_loss": 2.7}, "adapter": {"val_loss": 1.4},
                                                "fact_recall": recall}}}}
    transfer = {"source": "finance", "target": "law", "rows": [
        {"setting": "law's adapter, from scratch", "n": 3, "exact_match": 0.1, "f1": 0.2, "contains": 0.3}],
        "convergence": {"scratch_best_val_loss": 1.4, "scratch_steps": 400, "warm_steps": 200, "ratio": 0.5,
                        "warm_best_val_loss": 1.3}}
    routing = {"n": 1, "accuracy": 1.0, "abstention_rate": 0.0, "accuracy_when_answered": 1.0, "by_domain": {},
               "confusion": {"columns": [], "labels": [], "rows": []}}
    retrieval = {"k": 1, "counts": {"all": 0, "multi_hop": 0, "two_hop": 0, "three_hop": 0}, "graph_degraded_questions": 0,
                 "methods": {"bm25": {"all": {"recall_at": [0.0], "all_evidence_at": [0.0]},
                                      "multi_hop": {"recall_at": [0.0]}, "two_hop": {"all_evidence_at": [0.0]},
                                      "three_hop": {"all_evidence_at": [0.0]}, "single_document_by_domain": {}}}}
    return {"corpus": "c", "n_questions": 1, "questions_file": "q", "workspace": "w", "reused_index": True,
            "routing": routing, "retrieval": retrieval, "answers": answers, "training": training,
            "transfer": transfer, "latency": {}}


def _with_answer_totals(report: dict) -> dict:
    """The overall answer scores the Answers table prints, beside the per-domain ones."""
    report["answers"] = {config: {**entry, "label": config, "n": 1, "exact_match": 0.0, "f1": 0.0, "contains": 0.0,
                                  "yesno_accuracy": None, "yesno_n": 0, "multi_hop": {"f1": 0.0}}
                         for config, entry in report["answers"].items()}
    return report


def test_the_report_shows_what_the_weights_and_the_retrieval_each_add():
    text = summary_markdown(_with_answer_totals(_report()))
    row = next(line for line in text.splitlines() if line.startswith("| law | 0.100"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    # base closed-book, trained facts base / adapter, held-out base / adapter, contains with retrieval, F1 with it
    assert cells == ["law", "0.100", "0.050", "0.550", "0.020", "0.070", "0.400", "0.600", "0.200", "0.300"]
    # steps/s is read off the run's own record (606 steps in its 1,900 s is blank: the record has no seconds)
    assert "| law | law-eval-s606 | 606 | 400 | no | 1900.0 s | – | 240.500 | 807 | 2.700 | 1.400 |" in text
    assert "the best (1.400) came at step 400; the warm start took 200 steps (0.500x)" in text


def test_early_stopping_follows_held_out_questions_other_than_closed_book_facts(tmp_path):
    params = load_settings(data_dir=tmp_path, _env_file=None).training_params
    validation = [_example(1), _example(2, kind="grounded"), _example(3, kind="yesno"), _example(4)]
    assert [e.id for e in stopping_examples(params, validation)] == ["id002", "id003"]
    assert stopping_examples(replace(params, early_stopping_on_closed_book=True), validation) == validation
    only_facts = [_example(1), _example(4)]
    assert stopping_examples(params, only_facts) == only_facts  # nothing else is held out: all of them


def test_the_goal_checks_say_which_transfer_goals_a_run_meets():
    report = _report()
    report["adapter_vs_base"] = {"base_rag": {"by_domain": {"law": {"n": 36, "contains": 0.40, "f1": 0.20}}},
                                 "adapter_rag": {"by_domain": {"law": {"n": 36, "contains": 0.45, "f1": 0.31}}}}
    checks = {check["goal"].split(":")[0]: check for check in goal_checks(report)}
    assert (checks["contains gold"]["value"], checks["contains gold"]["met"]) == (0.05, False)  # +0.05 < +0.10
    assert (checks["F1"]["value"], checks["F1"]["met"]) == (1.55, True)
    assert checks["closed-book recall of trained facts, adapter"]["met"]  # 0.55 >= 0.5
    assert (checks["warm start"]["value"], checks["warm start"]["met"], checks["warm start"]["domain"]) == (
        0.5, True, "law")
    report["transfer"]["convergence"]["ratio"] = None  # the warm start never reached it
    report["adapter_vs_base"]["base_rag"]["by_domain"]["law"]["f1"] = 0.0
    checks = {check["goal"].split(":")[0]: check for check in goal_checks(report)}
    assert not checks["warm start"]["met"]
    assert (checks["F1"]["value"], checks["F1"]["met"]) == (None, True)  # no ratio to a base at 0, but a gain
    report["goals"] = goal_checks(report)
    text = summary_markdown(_with_answer_totals(report))
    assert "## Transfer goals: 2 of 4 met" in text
    assert "| warm start: steps to the from-scratch best validation loss / the scratch run's | law | – | <= 0.7x | **no** |" in text


def test_a_domain_without_adapter_answers_fails_its_answer_goal():
    report = _report()  # no adapter_vs_base section: nothing was answered with the adapter
    check = next(c for c in goal_checks(report) if c["domain"] == "law")
    assert (check["value"], check["met"]) == (None, False)


def test_the_paired_yes_no_goal_needs_the_gain_and_an_interval_above_zero():
    report = _report()
    report["adapter_vs_base"] = {}
    report["paired"] = {"adapter_rag vs base_rag": {"treated": "adapter_rag", "control": "base_rag", "n": 100,
                                                    "label_ok": {"n": 100, "difference": 0.06, "low": -0.01,
                                                                 "high": 0.13}}}
    check = next(c for c in goal_checks(report) if c["goal"].startswith("yes/no/maybe"))
    assert (check["value"], check["met"]) == (0.06, False)  # the interval reaches below 0
    report["paired"]["adapter_rag vs base_rag"]["label_ok"]["low"] = 0.01
    assert next(c for c in goal_checks(report) if c["goal"].startswith("yes/no/maybe"))["met"]
    report["goals"] = goal_checks(report)
    text = summary_markdown(_with_answer_totals(report))
    assert "| adapter + retrieval minus base model + retrieval | 100 | - | - | +0.060 [+0.010, +0.130] |" in text
