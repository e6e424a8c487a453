"""``assistant eval`` end to end on the demo set (routing and retrieval; answers need minutes of
generation and are left to ``make eval``), in a workspace beside the served demo domains."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from assistant.cli import main as cli
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
    assert set(methods) == {"bm25", "dense", "hybrid", "graph_walk", "fused", "full", "answer"}
    assert methods["full"]["all"]["recall_at"][4] >= methods["dense"]["all"]["recall_at"][4]
    assert methods["answer"]["all"]["recall_at"][4] >= methods["dense"]["all"]["recall_at"][4]
    assert methods["graph_walk"]["all"]["recall_at"][4] > 0.5
    # The walk ranks: the prompt's list keeps what the walk alone finds, overall and in each domain.
    for domain, walk_recall in methods["graph_walk"]["by_domain"].items():
        assert methods["answer"]["by_domain"][domain] >= walk_recall - 0.01, domain
    assert methods["answer"]["all"]["recall_at"][1] >= methods["graph_walk"]["all"]["recall_at"][1]
    budget = served.evidence_per_answer
    for row in report["per_question"]:  # the prompt's one list: each item once, kinds capped, within the budget
        kinds = [item["kind"] for item in row["answer_items"]]
        assert 0 < len(kinds) <= budget and kinds.count("passage") <= served.passages_per_answer
        assert row["recall_at_k"]["answer"] == metrics.evidence_recall(
            {d for item in row["answer_items"][:5] for d in item["documents"]}, row["evidence_doc_ids"])
    assert "answers" not in report
    assert report["complete"] and report["stages_done"] == ["routing and retrieval"]
    printed = capsys.readouterr().out
    assert "Partial report" not in printed
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


def test_a_run_that_fails_half_way_leaves_the_stages_it_finished(demo_env, tmp_path, monkeypatch, capsys):
    """Generation dies after routing and retrieval: the command says why and exits 2, and the
    report on disk holds the finished stage, marked partial (hours of a --train-adapters run
    are not lost to one failure late in it)."""
    from assistant.evaluation import answering

    def generation_dies(*args, **kwargs):
        raise RuntimeError("the engine stopped")

    monkeypatch.setattr(answering, "answer_many", generation_dies)
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(demo_env.settings.data_dir))
    out = tmp_path / "report"
    code = cli.main(["eval", "--corpus", str(DEMO_CORPORA_DIR), "--questions", str(DEMO_QUESTIONS),
                     "--limit", "3", "--quiet", "--out", str(out)])
    assert code == 2 and "the engine stopped" in capsys.readouterr().err
    report = json.loads((out / REPORT_JSON).read_text())
    assert not report["complete"] and report["stages_done"] == ["routing and retrieval"]
    assert report["n_questions"] == 3 and len(report["per_question"]) == 3 and "answers" not in report
    assert report["routing"]["n"] == 3
    assert "**Partial report**" in (out / REPORT_MD).read_text()


def test_eval_scores_what_the_product_answers_with_citations_and_support(demo_env, embedder, tmp_path, monkeypatch):
    """A small generating run: every configuration reports faithfulness beside EM/F1, under each
    strict_grounding setting, each row lists the numbered evidence the model was given, and the
    answer scored is the one the chat pipeline (what /ask runs) gives for the same question."""
    from adapters.prompts import NO_ANSWER
    from assistant.serving.engine import Engine
    from assistant.answering.pipeline import ChatPipeline

    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(demo_env.settings.data_dir))
    out = tmp_path / "report"
    code = cli.main(["eval", "--corpus", str(DEMO_CORPORA_DIR), "--questions", str(DEMO_QUESTIONS),
                     "--limit", "3", "--max-new-tokens", str(demo_env.settings.max_new_tokens), "--quiet",
                     "--out", str(out)])
    assert code == 0
    report = json.loads((out / REPORT_JSON).read_text())
    assert report["complete"] and report["stages_done"] == ["routing and retrieval", "answers"]
    wanted = {"exact_match", "f1", "contains", "yesno_accuracy", "citation_rate", "supported_sentence_rate",
              "contradiction_rate", "contradictions", "citation_precision"}
    for config in ("base_closed_book", "base_rag"):
        entry = report["answers"][config]
        assert wanted <= set(entry) and set(entry["by_grounding"]) == {"strict", "lenient"}
        assert all(wanted <= set(scores) for scores in entry["by_grounding"].values())
        assert set(entry["draft"]) == {"citation_rate", "supported_sentence_rate", "contradiction_rate",
                                       "contradictions", "citation_precision"}
        assert set(entry["opened_with"]) == {"facts", "quote", "table", "label", "bridge"}
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


@pytest.mark.slow  # five short training runs and their answers: minutes of CPU, in `make test-all`
@pytest.mark.timeout(1500)  # about 10 minutes on a busy 2-core machine, with evidence-reading datasets to build
def test_eval_with_trained_adapters_reports_fact_recall_transfer_and_the_mixed_adapter(demo_env, tmp_path, monkeypatch):
    """`--train-adapters` on the demo set with 2 steps per adapter: each domain's adapter with its
    training cost and closed-book recall of trained and held-out facts; the transfer rows with a
    warm start and a mixed adapter, and the convergence line. The numbers are not judged here
    (2 steps teach nothing); that each is measured, on the right questions, is."""
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(demo_env.settings.data_dir))
    for name, value in (("EVAL_MAX_EXAMPLES", "2"), ("EVAL_MAX_NEW_TOKENS", "4"), ("EVAL_EVERY_STEPS", "1"),
                        ("LORA_TARGET_MODULES", '["q_proj", "v_proj"]'), ("DATASET_READING_QUESTIONS", "10")):
        monkeypatch.setenv(f"ASSISTANT_{name}", value)
    out = tmp_path / "report"
    code = cli.main(["eval", "--corpus", str(DEMO_CORPORA_DIR), "--questions", str(DEMO_QUESTIONS), "--limit", "6",
                     "--train-adapters", "--train-steps", "2", "--train-share", "0.8", "--no-served-adapters",
                     "--max-new-tokens", "8", "--quiet", "--out", str(out)])
    assert code == 0
    report = json.loads((out / REPORT_JSON).read_text())
    # the split: 80% of each domain's 45 questions trained the adapters, only held-out ones were scored
    split = report["split"]
    assert (split["train"], split["held_out"], split["seed"]) == (108, 27, 0)
    trained_on = {json.loads(line)["id"] for line in Path(split["train_file"]).read_text().splitlines()}
    assert len(trained_on) == 108 and not trained_on & {row["id"] for row in report["per_question"]}
    dataset = Path(report["workspace"]) / "datasets" / "law" / "train.jsonl"
    reading = [json.loads(line) for line in dataset.read_text().splitlines() if '"kind": "reading"' in line]
    assert any(row["group"].startswith("question:") for row in reading)  # the labelled questions, with evidence
    assert all({"adapter_rag", "adapter_closed_book"} <= set(row["answers"]) for row in report["per_question"])
    assert report["paired"]["adapter_rag vs base_rag"]["n"] == 6
    assert report["stages_done"] == ["routing and retrieval", "adapters trained", "answers", "transfer"]
    domains = report["training"]["domains"]
    assert set(domains) == {"finance", "law", "medicine"}
    for domain, entry in domains.items():
        assert entry["adapter"] == f"{domain}-eval-s2" and entry["training"]["steps"] == 2
        assert [step for step, _ in entry["training"]["val_losses"]] == [0, 1, 2]
        assert entry["training"]["tokens_per_second"] > 0
        for label in ("base", "adapter"):
            assert {s: r["n"] for s, r in entry["metrics"]["fact_recall"][label].items()} == {"trained": 2, "held_out": 2}
    transfer = report["transfer"]
    assert (transfer["source"], transfer["target"]) == ("finance", "law")
    assert transfer["warm_start_training"]["adapter"] == "law-from-finance-s2"
    assert transfer["mixed_training"]["adapter"] == "mixed-finance-law-s4"  # twice the steps for twice the data
    assert transfer["convergence"]["scratch_steps"] in (0, 1, 2)
    settings = [row["setting"] for row in transfer["rows"]]
    assert "mixed adapter (finance + law) on finance" in settings and "law's adapter, warm-started from finance's" in settings
    law_questions = sum(1 for row in report["per_question"] if row["domain"] == "law")
    assert all(row["n"] == law_questions for row in transfer["rows"] if row["setting"].endswith("on law")
               or row["setting"].startswith("law's"))
    text = (out / REPORT_MD).read_text()
    assert "### What the weights and the retrieval each add" in text and "Convergence on law's validation loss" in text
