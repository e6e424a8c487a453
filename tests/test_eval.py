"""``assistant eval`` end to end on the demo set (routing and retrieval; answers need minutes of
generation and are left to ``make eval``), in a workspace beside the served demo domains."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from assistant import cli
from assistant.evaluation import metrics
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
    assert set(methods) == {"bm25", "dense", "hybrid", "graph_walk", "full", "answer"}
    assert methods["full"]["all"]["recall_at"][4] >= methods["dense"]["all"]["recall_at"][4]
    assert methods["answer"]["all"]["recall_at"][4] >= methods["dense"]["all"]["recall_at"][4]
    assert methods["graph_walk"]["all"]["recall_at"][4] > 0.5
    budget = served.evidence_per_answer
    for row in report["per_question"]:  # the prompt's one list: each item once, kinds capped, within the budget
        kinds = [item["kind"] for item in row["answer_items"]]
        assert 0 < len(kinds) <= budget and kinds.count("passage") <= served.passages_per_answer
        assert row["recall_at_k"]["answer"] == metrics.evidence_recall(
            {d for item in row["answer_items"][:5] for d in item["documents"]}, row["evidence_doc_ids"])
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


def test_eval_scores_what_the_product_answers_with_citations_and_support(demo_env, embedder, tmp_path, monkeypatch):
    """A small generating run: every configuration reports faithfulness beside EM/F1, under each
    strict_grounding setting, each row lists the numbered evidence the model was given, and the
    answer scored is the one the chat pipeline (what /ask runs) gives for the same question."""
    from assistant.engine import Engine
    from assistant.pipeline import ChatPipeline
    from adapters.prompts import NO_ANSWER

    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(demo_env.settings.data_dir))
    out = tmp_path / "report"
    code = cli.main(["eval", "--corpus", str(DEMO_CORPORA_DIR), "--questions", str(DEMO_QUESTIONS),
                     "--limit", "3", "--max-new-tokens", str(demo_env.settings.max_new_tokens), "--quiet",
                     "--out", str(out)])
    assert code == 0
    report = json.loads((out / REPORT_JSON).read_text())
    wanted = {"exact_match", "f1", "contains", "yesno_accuracy", "citation_rate", "supported_sentence_rate",
              "citation_precision"}
    for config in ("base_closed_book", "base_rag"):
        entry = report["answers"][config]
        assert wanted <= set(entry) and set(entry["by_grounding"]) == {"strict", "lenient"}
        assert all(wanted <= set(scores) for scores in entry["by_grounding"].values())
        assert set(entry["draft"]) == {"citation_rate", "supported_sentence_rate", "citation_precision"}
    assert report["answers"]["base_closed_book"]["citation_rate"] == 0.0  # nothing to cite
    assert report["answers"]["base_rag"]["citation_precision"] in (None, 1.0)  # attribution keeps only supported ones
    assert "### Faithfulness" in (out / REPORT_MD).read_text()
    for row in report["per_question"]:
        numbers = [item["number"] for item in row["evidence"]]
        assert numbers == list(range(1, len(numbers) + 1)) and all(item["text"] for item in row["evidence"])
        answer = row["answers"]["base_rag"]
        assert answer["text"] == (" ".join(s["text"] for s in answer["sentences"]) or NO_ANSWER)
        assert all(set(s["citations"]) <= set(numbers) for s in answer["sentences"])

    row = report["per_question"][0]
    engine = Engine(demo_env.settings, load_registered=False)
    try:
        pipeline = ChatPipeline.create(demo_env.settings, demo_env.graph, embedder=embedder, engine=engine)
        question = next(json.loads(line)["question"] for path in sorted(DEMO_QUESTIONS.glob("*.jsonl"))
                        for line in path.open() if json.loads(line)["id"] == row["id"])
        answer = pipeline.respond(question)
    finally:
        engine.close()
    assert answer.text == row["answers"]["base_rag"]["text"]
    assert [s.as_json() for s in answer.sentences] == [
        {key: s[key] for key in ("text", "citations", "supported", "score", "claim")}
        for s in row["answers"]["base_rag"]["sentences"]]
