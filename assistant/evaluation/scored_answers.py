"""Answering evaluation questions the product's way and scoring them: each (question, adapter,
with or without evidence) goes through the AnswerWriter, up to a batch at a time on the serving
engine, and is scored against the gold answers as served and under the other strict_grounding
setting; ``score_config`` sums one configuration up."""

from __future__ import annotations

import collections
from typing import Iterator, Sequence

from adapters.answer_metrics import contains_answer
from assistant.answering.answer_writer import AnswerWriter, Draft, WrittenAnswer
from assistant.evaluation import metrics
from assistant.evaluation.run_records import CONFIG_LABELS, PAIRS, QuestionRun

SAMPLES_PER_CONFIG = 5
GROUNDINGS = {"strict": True, "lenient": False}


def answer_many(writer: AnswerWriter, work: Sequence[tuple[QuestionRun, str | None, bool]],
                max_new_tokens: int | None) -> Iterator[dict]:
    """Each (run, adapter, with evidence) answered by the writer and scored, in order, while the
    engine decodes up to a batch of them at once (greedy answers do not depend on what else is
    in the batch)."""
    in_flight: collections.deque = collections.deque()
    for run, adapter, grounded in work:
        if len(in_flight) >= writer.engine.settings.engine_max_batch:
            yield _scored(*in_flight.popleft())
        in_flight.append((_begin(writer, run, adapter, grounded, max_new_tokens), run))
    while in_flight:
        yield _scored(*in_flight.popleft())


def _begin(writer: AnswerWriter, run: QuestionRun, adapter: str | None, grounded: bool,
           max_new_tokens: int | None) -> Draft:
    facts, passages = (run.prompt_facts, run.prompt_passages) if grounded else ([], [])
    prompt = writer.prompt(run.question.question, run.routed, facts, passages)
    if grounded and not run.evidence_given:
        run.evidence_given = [{"number": item.number, "kind": item.kind, "title": item.title, "text": item.text}
                              for item in prompt.evidence]
    return writer.begin(run.question.question, prompt, facts[:prompt.facts_used], adapter=adapter,
                        max_new_tokens=max_new_tokens, bridge=run.bridge if grounded else None)


def _scored(draft: Draft, run: QuestionRun) -> dict:
    written = draft.finish()
    result = written.result
    served = {"adapter": result.adapter if result else None, "seconds": result.seconds if result else 0.0,
              "answered_by": written.answered_by,
              "stopped": result.stopped if result else "facts", "lead": written.lead.kind if written.lead else None,
              **_text_scores(written.text, run), "sentences": [s.as_record() for s in written.sentences],
              "draft": written.draft}
    served["counts"] = metrics.sentence_counts(served["sentences"])
    served["draft_counts"] = metrics.sentence_counts([s.as_record() for s in written.all_sentences], draft=True)
    served["grounding"] = {name: _variant(written, strict, run) for name, strict in GROUNDINGS.items()}
    return served


def _variant(written: WrittenAnswer, strict: bool, run: QuestionRun) -> dict:
    """The answer as the other strict_grounding setting would have shown it (same generation)."""
    kept = [s for s in written.all_sentences if s.supported] if strict and written.evidence else written.all_sentences
    return {**_text_scores(written.text_with(strict and bool(written.evidence)), run),
            "counts": metrics.sentence_counts([s.as_record() for s in kept])}


def _text_scores(text: str, run: QuestionRun) -> dict:
    exact, f1 = metrics.best_match(text, run.question.answers)
    gold = metrics.gold_label(run.question.answers)
    label_ok = None if gold is None else float(metrics.predicted_label(text) == gold)
    return {"text": text, "em": exact, "f1": round(f1, 4), "contains": contains_answer(text, run.question.answers),
            "label_ok": label_ok}


NO_ANSWER_TYPE = "unspecified"  # a question without answer_type in a set where others have one


def score_config(runs: Sequence[QuestionRun], config: str) -> dict:
    """EM, F1, contains, yes/no/maybe accuracy and faithfulness of one configuration, as served
    (overall, by domain, by answer type when the questions have one, multi-hop) and under each
    strict_grounding setting; what opened the answers; the spread of yes/no/maybe labels."""
    answered = [run for run in runs if config in run.answers]

    def scores(answers: Sequence[dict]) -> dict:
        labels = [a["label_ok"] for a in answers if a["label_ok"] is not None]
        return {"n": len(answers), "exact_match": metrics.mean(a["em"] for a in answers),
                "f1": metrics.mean(a["f1"] for a in answers),
                "contains": metrics.mean(a["contains"] for a in answers),
                "yesno_n": len(labels), "yesno_accuracy": metrics.mean(labels),
                **metrics.faithfulness([a["counts"] for a in answers])}

    def served(group: Sequence[QuestionRun]) -> dict:
        return scores([r.answers[config] for r in group])

    section = {"label": CONFIG_LABELS[config], **served(answered)}
    section["draft"] = metrics.faithfulness([r.answers[config]["draft_counts"] for r in answered])
    section["opened_with"] = {kind: metrics.mean(float(r.answers[config]["lead"] == kind) for r in answered)
                              for kind in metrics.LEAD_KINDS}
    asked_first = [r.answers[config].get("answered_by") for r in answered if r.answers[config].get("answered_by")]
    if asked_first:  # the adapter wrote first: how often its own answer was kept
        section["answered_by"] = {"n": len(asked_first), "adapter": metrics.mean(float(b == "adapter") for b in asked_first)}
    section["by_grounding"] = {name: scores([r.answers[config]["grounding"][name] for r in answered])
                               for name in GROUNDINGS}
    section["by_domain"] = {d: served([r for r in answered if r.question.domain == d])
                            for d in sorted({r.question.domain for r in answered})}
    if any(r.question.answer_type for r in answered):
        section["by_answer_type"] = {t: served([r for r in answered if _answer_type(r) == t])
                                     for t in sorted({_answer_type(r) for r in answered})}
    if distribution := _label_distribution(answered, config):
        section["label_distribution"] = distribution
    section["multi_hop"] = served([r for r in answered if r.question.multi_hop])
    section["samples"] = [{"id": r.question.id, "question": r.question.question, "gold": list(r.question.answers),
                           "answer": r.answers[config]["text"], "adapter": r.answers[config]["adapter"]}
                          for r in answered[:SAMPLES_PER_CONFIG]]
    return section


def _answer_type(run: QuestionRun) -> str:
    return run.question.answer_type or NO_ANSWER_TYPE


def _label_distribution(answered: Sequence[QuestionRun], config: str) -> dict | None:
    """Predicted yes/no/maybe labels (as served) beside the gold ones, over the questions whose
    gold is a label; None when there are none."""
    pairs = [(gold, metrics.predicted_label(r.answers[config]["text"])) for r in answered
             if (gold := metrics.gold_label(r.question.answers)) is not None]
    if not pairs:
        return None
    gold, predicted = zip(*pairs)
    return metrics.label_distribution(gold, predicted)


PAIRED_METRICS = ("contains", "f1", "label_ok")


def paired_section(runs: Sequence[QuestionRun]) -> dict:
    """Each pair of configurations (run_records.PAIRS) on the questions both answered: the mean
    difference of contains-gold, F1 and yes/no/maybe accuracy with a paired bootstrap interval."""
    section = {}
    for treated, control in PAIRS:
        both = [run for run in runs if treated in run.answers and control in run.answers]
        if not both:
            continue
        entry: dict = {"treated": treated, "control": control, "n": len(both)}
        for metric in PAIRED_METRICS:
            scored = [(run.answers[treated][metric], run.answers[control][metric]) for run in both
                      if run.answers[treated][metric] is not None and run.answers[control][metric] is not None]
            if scored:
                entry[metric] = metrics.paired_bootstrap([t for t, _ in scored], [c for _, c in scored])
        section[f"{treated} vs {control}"] = entry
    return section
