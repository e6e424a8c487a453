"""The evaluation's question set: ``questions.jsonl`` lines of
``{"id", "domain", "question", "answers": [...], "evidence_doc_ids": [...]}`` (DESIGN.md), with an
optional ``answer_type`` (e.g. TAT-QA's span / multi-span / arithmetic / count) the report groups by.

A file or a folder of ``*.jsonl`` files. A bad line is an error that names the file and line:
a silently skipped question would change every number in the report.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from adapters.round_robin import round_robin
from indexing.atomic_files import write_text_atomic
from indexing.corpus import CorpusError, normalise_domain
from indexing.jsonl import BadJsonLine, numbered_lines, parse_json_line


class QuestionsError(ValueError):
    """The question set cannot be used as it is."""


@dataclass(frozen=True)
class EvalQuestion:
    id: str
    domain: str
    question: str
    answers: tuple[str, ...]
    evidence_doc_ids: tuple[str, ...]
    answer_type: str | None = None  # the set's own kind of answer, when it has one: scored separately

    @property
    def multi_hop(self) -> bool:
        """Needs two or more documents: reported separately."""
        return len(self.evidence_doc_ids) >= 2


def load_questions(path: Path) -> list[EvalQuestion]:
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise QuestionsError(f"no questions file at {path}")
    questions: list[EvalQuestion] = []
    for file in files:
        for number, line in numbered_lines(file.read_text(encoding="utf-8")):
            questions.append(_parse(line, f"{file.name}:{number}"))
    ids = [q.id for q in questions]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise QuestionsError(f"question ids repeat: {', '.join(repeated[:5])}")
    if not questions:
        raise QuestionsError(f"{path} holds no questions")
    return questions


def _parse(line: str, where: str) -> EvalQuestion:
    try:
        row = parse_json_line(line)
    except BadJsonLine as exc:
        raise QuestionsError(f"{where}: {exc}") from None
    if not isinstance(row, dict):
        raise QuestionsError(f"{where}: expected an object")
    missing = [key for key in ("id", "domain", "question", "answers") if key not in row]
    if missing:
        raise QuestionsError(f"{where}: missing {', '.join(missing)}")
    answers, evidence = row["answers"], row.get("evidence_doc_ids", [])
    if not isinstance(answers, list) or not isinstance(evidence, list):
        raise QuestionsError(f"{where}: answers and evidence_doc_ids must be lists")
    if not str(row["question"]).strip():
        raise QuestionsError(f"{where}: empty question")
    try:
        domain = normalise_domain(str(row["domain"]))
    except CorpusError as exc:
        raise QuestionsError(f"{where}: {exc}") from None
    answer_type = row.get("answer_type")
    return EvalQuestion(str(row["id"]), domain, str(row["question"]).strip(), tuple(str(a) for a in answers),
                        tuple(str(d) for d in evidence), str(answer_type) if answer_type else None)


def spread_over_domains(questions: list[EvalQuestion], limit: int | None) -> list[EvalQuestion]:
    """The first ``limit`` questions taken round-robin over domains (file order within each), so a
    short run still sees every domain; None keeps all."""
    if limit is None or limit >= len(questions):
        return list(questions)
    by_domain: dict[str, list[EvalQuestion]] = {}
    for question in questions:
        by_domain.setdefault(question.domain, []).append(question)
    return round_robin((by_domain[domain] for domain in sorted(by_domain)), limit)


def split_for_training(questions: list[EvalQuestion], train_share: float,
                       seed: int) -> tuple[list[EvalQuestion], list[EvalQuestion]]:
    """A seeded split: ``train_share`` of each domain's questions to train adapters on, the rest
    held out to score. Fixed by the seed and the question ids, whatever the file's order, so a
    score is never reported on a question its adapter was trained on."""
    train, held_out = [], []
    for domain in sorted({q.domain for q in questions}):
        members = sorted((q for q in questions if q.domain == domain), key=lambda q: q.id)
        random.Random(f"{seed}|{domain}").shuffle(members)
        cut = round(len(members) * train_share)
        train += members[:cut]
        held_out += members[cut:]
    order = {q.id: i for i, q in enumerate(questions)}
    return sorted(train, key=lambda q: order[q.id]), sorted(held_out, key=lambda q: order[q.id])


def write_questions(questions: list[EvalQuestion], path: Path) -> None:
    """The questions as a questions.jsonl (also a --user-file of labelled questions for training)."""
    rows = [{"id": q.id, "domain": q.domain, "question": q.question, "answers": list(q.answers),
             "evidence_doc_ids": list(q.evidence_doc_ids), **({"answer_type": q.answer_type} if q.answer_type else {})}
            for q in questions]
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
