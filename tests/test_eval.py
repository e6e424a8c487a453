"""``assistant eval`` end to end on the demo set (routing and retrieval; answers need minutes of
generation and are left to ``make eval``), in a workspace beside the served demo domains."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from assistant import cli
from assistant.evaluation.report import CHARTS, REPORT_JSON, REPORT_MD
from assistant.settings import DEMO_CORPORA_DIR

DEMO_QUESTIONS = DEMO_CORPORA_DIR.parent / "eval"


def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a hash of its bytes (what 'untouched' means here)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()} if folder.is_dir() else {}


def _graph_counts(env) -> dict:
    return {domain: (env.graph.versions(domain), env.graph.stats(domain)) for domain in env.graph.domains()}


def test_eval_without_generation_reports_routing_and_retrieval_and_touches_nothing_served(demo_env, tmp_path,
                                                                                            monkeypatch, capsys):
    served = demo_env.settings
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(served.data_dir))
    before = {"domains": _tree(served.domains_dir), "adapters": _tree(served.adapters_dir),
              "graph": _graph_counts(demo_env)}
    out = tmp_path / "report"
    code = cli.main(["eval", "--corpus", str(DEMO_CORPORA_DIR), "--questions", str(DEMO_QUESTIONS),
                     "--limit", "10", "--no-generate", "--quiet", "--out", str(out)])
    assert code == 0
    for name in (REPORT_JSON, REPORT_MD, *CHARTS):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    report = json.loads((out / REPORT_JSON).read_text())
    assert report["n_questions"] == 10 and not report["reused_index"]
    assert {row["domain"] for row in report["per_question"]} == {"medicine", "finance", "law"}
    assert report["routing"]["accuracy"] >= 0.8
    methods = report["retrieval"]["methods"]
    assert set(methods) == {"bm25", "dense", "hybrid", "full"}
    assert methods["full"]["all"]["recall_at"][4] >= methods["dense"]["all"]["recall_at"][4]
    assert "answers" not in report
    printed = capsys.readouterr().out
    assert "## Routing" in printed and "## Retrieval" in printed and "recall@5" in printed

    # a second run reuses the workspace's index; nothing served changed
    code = cli.main(["eval", "--corpus", str(DEMO_CORPORA_DIR), "--questions", str(DEMO_QUESTIONS),
                     "--limit", "3", "--no-generate", "--quiet", "--out", str(out)])
    assert code == 0 and json.loads((out / REPORT_JSON).read_text())["reused_index"]
    assert {"domains": _tree(served.domains_dir), "adapters": _tree(served.adapters_dir),
            "graph": _graph_counts(demo_env)} == before


def test_eval_refuses_a_broken_question_file(demo_env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(demo_env.settings.data_dir))
    questions = tmp_path / "questions.jsonl"
    questions.write_text('{"id": "q1", "domain": "law", "question": "Who?"}\n')
    code = cli.main(["eval", "--corpus", str(DEMO_CORPORA_DIR), "--questions", str(questions), "--no-generate"])
    assert code == 2
    assert "questions.jsonl:1: missing answers" in capsys.readouterr().err
