"""Scoring functions of the evaluation, pure and hand-checkable (tests/test_eval_metrics.py).

Answers are compared after SQuAD-style normalisation (case, punctuation, articles and citation
marks ignored) against *any* of a question's gold answers. Retrieval is scored by documents:
evidence recall@k is the share of a question's evidence documents found among the documents of
its top-k retrieved items (a passage has one document, a fact may have several).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from adapters.answer_metrics import exact_match, normalize_answer, token_f1

ABSTAIN = "(abstain)"
_LABELS = ("yes", "no", "maybe")
_LABEL_WORD = re.compile(r"\b(yes|no|maybe)\b")
# What can open an answer before the model writes (Lead.kind in assistant/answering/fact_answers.py); here, not
# there, so the report reads it without importing the answering path.
LEAD_KINDS = ("facts", "quote", "table", "label", "bridge")


def best_match(prediction: str, answers: Sequence[str]) -> tuple[float, float]:
    """(exact match, token F1) of ``prediction`` against its best-matching gold answer."""
    if not answers:
        return 0.0, 0.0
    return (max(exact_match(prediction, gold) for gold in answers),
            max(token_f1(prediction, gold) for gold in answers))


def gold_label(answers: Sequence[str]) -> str | None:
    """'yes', 'no' or 'maybe' when the gold answers are that label (a yes/no/maybe question)."""
    labels = {normalize_answer(a) for a in answers}
    return labels.pop() if len(labels) == 1 and labels <= set(_LABELS) else None


def predicted_label(text: str) -> str | None:
    """The first yes/no/maybe word of an answer, as a reader would take it."""
    match = _LABEL_WORD.search(normalize_answer(text))
    return match.group(1) if match else None


def sentence_counts(sentences: Sequence[dict], draft: bool = False) -> dict:
    """Counts behind the faithfulness scores of one answer, from its sentence records
    (AnswerSentence.as_record): ``cited`` (a valid citation at all), claim sentences and the
    supported ones, the claim sentences that contradict their evidence, citations and the ones
    whose item supports their sentence. ``draft``: count the citations the generated text had
    before attribution corrected them."""
    claims = [s for s in sentences if s["claim"]]
    key = "draft_citations" if draft else "citations"
    citations = [(n, s) for s in sentences for n in s[key]]
    # records written before contradictions were detected have no such key: none counted
    contradictions = sum(1 for s in claims if s.get("contradiction", False))
    return {"cited": float(any(n in s["supporting"] for n, s in citations)), "claims": len(claims),
            "supported": sum(1 for s in claims if s["supported"]), "contradictions": contradictions,
            "citations": len(citations), "supported_citations": sum(1 for n, s in citations if n in s["supporting"])}


def faithfulness(counts: Sequence[dict]) -> dict:
    """citation_rate (answers with at least one valid citation), supported_sentence_rate (claim
    sentences some evidence supports), contradiction_rate (claim sentences that contradict the
    evidence, with their raw count ``contradictions``) and citation_precision (citations whose
    item supports their sentence), over answers' sentence_counts."""
    claims, citations = sum(c["claims"] for c in counts), sum(c["citations"] for c in counts)
    contradictions = sum(c.get("contradictions", 0) for c in counts)
    return {"citation_rate": mean(c["cited"] for c in counts),
            "supported_sentence_rate": _share(sum(c["supported"] for c in counts), claims),
            "contradiction_rate": _share(contradictions, claims), "contradictions": contradictions,
            "citation_precision": _share(sum(c["supported_citations"] for c in counts), citations)}


def label_distribution(gold: Sequence[str], predicted: Sequence[str | None]) -> dict:
    """How the yes/no/maybe labels of a set of label questions are spread, gold beside predicted
    (an answer without a label counts as "none"): a model that says "yes" to everything shows
    up as one large predicted share however its accuracy looks."""
    spread = _label_spread([p if p is not None else "none" for p in predicted], (*_LABELS, "none"))
    return {"n": len(gold), "gold": _label_spread(gold, _LABELS), "predicted": spread,
            "largest_predicted_share": spread["largest_share"]}


def _label_spread(labels: Sequence[str], names: Sequence[str]) -> dict:
    """Counts and shares of each name, and the most frequent one (the first named on a tie)."""
    counts = Counter(labels)
    largest = max(names, key=lambda name: counts[name]) if labels else None
    return {"counts": {name: counts[name] for name in names},
            "shares": {name: _share(counts[name], len(labels)) for name in names},
            "largest": largest, "largest_share": _share(counts[largest], len(labels)) if largest else None}


def documents_at_k(ranked_items: Sequence[Iterable[str]], k: int) -> set[str]:
    """Documents of the first ``k`` items; each item is the document ids it came from."""
    found: set[str] = set()
    for doc_ids in ranked_items[:k]:
        found.update(doc_ids)
    return found


def evidence_recall(found: set[str], evidence: Sequence[str]) -> float:
    """Share of the evidence documents among ``found`` (1.0 for a question without evidence)."""
    wanted = set(evidence)
    return len(wanted & found) / len(wanted) if wanted else 1.0


def all_evidence(found: set[str], evidence: Sequence[str]) -> float:
    """1.0 when every evidence document was found (what a multi-hop answer needs)."""
    return float(set(evidence) <= found)


def confusion_matrix(gold: Sequence[str], predicted: Sequence[str | None]) -> dict:
    """Counts of (gold domain, routed domain); an abstention is its own column."""
    labels = sorted(set(gold) | {p for p in predicted if p is not None})
    counts = Counter((g, p if p is not None else ABSTAIN) for g, p in zip(gold, predicted, strict=True))
    columns = labels + [ABSTAIN]
    return {"labels": labels, "columns": columns,
            "rows": [[counts[(g, c)] for c in columns] for g in labels]}


def routing_scores(gold: Sequence[str], predicted: Sequence[str | None]) -> dict:
    """Accuracy (an abstention counts as wrong), abstention rate, and accuracy on the answered."""
    total = len(gold)
    answered = [(g, p) for g, p in zip(gold, predicted, strict=True) if p is not None]
    correct = sum(g == p for g, p in answered)
    return {"n": total, "accuracy": _share(correct, total), "abstention_rate": _share(total - len(answered), total),
            "accuracy_when_answered": _share(correct, len(answered)),
            "confusion": confusion_matrix(gold, predicted)}


def percentiles(values: Sequence[float]) -> dict:
    """p50, p95 and mean of timings in seconds (empty: None)."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "mean": None}
    array = np.asarray(values, dtype=float)
    return {"n": len(array), "p50": round(float(np.percentile(array, 50)), 4),
            "p95": round(float(np.percentile(array, 95)), 4), "mean": round(float(array.mean()), 4)}


def mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def paired_bootstrap(treated: Sequence[float], control: Sequence[float], samples: int = 2000, seed: int = 0,
                     level: float = 0.95) -> dict:
    """The mean of ``treated`` − ``control`` over the same questions (paired by position) and its
    percentile bootstrap interval: the questions are resampled with replacement ``samples`` times
    (seeded, so a report is reproducible)."""
    if len(treated) != len(control):
        raise ValueError("paired scores must cover the same questions")
    if not treated:
        return {"n": 0, "difference": None, "low": None, "high": None}
    differences = np.asarray(treated, dtype=float) - np.asarray(control, dtype=float)
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, len(differences), (samples, len(differences)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"n": len(differences), "difference": round(float(differences.mean()), 4),
            "low": round(float(low), 4), "high": round(float(high), 4)}
