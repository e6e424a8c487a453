"""The evaluation's scoring functions against hand-computed cases."""

from __future__ import annotations

import json

import pytest

from adapters.answer_metrics import contains_answer
from assistant.evaluation import metrics
from assistant.evaluation.questions import QuestionsError, load_questions, spread_over_domains


def test_answers_are_normalised_before_matching():
    assert metrics.best_match("The Federal Reserve [2].", ["federal reserve"]) == (1.0, 1.0)
    assert metrics.best_match("In 1913.", ["December 23, 1913", "1913"])[0] == 0.0  # "in" is not an article
    exact, f1 = metrics.best_match("In 1913.", ["December 23, 1913", "1913"])
    assert f1 == pytest.approx(2 * 0.5 * 1.0 / 1.5)  # best gold "1913": precision 1/2, recall 1/1
    assert metrics.best_match("an aspirin", ["aspirin"]) == (1.0, 1.0)
    assert metrics.best_match("warfarin", []) == (0.0, 0.0)
    assert metrics.best_match("", ["x"]) == (0.0, 0.0)


def test_token_f1_by_hand():
    # prediction: vitamin k reverses warfarin (4 tokens); gold: vitamin k (2): overlap 2
    _, f1 = metrics.best_match("Vitamin K reverses warfarin", ["vitamin K"])
    assert f1 == pytest.approx(2 * (2 / 4) * (2 / 2) / ((2 / 4) + 1))


def test_yes_no_maybe_labels():
    assert metrics.gold_label(["Yes"]) == "yes"
    assert metrics.gold_label(["no", "No."]) == "no"
    assert metrics.gold_label(["maybe"]) == "maybe"
    assert metrics.gold_label(["yes", "no"]) is None
    assert metrics.gold_label(["1913"]) is None
    assert metrics.predicted_label("Yes [1]. It does.") == "yes"
    assert metrics.predicted_label("It is not known, maybe.") == "maybe"
    assert metrics.predicted_label("Aspirin.") is None


def test_recall_at_k_with_several_evidence_documents():
    ranked = [("a.md",), ("a.md",), ("c.md",), ("b.md",), ("d.md",)]
    assert metrics.documents_at_k(ranked, 2) == {"a.md"}
    assert metrics.evidence_recall(metrics.documents_at_k(ranked, 2), ["a.md", "b.md"]) == 0.5
    assert metrics.all_evidence(metrics.documents_at_k(ranked, 2), ["a.md", "b.md"]) == 0.0
    assert metrics.evidence_recall(metrics.documents_at_k(ranked, 4), ["a.md", "b.md"]) == 1.0
    assert metrics.all_evidence(metrics.documents_at_k(ranked, 4), ["a.md", "b.md"]) == 1.0
    assert metrics.evidence_recall(metrics.documents_at_k(ranked, 5), ["a.md", "b.md", "z.md"]) == pytest.approx(2 / 3)
    # a fact with two source documents counts both
    assert metrics.documents_at_k([("x.md", "b.md")], 1) == {"x.md", "b.md"}
    assert metrics.evidence_recall(set(), []) == 1.0  # nothing to find


def test_confusion_matrix_and_routing_scores():
    gold = ["law", "law", "finance", "medicine", "medicine"]
    routed = ["law", "finance", "finance", None, "medicine"]
    scores = metrics.routing_scores(gold, routed)
    assert scores["accuracy"] == 0.6
    assert scores["abstention_rate"] == 0.2
    assert scores["accuracy_when_answered"] == 0.75
    confusion = scores["confusion"]
    assert confusion["labels"] == ["finance", "law", "medicine"]
    assert confusion["columns"] == ["finance", "law", "medicine", metrics.ABSTAIN]
    assert confusion["rows"] == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]]


def test_percentiles():
    stats = metrics.percentiles([1.0, 2.0, 3.0, 4.0])
    assert stats["p50"] == 2.5 and stats["mean"] == 2.5 and stats["n"] == 4
    assert stats["p95"] == pytest.approx(3.85)
    assert metrics.percentiles([])["p50"] is None


def test_questions_are_validated_and_spread(tmp_path):
    rows = [{"id": f"{d}-{i}", "domain": d, "question": f"q {i}?", "answers": ["x"], "evidence_doc_ids": ["a.md"]}
            for d in ("law", "finance") for i in range(3)]
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    questions = load_questions(path)
    assert [q.id for q in spread_over_domains(questions, 3)] == ["finance-0", "law-0", "finance-1"]
    assert spread_over_domains(questions, None) == questions
    path.write_text(json.dumps(rows[0]) + "\n{not json\n")
    with pytest.raises(QuestionsError, match="questions.jsonl:2"):
        load_questions(path)
    path.write_text(json.dumps({**rows[0], "answers": "x"}) + "\n")
    with pytest.raises(QuestionsError, match="must be lists"):
        load_questions(path)
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[0]) + "\n")
    with pytest.raises(QuestionsError, match="repeat"):
        load_questions(path)


def test_contains_answer_matches_whole_words_only():
    assert contains_answer("Marbury v. Madison was decided in 1803 [2].", ["1803"]) == 1.0
    assert contains_answer("It was decided in 18031.", ["1803"]) == 0.0
    assert contains_answer("The answer is James Madison.", ["James Madison", "Madison"]) == 1.0
    assert contains_answer("Madisonian", ["Madison"]) == 0.0
    assert contains_answer("anything", ["the"]) == 0.0  # a gold answer that normalises to nothing


def test_faithfulness_counts_citations_and_support_per_sentence():
    sentences = [{"claim": True, "supported": True, "citations": [2], "draft_citations": [5], "supporting": [2, 4]},
                 {"claim": True, "supported": False, "citations": [], "draft_citations": [1], "supporting": []},
                 {"claim": False, "supported": True, "citations": [], "draft_citations": [], "supporting": []}]
    shown = metrics.sentence_counts(sentences)
    assert shown == {"cited": 1.0, "claims": 2, "supported": 1, "citations": 1, "supported_citations": 1}
    draft = metrics.sentence_counts(sentences, draft=True)
    assert draft == {"cited": 0.0, "claims": 2, "supported": 1, "citations": 2, "supported_citations": 0}
    uncited = metrics.sentence_counts([{"claim": True, "supported": False, "citations": [], "draft_citations": [],
                                        "supporting": []}])
    scores = metrics.faithfulness([shown, uncited])
    assert scores == {"citation_rate": 0.5, "supported_sentence_rate": 0.3333, "citation_precision": 1.0}
    assert metrics.faithfulness([])["supported_sentence_rate"] is None


def test_answer_scores_per_configuration_and_the_paired_adapter_table():
    from assistant.evaluation.questions import EvalQuestion
    from assistant.evaluation.report import _paired
    from assistant.evaluation.run_records import ADAPTER_RAG, BASE_RAG, QuestionRun
    from assistant.evaluation.scored_answers import score_config

    def run(qid, domain, answers, evidence=("a.md",)):
        question = EvalQuestion(qid, domain, "q?", ("1803",), tuple(evidence))
        result = QuestionRun(question, domain, 1.0, [domain])
        for config, (em, f1, contains) in answers.items():
            scored = {"text": "", "em": em, "f1": f1, "contains": contains, "label_ok": None,
                      "counts": {"cited": 1.0, "claims": 2, "supported": 1, "citations": 1, "supported_citations": 1}}
            result.answers[config] = {**scored, "adapter": None, "seconds": 0.1, "lead": "facts",
                                      "draft_counts": {"cited": 0.0, "claims": 2, "supported": 1, "citations": 2,
                                                       "supported_citations": 0},
                                      "grounding": {"strict": scored, "lenient": scored}}
        return result

    runs = [run("1", "law", {BASE_RAG: (0.0, 0.2, 1.0), ADAPTER_RAG: (1.0, 1.0, 1.0)}, ("a.md", "b.md")),
            run("2", "finance", {BASE_RAG: (0.0, 0.4, 0.0)})]
    base = score_config(runs, BASE_RAG)
    assert base["n"] == 2 and base["f1"] == 0.3 and base["contains"] == 0.5
    assert base["citation_rate"] == 1.0 and base["supported_sentence_rate"] == 0.5 and base["citation_precision"] == 1.0
    assert base["draft"] == {"citation_rate": 0.0, "supported_sentence_rate": 0.5, "citation_precision": 0.0}
    assert base["by_grounding"]["strict"]["contains"] == 0.5 and base["opened_with"] == {"facts": 1.0, "quote": 0.0}
    assert base["by_domain"]["finance"]["f1"] == 0.4 and base["multi_hop"]["n"] == 1
    adapter = score_config(runs, ADAPTER_RAG)
    assert adapter["n"] == 1 and adapter["exact_match"] == 1.0
    paired = {config: score_config([r for r in runs if ADAPTER_RAG in r.answers], config)
              for config in (BASE_RAG, ADAPTER_RAG)}
    text = _paired(paired)
    assert "same questions" in text and "| base model + retrieval | 1 | 0.000 | 0.200 | 1.000 |" in text
