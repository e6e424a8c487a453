"""The evaluation report's answer tables and the side-by-side summary of several runs
(`make eval-dev`), on small hand-written report sections: no model, no index."""

from __future__ import annotations

import json

import pytest

from assistant.evaluation.report import REPORT_JSON, _answers, main, side_by_side


def _spread(counts: dict) -> dict:
    total = sum(counts.values())
    largest = max(counts, key=counts.get)
    return {"counts": counts, "shares": {label: round(n / total, 4) for label, n in counts.items()},
            "largest": largest, "largest_share": round(counts[largest] / total, 4)}


def _entry(contains: float, f1: float, *, labels: dict | None = None, gold: dict | None = None,
           by_answer_type: dict | None = None) -> dict:
    """One configuration's scores as score_config writes them (the keys the tables read)."""
    entry = {"n": 4, "exact_match": 0.25, "f1": f1, "contains": contains, "yesno_n": 0, "yesno_accuracy": None,
             "citation_rate": 0.5, "supported_sentence_rate": 0.75, "contradiction_rate": 0.125, "contradictions": 1,
             "citation_precision": 1.0, "multi_hop": {"f1": None}, "by_domain": {"biomedical": {"f1": f1}},
             "opened_with": {"facts": 0.0, "quote": 0.25, "table": 0.0, "label": 0.5},
             "draft": {"citation_rate": 0.0, "supported_sentence_rate": 0.5, "contradiction_rate": 0.25,
                       "contradictions": 2, "citation_precision": 0.0}}
    if labels:
        entry.update(yesno_n=4, yesno_accuracy=0.5)
        entry["label_distribution"] = {"n": 4, "gold": _spread(gold), "predicted": _spread(labels),
                                       "largest_predicted_share": _spread(labels)["largest_share"]}
    if by_answer_type:
        entry["by_answer_type"] = by_answer_type
    return entry


GOLD = {"yes": 2, "no": 1, "maybe": 1}
PREDICTED = {"yes": 3, "no": 0, "maybe": 0, "none": 1}


def test_the_answer_tables_show_labels_answer_types_contradictions_and_openings():
    types = {"arithmetic": {"n": 2, "contains": 0.5, "f1": 0.4, "exact_match": 0.0},
             "span": {"n": 2, "contains": 1.0, "f1": 0.8, "exact_match": 0.5}}
    section = {"base_rag": _entry(0.5, 0.3, labels=PREDICTED, gold=GOLD, by_answer_type=types)}
    text = _answers(section, {}, [])
    assert "| gold | 4 | 0.500 (2) | 0.250 (1) | 0.250 (1) |  | yes 0.500 |" in text
    assert "| base model + retrieval | 4 | 0.750 (3) | 0.000 (0) | 0.000 (0) | 0.250 (1) | yes 0.750 |" in text
    assert "| base model + retrieval | arithmetic | 2 | 0.500 | 0.400 | 0.000 |" in text
    assert "| base model + retrieval | as served | 0.500 | 0.750 | 0.125 | 1 | 1.000 | 0.500 | 0.300 |" in text
    assert "| base model + retrieval | draft, before attribution | 0.000 | 0.500 | 0.250 | 2 | 0.000 | – | – |" in text
    assert "| base model + retrieval | 0.000 | 0.250 | 0.000 | 0.500 |" in text  # facts, quote, table, label


def test_an_old_answers_section_still_prints():
    """Reports written before labels, answer types, contradictions and table/label leads."""
    old = _entry(0.5, 0.3)
    for key in ("contradiction_rate", "contradictions"):
        old.pop(key)
        old["draft"].pop(key)
    old["opened_with"] = {"facts": 1.0, "quote": 0.0}
    text = _answers({"base_rag": old}, {}, [])
    assert "Yes/no/maybe labels" not in text and "By answer type" not in text
    assert "| base model + retrieval | as served | 0.500 | 0.750 | – | – | 1.000 | 0.500 | 0.300 |" in text
    assert "| base model + retrieval | 1.000 | 0.000 | – | – |" in text


def _write_run(folder, answers: dict):
    folder.mkdir()
    (folder / REPORT_JSON).write_text(json.dumps({"corpus": folder.name, "answers": answers}))
    return folder


def test_the_summary_puts_the_dev_sets_side_by_side(tmp_path, capsys):
    pubmedqa = _write_run(tmp_path / "dev-pubmedqa", {"base_rag": _entry(0.5, 0.3, labels=PREDICTED, gold=GOLD)})
    tatqa = _write_run(tmp_path / "dev-tatqa", {"base_rag": _entry(0.25, 0.2)})
    text = side_by_side([pubmedqa, tatqa])
    assert ("| dev-pubmedqa | base model + retrieval | 4 | 0.500 | 0.300 | 0.500 | 0.500 | 0.750 | 0.125 | "
            "yes 0.750 / no 0.000 / maybe 0.000 / none 0.250 |") in text
    assert "| dev-pubmedqa | gold | 4 |  |  |  |  |  |  | yes 0.500 / no 0.250 / maybe 0.250 |" in text
    assert "| dev-tatqa | base model + retrieval | 4 | 0.250 | 0.200 | – | 0.500 | 0.750 | 0.125 | – |" in text
    assert "dev-tatqa | gold" not in text  # no label questions there
    main(["--summary", str(pubmedqa), str(tatqa)])
    assert capsys.readouterr().out.strip() == text


def test_the_summary_names_a_folder_without_a_report(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--summary", str(tmp_path / "missing")])
    assert "no report.json in" in capsys.readouterr().err
