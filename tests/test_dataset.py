"""Fine-tuning data: examples from graph facts and passages, deduplicated, split without leaks."""

from __future__ import annotations

import json
import re

import pytest

from adapters import prompts
from adapters.dataset import (build_dataset, drop_duplicates, fact_examples, lowercase_words, specific_subject,
                              split_examples)
from adapters.dataset_files import load_split
from adapters.example import DatasetError, Example
from adapters.user_examples import read_user_examples
from assistant.settings import DEMO_CORPORA_DIR
from indexing.graph_store import Fact
from indexing.pipeline import index_source
from indexing.vector_store import ChunkRow


def _fact(head: str, relation: str, tail: str, chunk: str = "warfarin.md#1") -> Fact:
    return Fact(head, head.lower(), relation, tail, tail.lower(), 0.8, 1, (chunk,), (chunk.split("#")[0],), False, 0)


CHUNKS = {
    "warfarin.md#1": ChunkRow("warfarin.md#1", "warfarin.md", "Warfarin",
                              "Warfarin is an anticoagulant. Vitamin K reverses warfarin. It is taken by mouth."),
    "insulin.md#1": ChunkRow("insulin.md#1", "insulin.md", "Insulin",
                             "Insulin is a peptide hormone. The pancreas produces insulin in beta cells."),
}
FACTS = [_fact("Warfarin", "is_a", "an anticoagulant"), _fact("Vitamin K", "reverse", "warfarin"),
         _fact("Pancreas", "produce", "insulin", "insulin.md#1"), _fact("Insulin", "is_a", "a peptide hormone", "insulin.md#1"),
         _fact("Beta cells", "secrete", "insulin", "insulin.md#1")]


def test_fact_examples_ask_about_the_fact_and_cite_the_evidence():
    examples = fact_examples("medicine", FACTS, CHUNKS, progress=False)
    grounded = next(e for e in examples if e.kind == "grounded" and e.group == "fact:vitamin k|reverse")
    assert grounded.question == "What does Vitamin K reverse?"
    user = grounded.messages[1]["content"]
    number = next(line.split("]")[0][1:] for line in user.splitlines() if line.endswith("Vitamin K reverse warfarin"))
    assert grounded.messages[-1]["content"] == f"Vitamin K reverses warfarin [{number}]."  # as a served lead says it
    assert "Vitamin K reverses warfarin." in user  # the supporting sentence as a passage
    assert grounded.messages[0]["content"] == prompts.system_message("medicine")
    closed = next(e for e in examples if e.kind == "fact" and e.group == grounded.group)
    assert closed.messages[1]["content"] == "What does Vitamin K reverse?" and closed.answer == "warfarin"
    yes_no = [e for e in examples if e.kind == "yesno"]
    assert {e.answer for e in yes_no} <= {prompts.YES, prompts.NO} and len(yes_no) == len({_f.head for _f in FACTS})
    for example in yes_no:  # the label, then the evidence in its own words, cited
        assert example.messages[-1]["content"].startswith(example.answer + " ")
        assert example.messages[-1]["content"].endswith(" [1].")


def test_exact_and_near_duplicates_are_dropped():
    def example(question: str, answer: str, group: str) -> Example:
        return Example(group, "fact", group, prompts.chat_messages("medicine", question, answer=answer), answer, "span")

    examples = [example("What does Vitamin K reverse?", "warfarin", "a"),
                example("what does vitamin K reverse", "Warfarin.", "b"),  # same up to case and punctuation
                example("What does the drug Vitamin K reverse in adults?", "warfarin", "c"),
                example("What does Vitamin K reverse in the adult patient population today?", "warfarin", "d"),
                example("What does Vitamin K reverse in the adult patient population today?!", "warfarin [2]", "e"),
                example("Who discovered penicillin?", "Alexander Fleming", "f")]
    kept, exact, near = drop_duplicates(examples)
    assert exact == 2 and [e.group for e in kept] == ["a", "c", "d", "f"] and near == 0
    many = [example(f"What does Vitamin K reverse in patient number {i} of the long clinical trial?", "warfarin", str(i))
            for i in range(2)]
    many.append(example("What does Vitamin K reverse in patient number 1 of the long clinical trial today?", "warfarin", "x"))
    kept, exact, near = drop_duplicates(many, threshold=0.7)
    assert exact == 0 and near >= 1 and len(kept) == 3 - near


def test_split_is_fixed_and_keeps_groups_together():
    examples = fact_examples("medicine", FACTS * 1, CHUNKS, progress=False)
    split_examples(examples, 40)
    first = {e.id: e.split for e in examples}
    split_examples(examples, 40)
    assert first == {e.id: e.split for e in examples}
    by_group = {}
    for example in examples:
        by_group.setdefault(example.group, set()).add(example.split)
    assert all(len(splits) == 1 for splits in by_group.values())


def test_user_jsonl_lines_are_read_and_bad_lines_reported(tmp_path):
    path = tmp_path / "extra.jsonl"
    path.write_text("\n".join([
        json.dumps({"prompt": "What is INR?", "completion": "The international normalized ratio."}),
        json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}),
        json.dumps({"messages": [{"role": "user", "content": "no answer"}]}),
        "{broken",
        json.dumps({"prompt": "", "completion": "x"}),
    ]) + "\n")
    read = read_user_examples("medicine", path)
    examples, skipped = read.examples, read.skipped
    assert [e.answer for e in examples] == ["The international normalized ratio.", "Hello."]
    assert examples[1].messages[0]["role"] == "system"
    assert [s.split(":")[1] for s in skipped] == ["3", "4", "5"]


def test_building_without_an_index_says_so(settings):
    with pytest.raises(DatasetError, match="no usable index"):
        build_dataset(settings.dataset_params, "medicine", None, progress=False)


def test_demo_domain_dataset_has_no_train_validation_overlap(settings, store, embedder):
    report = index_source(settings.indexing_params, DEMO_CORPORA_DIR / "medicine", "medicine", progress=False, graph=store, embedder=embedder)
    assert report.ok
    built = build_dataset(settings.dataset_params, "medicine", store, progress=False)
    train, validation = load_split(built.folder, "train"), load_split(built.folder, "validation")
    assert built.facts_used > 100 and len(train) > 300 and len(validation) > 40
    assert {"fact", "grounded", "yesno", "overview"} <= {e.kind for e in train}
    keys = lambda rows: {e.dedup_key for e in rows}  # noqa: E731
    assert not keys(train) & keys(validation)
    assert not {e.group for e in train} & {e.group for e in validation}
    assert len(keys(train)) == len(train)
    fact_rows = [e for e in train if e.kind == "grounded"]
    assert all(e.evidence and all(c.startswith(tuple(d.name for d in (DEMO_CORPORA_DIR / "medicine").iterdir()))
                                  for c in e.evidence) for e in fact_rows)
    again = build_dataset(settings.dataset_params, "medicine", store, progress=False)
    assert again.data_hash == built.data_hash  # deterministic
    no_graph = build_dataset(settings.dataset_params, "medicine", None, progress=False)
    assert no_graph.graph_error and no_graph.counts["train"].get("fact", 0) == 0 and no_graph.total("train") > 0


def test_closed_book_subjects_are_names_or_terms_not_sentence_openers():
    chunk = ChunkRow("bank.md#1", "bank.md", "Bank of England",
                     "Member countries pegged their currencies. In 1998 the Bank gained independence from Paul Volcker's "
                     "peers, a central bank like no other. The main remedy was the writ that Congress passed in the act. "
                     "Omeprazole blocks acid. Brown v. Board of Education ended it. Each member agreed.")
    subject = lambda name: specific_subject(name, [chunk], lowercase_words([chunk]))  # noqa: E731
    assert subject("Paul Volcker") and subject("Congress") and subject("Bank of England")  # a name, or the topic
    assert subject("central bank") and subject("type 2 diabetes") and subject("usual dose of warfarin")
    assert subject("Omeprazole") and subject("Brown v. Board of Education")  # names, though they open sentences
    assert not subject("Member countries")  # capitalised only because it opens the sentence
    assert not subject("Bank")  # "bank" is written in lower case too: a common noun
    assert not subject("act") and not subject("main remedy")  # points back into the passage


def test_evidence_reading_examples_hold_the_chats_own_retrieved_evidence(settings, store, embedder):
    from adapters.evidence_reading import READING_KIND
    from assistant.answering.retrieval import Retriever
    from assistant.answering.training_evidence import evidence_reader
    from indexing.vector_store import VectorStore

    assert index_source(settings.indexing_params, DEMO_CORPORA_DIR / "medicine", "medicine", progress=False,
                        graph=store, embedder=embedder).ok
    settings = settings.model_copy(update={"dataset_reading_questions": 60})
    reader = evidence_reader(settings, "medicine", store, embedder)
    built = build_dataset(settings.dataset_params, "medicine", store, progress=False, reader=reader)
    examples = load_split(built.folder, "train") + load_split(built.folder, "validation")
    reading = [e for e in examples if e.kind == READING_KIND]
    assert 0.8 * settings.dataset_reading_questions <= len(reading) + built.reading_skipped
    without_gold = [e for e in reading if e.answer == prompts.NO_ANSWER]
    assert 0.05 < len(without_gold) / len(reading) < 0.4  # dataset_reading_no_gold_percent (20) of 60
    vectors = VectorStore(settings.domains_dir)
    chunk_text = {row.chunk_id: row.text for row in vectors.get("medicine").rows}
    retriever = Retriever(settings, vectors, embedder, store)
    for example in reading[:25]:
        prompt_text = example.messages[1]["content"]
        retrieved = [p.text for p in retriever.retrieve(example.question, ["medicine"]).passages]
        gold_chunks = [chunk_text[chunk] for chunk in example.evidence]
        if "Passages:\n" not in prompt_text:  # facts alone
            continue
        section = prompt_text.split("Passages:\n", 1)[1].split("\n\nQuestion: ")[0]
        shown = [re.sub(r"^\[\d+\] [^:\n]*: ", "", item) for item in re.split(r"\n(?=\[\d+\] )", section)]
        # every passage shown was retrieved for the question, or is the gold chunk put in, whole or cut
        assert shown and all(any(text.removesuffix(" ...") in known for known in retrieved + gold_chunks)
                             for text in shown)
        assert reader.count_tokens(prompt_text) <= settings.train_max_tokens
        target = example.messages[-1]["content"]
        if example.answer != prompts.NO_ANSWER:  # a quote of a numbered item, cited with that number
            number = int(target.rsplit("[", 1)[1].split("]")[0])
            assert f"[{number}] " in prompt_text
