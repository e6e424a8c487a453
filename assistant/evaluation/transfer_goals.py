"""Whether a ``--train-adapters`` run meets the knowledge-transfer goals, read off its report.

The goals (what "the adapters learnt the domain" means for this product):

- per domain, the adapter with retrieval beats the base model with the same retrieval, paired on
  the same questions, by at least ``CONTAINS_GAIN`` on contains-gold and ``F1_RATIO`` times on F1;
- per domain, the adapter answers at least ``TRAINED_RECALL`` of the closed-book questions about
  facts it was trained on (the base is near 0);
- on yes/no/maybe questions, the adapter with retrieval is right ``YESNO_GAIN`` more often than the
  base model with the same retrieval, paired, with the bootstrap interval above 0;
- a warm start from another domain's adapter reaches the from-scratch run's best validation loss
  in at most ``WARM_STEPS_RATIO`` of its steps.

Each check says its value, its target and whether it is met, so a report shows where a run falls
short instead of leaving the reader to do the arithmetic. Pure logic on the report's dict.
"""

from __future__ import annotations

from assistant.evaluation.run_records import ADAPTER_RAG, BASE_RAG

CONTAINS_GAIN = 0.10
F1_RATIO = 1.5
TRAINED_RECALL = 0.5
WARM_STEPS_RATIO = 0.7
YESNO_GAIN = 0.05


def goal_checks(report: dict) -> list[dict]:
    """One row per goal and domain: ``goal``, ``domain``, ``value``, ``target``, ``met``."""
    checks: list[dict] = []
    paired = report.get("adapter_vs_base", {})
    base_by_domain = paired.get(BASE_RAG, {}).get("by_domain", {})
    adapter_by_domain = paired.get(ADAPTER_RAG, {}).get("by_domain", {})
    for domain in sorted(report.get("training", {}).get("domains", {})):
        base, adapter = base_by_domain.get(domain), adapter_by_domain.get(domain)
        if base and adapter and adapter.get("n"):
            gain = round(adapter["contains"] - base["contains"], 4)
            checks.append(_check("contains gold: adapter + retrieval minus base + retrieval", domain, gain,
                                 f">= +{CONTAINS_GAIN:.2f}", gain >= CONTAINS_GAIN))
            ratio = _ratio(adapter["f1"], base["f1"])
            met = adapter["f1"] > 0 if ratio is None else ratio >= F1_RATIO
            checks.append(_check("F1: adapter + retrieval / base + retrieval", domain, ratio, f">= {F1_RATIO}x", met))
        else:
            checks.append(_check("adapter + retrieval vs base + retrieval", domain, None, "answered questions", False))
        recalled = _trained_recall(report["training"]["domains"][domain])
        checks.append(_check("closed-book recall of trained facts, adapter", domain, recalled,
                             f">= {TRAINED_RECALL}", recalled is not None and recalled >= TRAINED_RECALL))
    labels = report.get("paired", {}).get(f"{ADAPTER_RAG} vs {BASE_RAG}", {}).get("label_ok")
    if labels and labels.get("n"):
        met = labels["difference"] >= YESNO_GAIN and labels["low"] > 0
        checks.append(_check("yes/no/maybe accuracy: adapter + retrieval minus base + retrieval (paired)", None,
                             labels["difference"], f">= +{YESNO_GAIN:.2f}, interval above 0", met))
    reach = report.get("transfer", {}).get("convergence", {})
    if "scratch_steps" in reach:
        ratio = reach.get("ratio")
        checks.append(_check("warm start: steps to the from-scratch best validation loss / the scratch run's",
                             report["transfer"].get("target"), ratio, f"<= {WARM_STEPS_RATIO}x",
                             ratio is not None and ratio <= WARM_STEPS_RATIO))
    return checks


def _check(goal: str, domain: str | None, value, target: str, met: bool) -> dict:
    return {"goal": goal, "domain": domain, "value": value, "target": target, "met": met}


def _ratio(numerator: float, denominator: float) -> float | None:
    """None when the base scored 0 (no ratio; report.json stays plain JSON, without Infinity)."""
    return round(numerator / denominator, 3) if denominator > 0 else None


def _trained_recall(entry: dict) -> float | None:
    return entry.get("metrics", {}).get("fact_recall", {}).get("adapter", {}).get("trained", {}).get("recalled")
