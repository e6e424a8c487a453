"""The evaluation's outputs: report.json (everything), report.md (the tables, also printed) and
three charts (recall@k by method, accuracy by domain, the routing confusion matrix)."""

from __future__ import annotations

import json
from pathlib import Path

from assistant.evaluation.metrics import LEAD_KINDS
from assistant.evaluation.run_records import ADAPTER_RAG, BASE_RAG, CLOSED_BOOK, CONFIG_LABELS, METHOD_LABELS
from assistant.markdown_table import markdown_table
from indexing.atomic_files import write_text_atomic

REPORT_JSON, REPORT_MD = "report.json", "report.md"
CHARTS = ("recall_at_k.png", "accuracy_by_domain.png", "confusion.png")
LABELS = ("yes", "no", "maybe")


def write_report(report: dict, out: Path, charts: bool = True) -> list[Path]:
    """``charts`` off: the JSON and the tables only (the checkpoints of a run in progress)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / REPORT_JSON, json.dumps(report, indent=2, ensure_ascii=False))
    write_text_atomic(out / REPORT_MD, summary_markdown(report))
    return [out / REPORT_JSON, out / REPORT_MD, *(draw_charts(report, out) if charts else [])]


# --- tables ------------------------------------------------------------------------------------

def summary_markdown(report: dict) -> str:
    parts = [f"# Evaluation of {report['corpus']}",
             f"{report['n_questions']} questions from {report['questions_file']}; workspace {report['workspace']}"
             f" ({'index reused' if report['reused_index'] else 'indexed in this run'}).",
             _routing(report["routing"]), _retrieval(report["retrieval"])]
    if "split" in report:
        split = report["split"]
        parts.insert(2, f"Split (seed {split['seed']}): {split['train']} questions trained the adapters "
                        f"({split['train_file']}); the {split['held_out']} others are held out, and only they are scored.")
    if not report.get("complete", True):
        done = ", ".join(report.get("stages_done", [])) or "none"
        parts.insert(2, f"**Partial report**: the run has not finished (or was stopped); stages done: {done}.")
    if "answers" in report:
        parts.append(_answers(report["answers"], report.get("adapters", {}), report.get("adapter_notes", [])))
        parts.append(_paired(report.get("adapter_vs_base", {})))
        if report.get("paired"):
            parts.append(_intervals(report["paired"]))
    if "training" in report:
        parts.append(_training(report["training"], report.get("answers", {})))
    if "transfer" in report:
        parts.append(_transfer(report["transfer"]))
    if "goals" in report:
        parts.append(_goals(report["goals"]))
    parts.append(_latency(report["latency"]))
    return "\n\n".join(parts) + "\n"


def table(headers: list[str], rows: list[list]) -> str:
    return markdown_table(headers, [[_cell(value) for value in row] for row in rows])


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _routing(section: dict) -> str:
    rows = [["all", section["n"], section["accuracy"], section["abstention_rate"], section["accuracy_when_answered"]]]
    rows += [[domain, "", accuracy, "", ""] for domain, accuracy in section["by_domain"].items()]
    confusion = section["confusion"]
    matrix = table(["gold \\ routed", *confusion["columns"]],
                   [[label, *counts] for label, counts in zip(confusion["labels"], confusion["rows"])])
    return ("## Routing\n\n" + table(["domain", "questions", "accuracy", "abstained", "accuracy when routed"], rows)
            + "\n\n" + matrix)


def _retrieval(section: dict) -> str:
    k, counts = section["k"], section["counts"]
    rows, domains = [], sorted(next(iter(section["methods"].values()))["single_document_by_domain"])
    for method, entry in section["methods"].items():
        every, multi, two, three = entry["all"], entry["multi_hop"], entry["two_hop"], entry["three_hop"]
        rows.append([METHOD_LABELS[method], every["recall_at"][0], every["recall_at"][min(1, k - 1)],
                     every["recall_at"][-1], every["all_evidence_at"][-1], multi["recall_at"][min(1, k - 1)],
                     multi["recall_at"][-1], two["all_evidence_at"][-1],
                     three["all_evidence_at"][-1],
                     *[entry["single_document_by_domain"][d] for d in domains]])
    note = (f"Evidence recall: share of a question's evidence documents among the documents of its top-k "
            f"items (a passage has one document, a fact the documents it was read in); every method at the "
            f"same k except full, which counts k passages and k facts. {counts['all']} questions, "
            f"{counts['multi_hop']} multi-hop ({counts['two_hop']} with two evidence documents, "
            f"{counts['three_hop']} with three or more). Searched in the routed domain.")
    if section["graph_degraded_questions"]:
        note += f" The graph failed for {section['graph_degraded_questions']} questions."
    headers = ["method", "recall@1", f"recall@{min(2, k)}", f"recall@{k}", f"all evidence@{k}",
               f"multi-hop recall@{min(2, k)}", f"multi-hop recall@{k}",
               f"2-doc all@{k}", f"3-doc all@{k}", *[f"single-doc recall@{k} {d}" for d in domains]]
    return "## Retrieval\n\n" + table(headers, rows) + "\n\n" + note


def _answers(section: dict, adapters: dict, notes: list[str]) -> str:
    rows, domains = [], sorted({d for entry in section.values() for d in entry["by_domain"]})
    for config, entry in section.items():
        rows.append([CONFIG_LABELS[config], entry["n"], entry["exact_match"], entry["f1"], entry["contains"],
                     f"{_cell(entry['yesno_accuracy'])} (n={entry['yesno_n']})", entry["multi_hop"]["f1"],
                     *[entry["by_domain"].get(d, {}).get("f1") for d in domains]])
    used = ", ".join(f"{d}: {n}" for d, n in sorted(adapters.items())) or "none (no domain has an adapter)"
    legend = ("EM and F1 against the best-matching gold answer (case, punctuation, articles and citations "
              "ignored); contains gold: a gold answer occurs in the answer as whole words.")
    text = ("## Answers\n\n" + table(["configuration", "n", "EM", "F1", "contains gold", "yes/no/maybe acc.", "multi-hop F1",
                                      *[f"F1 {d}" for d in domains]], rows) + f"\n\n{legend} Adapters: {used}.")
    text += "".join(f"\n- {note}" for note in notes)
    parts = [text, _answer_types(section), _labels(section), _opened_with(section), _faithfulness(section)]
    return "\n\n".join(part for part in parts if part)


def _answer_types(section: dict) -> str:
    """Contains / F1 / EM per answer type of the question set (e.g. TAT-QA's span, arithmetic);
    empty when its questions have none."""
    rows = [[CONFIG_LABELS[config], answer_type, scores["n"], scores["contains"], scores["f1"], scores["exact_match"]]
            for config, entry in section.items() for answer_type, scores in entry.get("by_answer_type", {}).items()]
    if not rows:
        return ""
    return "### By answer type\n\n" + table(["configuration", "answer type", "n", "contains gold", "F1", "EM"], rows)


def _labels(section: dict) -> str:
    """The gold yes/no/maybe labels and each configuration's predicted ones, side by side: an
    accuracy near the gold's largest share may only mean one label said every time."""
    entries = {config: entry["label_distribution"] for config, entry in section.items()
               if entry.get("label_distribution")}
    if not entries:
        return ""
    gold = max(entries.values(), key=lambda entry: entry["n"])  # the adapter may answer only its domain's questions
    rows = [["gold", gold["n"], *_label_cells(gold["gold"], LABELS), "", _largest(gold["gold"])]]
    rows += [[CONFIG_LABELS[config], entry["n"], *_label_cells(entry["predicted"], (*LABELS, "none")),
              _largest(entry["predicted"])] for config, entry in entries.items()]
    return ("### Yes/no/maybe labels\n\n"
            + table(["labels of", "n", *LABELS, "none", "largest share"], rows)
            + "\n\nShare (count) of the questions whose gold is yes, no or maybe; a predicted label is the answer's "
              "first yes/no/maybe word, none when it has none.")


def _largest(spread: dict) -> str:
    return f"{spread['largest']} {_cell(spread['largest_share'])}"


def _label_cells(spread: dict, names: tuple[str, ...]) -> list[str]:
    return [f"{_cell(spread['shares'][name])} ({spread['counts'][name]})" for name in names]


def _opened_with(section: dict) -> str:
    rows = [[CONFIG_LABELS[config], *[entry["opened_with"].get(kind) for kind in LEAD_KINDS]]
            for config, entry in section.items() if entry.get("opened_with")]
    if not rows:
        return ""
    return ("### What opened the answer\n\n" + table(["configuration", *LEAD_KINDS], rows)
            + "\n\nShare of answers whose opening the answering path wrote itself: graph facts, a quoted evidence "
              "sentence, table cells (or a value computed from them), a yes/no label with the sentence it rests "
              "on, both hops of a multi-hop question (bridge); the rest opened with the model's own words.")


def _faithfulness(section: dict) -> str:
    """Citations and support, as served and under each strict_grounding setting, and what the
    generated draft cited before attribution corrected it."""
    rows = []
    for config, entry in section.items():
        for name, scores in [("as served", entry), *entry.get("by_grounding", {}).items(),
                             ("draft, before attribution", entry.get("draft", {}))]:
            rows.append([CONFIG_LABELS[config], name, scores.get("citation_rate"), scores.get("supported_sentence_rate"),
                         scores.get("contradiction_rate"), scores.get("contradictions"),
                         scores.get("citation_precision"), scores.get("contains"), scores.get("f1")])
    legend = ("citation rate: answers with at least one citation whose item supports its sentence; supported: claim "
              "sentences some evidence item supports; contradicting: claim sentences whose polarity contradicts the "
              "evidence they match best, or a yes/no label its own reason contradicts (rate and count; – in reports "
              "from before they were counted); citation precision: citations whose item supports their "
              "sentence (as served it is 1 by construction: attribution keeps only those).")
    return ("### Faithfulness\n\n" + table(["configuration", "grounding", "citation rate", "supported sentences",
                                              "contradicting sentences", "contradictions", "citation precision",
                                              "contains gold", "F1"], rows) + f"\n\n{legend}")


def _paired(section: dict) -> str:
    """Base and adapter on the same questions (those routed to a domain with an adapter)."""
    if not section or not section.get(ADAPTER_RAG, {}).get("n"):
        return "No question was routed to a domain with an adapter."
    rows = [[CONFIG_LABELS[config], entry["n"], entry["exact_match"], entry["f1"], entry["contains"]]
            for config, entry in section.items()]
    return ("### Adapter vs base on the same questions\n\n"
            + table(["configuration", "n", "EM", "F1", "contains gold"], rows))


def _intervals(section: dict) -> str:
    """Paired differences on the same questions with their bootstrap intervals."""
    rows = []
    for entry in section.values():
        cells = []
        for metric in ("contains", "f1", "label_ok"):
            scored = entry.get(metric)
            cells.append("-" if not scored or scored["difference"] is None else
                         f"{scored['difference']:+.3f} [{scored['low']:+.3f}, {scored['high']:+.3f}]")
        rows.append([f"{CONFIG_LABELS[entry['treated']]} minus {CONFIG_LABELS[entry['control']]}", entry["n"], *cells])
    return ("### Paired differences (95% bootstrap interval)\n\n"
            + table(["comparison", "n", "contains gold", "F1", "yes/no/maybe accuracy"], rows))


def _training(section: dict, answers: dict) -> str:
    cost, added = [], []
    for domain, entry in section["domains"].items():
        scores, run = entry["metrics"], entry.get("training", {})
        base, adapter = scores.get("base", {}), scores.get("adapter", {})
        cost.append([domain, entry["adapter"], run.get("steps", entry.get("steps")), run.get("best_step"),
                     "yes" if run.get("stopped_early") else "no",
                     "reused" if entry["reused"] else f"{entry['seconds']} s", _steps_per_second(run),
                     run.get("tokens_per_second"),
                     entry.get("dataset", {}).get("train"), base.get("val_loss"), adapter.get("val_loss")])
        recall = scores.get("fact_recall", {})
        by_config = {config: answers.get(config, {}).get("by_domain", {}).get(domain, {})
                     for config in (CLOSED_BOOK, BASE_RAG, ADAPTER_RAG)}
        added.append([domain, by_config[CLOSED_BOOK].get("contains"),
                      *[recall.get(label, {}).get(name, {}).get("recalled")
                        for name in ("trained", "held_out") for label in ("base", "adapter")],
                      by_config[BASE_RAG].get("contains"), by_config[ADAPTER_RAG].get("contains"),
                      by_config[BASE_RAG].get("f1"), by_config[ADAPTER_RAG].get("f1")])
    return ("## Adapters trained from each domain's corpus\n\n"
            + table(["domain", "adapter", "steps", "best step", "stopped early", "time", "steps/s", "tokens/s",
                     "train examples",
                     "held-out answer loss base", "held-out answer loss adapter"], cost)
            + "\n\n### What the weights and the retrieval each add\n\n"
            + table(["domain", "base closed-book (eval questions)", "trained facts base", "trained facts adapter",
                     "held-out facts base", "held-out facts adapter", "base + retrieval", "adapter + retrieval",
                     "F1 base + retrieval", "F1 adapter + retrieval"], added)
            + "\n\nContains gold unless marked F1. Trained / held-out facts: closed-book answers to the dataset's "
              "fact questions whose facts were in the adapter's training data / in no form of it (the split is by "
              "subject and relation). Held-out answer loss: on the dataset's validation questions.")


def _steps_per_second(run: dict) -> float | None:
    steps, seconds = run.get("steps"), run.get("seconds")
    return round(steps / seconds, 3) if steps and seconds else None


def _transfer(section: dict) -> str:
    if "rows" not in section:
        return "## Transfer\n\n" + section.get("note", "")
    rows = [[row["setting"], row["n"], row["exact_match"], row["f1"], row["contains"]] for row in section["rows"]]
    text = (f"## Transfer from {section['source']} to {section['target']}\n\n"
            + table(["setting", "n", "EM", "F1", "contains gold"], rows))
    reach = section.get("convergence", {})
    if "scratch_steps" in reach:
        warm = ("never did" if reach["warm_steps"] is None
                else f"took {reach['warm_steps']} steps ({_cell(reach['ratio'])}x)")
        text += (f"\n\nConvergence on {section['target']}'s validation loss: from scratch, the best "
                 f"({_cell(reach['scratch_best_val_loss'])}) came at step {reach['scratch_steps']}; the warm start "
                 f"{warm} to reach it (its own best {_cell(reach['warm_best_val_loss'])}).")
    return text


def _goals(checks: list[dict]) -> str:
    rows = [[check["goal"], check["domain"], check["value"], check["target"], "yes" if check["met"] else "**no**"]
            for check in checks]
    met = sum(check["met"] for check in checks)
    return (f"## Transfer goals: {met} of {len(checks)} met\n\n"
            + table(["goal", "domain", "value", "target", "met"], rows)
            + "\n\nPaired: the same questions of the domain answered by both. A ratio is blank where the base "
              "scored 0.")


def _latency(section: dict) -> str:
    rows = [[stage, stats["n"], _ms(stats["p50"]), _ms(stats["p95"])]
            for stage, stats in section.items() if stage != "generate"]
    rows += [[f"generate: {CONFIG_LABELS.get(config, config)}", stats["n"], _ms(stats["p50"]), _ms(stats["p95"])]
             for config, stats in section.get("generate", {}).items()]
    return "## Latency\n\n" + table(["stage", "n", "p50 ms", "p95 ms"], rows)


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.0f}"


# --- several runs side by side (make eval-dev) --------------------------------------------------

def side_by_side(out_dirs: list[Path]) -> str:
    """One row per run and configuration: the answer, faithfulness and label scores that say
    most about a development set, read from each run's report.json."""
    rows = []
    for out in map(Path, out_dirs):
        report = json.loads((out / REPORT_JSON).read_text(encoding="utf-8"))
        for config, entry in report.get("answers", {}).items():
            spread = entry.get("label_distribution")
            rows.append([out.name, CONFIG_LABELS.get(config, config), entry["n"], entry["contains"], entry["f1"],
                         entry.get("yesno_accuracy"), entry.get("citation_rate"), entry.get("supported_sentence_rate"),
                         entry.get("contradiction_rate"), _spread(spread["predicted"], (*LABELS, "none")) if spread else None])
        if spread := _widest_label_distribution(report):
            rows.append([out.name, "gold", spread["n"], "", "", "", "", "", "", _spread(spread["gold"], LABELS)])
    return table(["run", "configuration", "n", "contains gold", "F1", "yes/no/maybe acc.", "citation rate",
                  "supported sentences", "contradicting sentences", "labels"], rows)


def _widest_label_distribution(report: dict) -> dict | None:
    spreads = [entry["label_distribution"] for entry in report.get("answers", {}).values()
               if entry.get("label_distribution")]
    return max(spreads, key=lambda spread: spread["n"]) if spreads else None


def _spread(spread: dict, names: tuple[str, ...]) -> str:
    return " / ".join(f"{name} {_cell(spread['shares'][name])}" for name in names)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m assistant.evaluation.report")
    parser.add_argument("--summary", nargs="+", type=Path, required=True, metavar="DIR",
                        help="eval output folders (each with a report.json), summed up side by side")
    args = parser.parse_args(argv)
    missing = [str(out) for out in args.summary if not (out / REPORT_JSON).is_file()]
    if missing:
        parser.error(f"no {REPORT_JSON} in {', '.join(missing)}")
    print(side_by_side(args.summary))


# --- charts ------------------------------------------------------------------------------------

def draw_charts(report: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    paths = [_recall_chart(plt, report["retrieval"], out / CHARTS[0]),
             _domain_chart(plt, report, out / CHARTS[1]),
             _confusion_chart(plt, report["routing"]["confusion"], out / CHARTS[2])]
    plt.close("all")
    return paths


def _recall_chart(plt, section: dict, path: Path) -> Path:
    figure, axis = plt.subplots(figsize=(6, 4))
    ks = list(range(1, section["k"] + 1))
    for method, entry in section["methods"].items():
        axis.plot(ks, entry["all"]["recall_at"], marker="o", label=METHOD_LABELS[method])
    axis.set(xlabel="k", ylabel="evidence recall@k", ylim=(0, 1.02), xticks=ks, title="Evidence recall by method")
    axis.legend(loc="lower right", fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def _domain_chart(plt, report: dict, path: Path) -> Path:
    domains = list(report["routing"]["by_domain"])
    series = {"routing accuracy": [report["routing"]["by_domain"][d] or 0 for d in domains]}
    for config, entry in report.get("answers", {}).items():
        series[f"F1, {CONFIG_LABELS[config]}"] = [entry["by_domain"].get(d, {}).get("f1") or 0 for d in domains]
    figure, axis = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        axis.bar([x + i * width for x in range(len(domains))], values, width, label=label)
    axis.set_xticks([x + 0.4 - width / 2 for x in range(len(domains))], domains)
    axis.set(ylim=(0, 1.05), ylabel="score", title="Accuracy by domain")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def _confusion_chart(plt, confusion: dict, path: Path) -> Path:
    figure, axis = plt.subplots(figsize=(5, 4))
    axis.imshow(confusion["rows"], cmap="Blues")
    axis.set_xticks(range(len(confusion["columns"])), confusion["columns"], rotation=30)
    axis.set_yticks(range(len(confusion["labels"])), confusion["labels"])
    for row, counts in enumerate(confusion["rows"]):
        for column, count in enumerate(counts):
            axis.text(column, row, str(count), ha="center", va="center")
    axis.set(xlabel="routed", ylabel="gold domain", title="Routing confusion matrix")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


if __name__ == "__main__":
    main()
