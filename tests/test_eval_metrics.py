"""The evaluation's scoring functions against hand-computed cases."""

from __future__ import annotations

import json

import pytest

from adapters.answer_metrics import contains_answer
from assistant.evaluation import metrics
from assistant.evaluation.questions import (EvalQuestion, QuestionsError, load_questions, split_for_training,
                                            spread_over_domains, write_questions)


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
    assert shown == {"cited": 1.0, "claims": 2, "supported": 1, "contradictions": 0, "citations": 1,
                     "supported_citations": 1}
    draft = metrics.sentence_counts(sentences, draft=True)
    assert draft == {"cited": 0.0, "claims": 2, "supported": 1, "contradictions": 0, "citations": 2,
                     "supported_citations": 0}
    uncited = metrics.sentence_counts([{"claim": True, "supported": False, "citations": [], "draft_citations": [],
                                        "supporting": []}])
    scores = metrics.faithfulness([shown, uncited])
    assert scores == {"citation_rate": 0.5, "supported_sentence_rate": 0.3333, "contradiction_rate": 0.0,
                      "contradictions": 0, "citation_precision": 1.0}
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
    assert base["draft"] == {"citation_rate": 0.0, "supported_sentence_rate": 0.5, "contradiction_rate": 0.0,
                             "contradictions": 0, "citation_precision": 0.0}
    assert base["by_grounding"]["strict"]["contains"] == 0.5
    assert base["opened_with"] == {"facts": 1.0, "quote": 0.0, "table": 0.0, "label": 0.0, "bridge": 0.0}
    assert "by_answer_type" not in base and "label_distribution" not in base  # no types, no label questions
    assert base["by_domain"]["finance"]["f1"] == 0.4 and base["multi_hop"]["n"] == 1
    adapter = score_config(runs, ADAPTER_RAG)
    assert adapter["n"] == 1 and adapter["exact_match"] == 1.0
    paired = {config: score_config([r for r in runs if ADAPTER_RAG in r.answers], config)
              for config in (BASE_RAG, ADAPTER_RAG)}
    text = _paired(paired)
    assert "same questions" in text and "| base model + retrieval | 1 | 0.000 | 0.200 | 1.000 |" in text


def _sentence(claim=True, supported=True, contradiction=None) -> dict:
    record = {"claim": claim, "supported": supported, "citations": [], "draft_citations": [], "supporting": []}
    if contradiction is not None:  # None: a record written before contradictions were detected
        record["contradiction"] = contradiction
    return record


def test_contradicting_claim_sentences_are_counted_and_old_records_still_load():
    answer = [_sentence(contradiction=True), _sentence(supported=False, contradiction=False),
              _sentence(claim=False, contradiction=True)]  # not a claim: outside the rate's claims, not counted
    assert metrics.sentence_counts(answer)["contradictions"] == 1
    old = [_sentence(), _sentence()]
    assert metrics.sentence_counts(old)["contradictions"] == 0
    scores = metrics.faithfulness([metrics.sentence_counts(answer), metrics.sentence_counts(old)])
    assert scores["contradictions"] == 1 and scores["contradiction_rate"] == 0.25  # 1 of 4 claim sentences
    assert scores["supported_sentence_rate"] == 0.75
    old_counts = {"cited": 0.0, "claims": 2, "supported": 2, "citations": 0, "supported_citations": 0}
    assert metrics.faithfulness([old_counts])["contradiction_rate"] == 0.0  # counts from before: no key
    assert metrics.faithfulness([])["contradiction_rate"] is None


def test_label_distribution_by_hand():
    spread = metrics.label_distribution(["yes", "yes", "no", "maybe"], ["yes", "yes", "yes", None])
    assert spread["n"] == 4
    assert spread["gold"]["counts"] == {"yes": 2, "no": 1, "maybe": 1}
    assert spread["gold"]["shares"] == {"yes": 0.5, "no": 0.25, "maybe": 0.25}
    assert spread["predicted"]["counts"] == {"yes": 3, "no": 0, "maybe": 0, "none": 1}
    assert spread["predicted"]["shares"] == {"yes": 0.75, "no": 0.0, "maybe": 0.0, "none": 0.25}
    assert (spread["predicted"]["largest"], spread["largest_predicted_share"]) == ("yes", 0.75)
    assert (spread["gold"]["largest"], spread["gold"]["largest_share"]) == ("yes", 0.5)
    assert metrics.label_distribution([], [])["largest_predicted_share"] is None


def _answered(qid: str, gold: tuple[str, ...], text: str, answer_type: str | None = None, contains: float = 0.0,
              f1: float = 0.0, em: float = 0.0, lead: str | None = None):
    """A question answered by the base model with retrieval, already scored."""
    from assistant.evaluation.questions import EvalQuestion
    from assistant.evaluation.run_records import BASE_RAG, QuestionRun

    counts = {"cited": 0.0, "claims": 1, "supported": 1, "contradictions": 0, "citations": 0, "supported_citations": 0}
    gold_label = metrics.gold_label(gold)
    scored = {"text": text, "em": em, "f1": f1, "contains": contains, "counts": counts,
              "label_ok": None if gold_label is None else float(metrics.predicted_label(text) == gold_label)}
    run = QuestionRun(EvalQuestion(qid, "biomedical", "q?", gold, ("a.md",), answer_type), "biomedical", 1.0, [])
    run.answers[BASE_RAG] = {**scored, "adapter": None, "seconds": 0.1, "lead": lead, "draft_counts": counts,
                             "grounding": {"strict": scored, "lenient": scored}}
    return run


def test_score_config_reports_the_label_distribution_of_label_questions_only():
    from assistant.evaluation.run_records import BASE_RAG
    from assistant.evaluation.scored_answers import score_config

    runs = [_answered("1", ("yes",), "Yes [1]. It does.", lead="label"),
            _answered("2", ("no",), "Yes, it does.", lead="quote"),
            _answered("3", ("maybe",), "The evidence does not say."),
            _answered("4", ("Yes",), "No."),
            _answered("5", ("1913",), "Yes, in 1913.", lead="facts")]  # not a label question: left out
    section = score_config(runs, BASE_RAG)
    spread = section["label_distribution"]
    assert spread["n"] == 4 and section["yesno_n"] == 4 and section["yesno_accuracy"] == 0.25
    assert spread["gold"]["counts"] == {"yes": 2, "no": 1, "maybe": 1}
    assert spread["predicted"]["counts"] == {"yes": 2, "no": 1, "maybe": 0, "none": 1}
    assert spread["largest_predicted_share"] == 0.5 and spread["predicted"]["largest"] == "yes"
    assert section["opened_with"] == {"facts": 0.2, "quote": 0.2, "table": 0.0, "label": 0.2, "bridge": 0.0}


def test_score_config_groups_by_answer_type_when_questions_have_one():
    from assistant.evaluation.run_records import BASE_RAG
    from assistant.evaluation.scored_answers import NO_ANSWER_TYPE, score_config

    runs = [_answered("1", ("52.48",), "52.48", "arithmetic", contains=1.0, f1=1.0, em=1.0),
            _answered("2", ("7",), "It rose.", "arithmetic"),
            _answered("3", ("Fibe TV",), "Fibe TV and Alt TV", "span", contains=1.0, f1=0.6),
            _answered("4", ("x",), "x", None, contains=1.0, f1=1.0, em=1.0)]
    by_type = score_config(runs, BASE_RAG)["by_answer_type"]
    assert list(by_type) == ["arithmetic", "span", NO_ANSWER_TYPE]
    assert (by_type["arithmetic"]["n"], by_type["arithmetic"]["contains"], by_type["arithmetic"]["f1"],
            by_type["arithmetic"]["exact_match"]) == (2, 0.5, 0.5, 0.5)
    assert (by_type["span"]["contains"], by_type["span"]["f1"], by_type["span"]["exact_match"]) == (1.0, 0.6, 0.0)
    assert by_type[NO_ANSWER_TYPE]["n"] == 1


def test_questions_keep_their_answer_type(tmp_path):
    path = tmp_path / "questions.jsonl"
    rows = [{"id": "1", "domain": "finance", "question": "q?", "answers": ["3"], "answer_type": "count"},
            {"id": "2", "domain": "finance", "question": "q?", "answers": ["3"]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert [q.answer_type for q in load_questions(path)] == ["count", None]


def test_a_paired_bootstrap_interval_brackets_the_mean_difference():
    same = metrics.paired_bootstrap([1, 0, 1, 1], [0, 0, 1, 0])
    assert same["n"] == 4 and same["difference"] == 0.5
    assert 0.0 <= same["low"] <= 0.5 <= same["high"] <= 1.0
    constant = metrics.paired_bootstrap([1.0] * 50, [0.5] * 50)  # every question differs by exactly 0.5
    assert constant["low"] == constant["high"] == constant["difference"] == 0.5
    assert metrics.paired_bootstrap([1, 0], [1, 0], seed=3) == metrics.paired_bootstrap([1, 0], [1, 0], seed=3)
    assert metrics.paired_bootstrap([], [])["difference"] is None
    with pytest.raises(ValueError):
        metrics.paired_bootstrap([1, 0], [1])


def _questions(domain: str, count: int) -> list[EvalQuestion]:
    return [EvalQuestion(f"{domain}-{i:03d}", domain, f"question {i}?", ("yes",), (f"doc{i}",)) for i in range(count)]


def test_a_training_split_is_seeded_per_domain_disjoint_and_blind_to_file_order(tmp_path):
    questions = _questions("biomedical", 500) + _questions("finance", 10)
    train, held_out = split_for_training(questions, 0.8, seed=0)
    assert (len(train), len(held_out)) == (408, 102)
    assert sum(q.domain == "finance" for q in train) == 8
    assert not {q.id for q in train} & {q.id for q in held_out}
    assert split_for_training(list(reversed(questions)), 0.8, seed=0)[1] == list(reversed(held_out))
    assert {q.id for q in split_for_training(questions, 0.8, seed=1)[1]} != {q.id for q in held_out}
    write_questions(train, tmp_path / "train.jsonl")
    assert load_questions(tmp_path / "train.jsonl") == train  # a questions file, and a --user-file of labelled ones
