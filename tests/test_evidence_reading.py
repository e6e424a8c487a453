"""Evidence-reading examples (adapters/evidence_reading.py): the product's prompt for a question,
the gold among its distractors or taken out, and a target that quotes the evidence, then answers.

Retrieval is a plain function here (the builder's input is whatever the app's retrieval returns,
and these tests check what the builder does with it); tests/test_dataset.py builds them from the
real retrieval over the demo corpus."""

from __future__ import annotations

import hashlib
import json

from adapters import prompts
from adapters.evidence_reading import (EvidenceReader, FoundEvidence, LabelledQuestion, reading_example,
                                       reading_examples)
from adapters.user_examples import read_user_examples
from indexing.vector_store import ChunkRow

WARFARIN = ChunkRow("warfarin#1", "warfarin", "Warfarin",
                    "Warfarin is an anticoagulant taken by mouth. Vitamin K reverses the effect of warfarin.")
INSULIN = ChunkRow("insulin#1", "insulin", "Insulin", "Insulin is a peptide hormone made in the pancreas.")
ASPIRIN = ChunkRow("aspirin#1", "aspirin", "Aspirin", "Aspirin inhibits platelet aggregation.")
TRIAL = ChunkRow("trial#2", "trial", "PubMed abstract 1",
                 "METHODS: Forty patients were randomised. RESULTS: Mortality was significantly lower with the drug "
                 "(p < 0.01).")
ROWS = [WARFARIN, INSULIN, ASPIRIN, TRIAL]


def _words(text: str) -> int:
    return len(text.split())


def _reader(passages, facts=(), budget: int = 400, no_gold_percent: int = 0, label_reason=None) -> EvidenceReader:
    return EvidenceReader(lambda question: FoundEvidence(list(facts), list(passages)), _words, budget,
                          no_gold_percent, label_reason)


def _by_doc(rows=ROWS) -> dict[str, list[ChunkRow]]:
    chunks: dict[str, list[ChunkRow]] = {}
    for row in rows:
        chunks.setdefault(row.doc_id, []).append(row)
    return chunks


def _question(text: str, answer: str, doc: str, qid: str = "q") -> LabelledQuestion:
    return LabelledQuestion(qid, text, (answer,), (doc,))


def test_the_prompt_is_the_products_and_the_target_quotes_the_gold_with_its_number():
    question = _question("What reverses warfarin?", "Vitamin K", "warfarin")
    example = reading_example("medicine", question, _reader([INSULIN, WARFARIN, ASPIRIN]), _by_doc())
    assert example is not None and example.kind == "reading"
    evidence = prompts.number_evidence([], [(row.title, row.text) for row in (INSULIN, WARFARIN, ASPIRIN)])
    assert example.messages[:2] == prompts.chat_messages("medicine", question.question, evidence)
    # the gold passage is [2]; the quote is its sentence holding the answer, then the short answer
    assert example.messages[-1]["content"] == "Vitamin K reverses the effect of warfarin [2]. Answer: Vitamin K [2]."
    assert example.answer == "Vitamin K" and example.evidence == ["warfarin#1"]


def test_an_answer_no_evidence_sentence_states_is_not_taught():
    computed = _question("By how much did the dose change?", "12.5", "warfarin")  # a value worked out, not quoted
    assert reading_example("medicine", computed, _reader([INSULIN, WARFARIN]), _by_doc()) is None


def test_a_yes_no_question_opens_with_its_gold_label_and_the_apps_reason():
    question = _question("Does the drug lower mortality?", "yes", "trial")
    chosen = []

    def reason(asked, label, items):
        chosen.append((asked, label, [item.number for item in items]))
        return "Mortality was significantly lower with the drug (p < 0.01).", items[0].number

    example = reading_example("medicine", question, _reader([INSULIN, TRIAL], label_reason=reason), _by_doc())
    assert chosen == [("Does the drug lower mortality?", "Yes", [2])]  # only the gold items are offered
    assert example.messages[-1]["content"] == "Yes. Mortality was significantly lower with the drug (p < 0.01) [2]."
    assert example.answer_type == "yesno"


def test_without_the_gold_the_target_says_the_evidence_does_not_answer():
    question = _question("What reverses warfarin?", "Vitamin K", "warfarin")
    example = reading_example("medicine", question, _reader([WARFARIN, INSULIN, ASPIRIN], no_gold_percent=100),
                              _by_doc())
    assert example is not None
    assert "Warfarin is an anticoagulant" not in example.messages[1]["content"]  # every gold item taken out
    assert "[1] Insulin:" in example.messages[1]["content"]
    assert example.messages[-1]["content"] == prompts.NO_ANSWER == example.answer
    # nothing but the gold was retrieved: no example rather than an empty prompt
    assert reading_example("medicine", question, _reader([WARFARIN], no_gold_percent=100), _by_doc()) is None


def test_a_gold_document_retrieval_missed_takes_the_last_passages_place():
    question = _question("What reverses warfarin?", "Vitamin K", "warfarin")
    example = reading_example("medicine", question, _reader([INSULIN, ASPIRIN]), _by_doc())
    content = example.messages[1]["content"]
    assert "[1] Insulin:" in content and "[2] Warfarin:" in content and "Aspirin" not in content
    assert example.messages[-1]["content"].startswith("Vitamin K reverses the effect of warfarin [2].")


def test_a_gold_passage_beyond_the_budget_is_moved_inside_it():
    question = _question("What reverses warfarin?", "Vitamin K", "warfarin")
    fixed = _words(prompts.system_message("medicine")) + _words(f"Facts: Passages: Question: {question.question}") + 15
    # room for the first two passages, not the third; and the gold passage is longer than the second
    reader = _reader([INSULIN, ASPIRIN, WARFARIN], budget=fixed + 30)
    example = reading_example("medicine", question, reader, _by_doc())
    content = example.messages[1]["content"]
    assert "Warfarin:" in content and "Aspirin" not in content and "Insulin" not in content
    assert "Answer: Vitamin K" in example.messages[-1]["content"]


def test_the_share_without_gold_is_fixed_by_the_question_not_by_chance():
    questions = [_question(f"What reverses warfarin in case {i}?", "Vitamin K", "warfarin", f"q{i}") for i in range(200)]
    reader = _reader([WARFARIN, INSULIN, ASPIRIN], no_gold_percent=20)
    first, skipped = reading_examples("medicine", questions, reader, ROWS, progress=False)
    again, _ = reading_examples("medicine", questions, reader, ROWS, progress=False)
    assert skipped == 0 and [e.messages for e in first] == [e.messages for e in again]
    without = sum(e.answer == prompts.NO_ANSWER for e in first)
    assert 20 <= without <= 60  # about a fifth of 200
    expected = sum(int.from_bytes(hashlib.sha256(f"{q.group}|no-gold".encode()).digest()[:8], "big") % 100 < 20
                   for q in questions)
    assert without == expected


def test_labelled_questions_in_a_user_file_are_read_and_bad_ones_reported(tmp_path):
    path = tmp_path / "labelled.jsonl"
    path.write_text("\n".join([
        json.dumps({"id": "a", "question": "Does it work?", "answers": ["yes"], "evidence_doc_ids": ["trial"]}),
        json.dumps({"question": "What reverses warfarin?", "answers": ["Vitamin K"]}),
        json.dumps({"question": "No answers?", "answers": []}),
        json.dumps({"question": "Bad documents", "answers": ["x"], "evidence_doc_ids": "trial"}),
        json.dumps({"prompt": "What is INR?", "completion": "A ratio."}),
        json.dumps({"question": "What is a bond?", "answers": ["a loan"], "domain": "finance"}),
        json.dumps({"question": "What is INR?", "answers": ["a ratio"], "domain": "Medicine"}),
    ]) + "\n")
    read = read_user_examples("medicine", path)
    assert [(q.id, q.question, q.answers, q.evidence_doc_ids, q.label) for q in read.questions] == [
        ("a", "Does it work?", ("yes",), ("trial",), "Yes"),
        ("labelled.jsonl:2", "What reverses warfarin?", ("Vitamin K",), (), None),
        ("labelled.jsonl:7", "What is INR?", ("a ratio",), (), None)]
    assert read.other_domains == 1  # the finance question is not medicine's
    assert [e.answer for e in read.examples] == ["A ratio."]
    assert [s.split(":")[1] for s in read.skipped] == ["3", "4"]
