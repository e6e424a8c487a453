"""Examples a user brings: a JSONL file of ``{"messages": [...]}`` conversations,
``{"prompt": ..., "completion": ...}`` pairs (put in the training chat format), or labelled
questions ``{"question": ..., "answers": [...], "evidence_doc_ids": [...]}`` (the evaluation's
format, turned into evidence-reading examples by adapters/evidence_reading.py; one whose
``domain`` is another's is left out and counted); bad lines are skipped with their line number
and reason, never the whole file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dataclasses import dataclass, field

from adapters import prompts
from adapters.evidence_reading import MAX_ANSWER_CHARS, LabelledQuestion
from adapters.example import DatasetError, Example, example_id
from indexing.corpus import normalise_domain
from indexing.jsonl import numbered_lines, parse_json_line

MAX_QUESTION_CHARS = 2000


@dataclass
class UserFile:
    examples: list[Example] = field(default_factory=list)  # conversations, ready to train on
    questions: list[LabelledQuestion] = field(default_factory=list)  # labelled questions, to be given evidence
    skipped: list[str] = field(default_factory=list)  # "<file>:<line>: <reason>"
    other_domains: int = 0  # labelled questions of another domain (a multi-domain questions file), left out


def read_user_examples(domain: str, path: Path) -> UserFile:
    """Conversations and labelled questions from a JSONL file; bad lines are skipped with their
    line number and reason."""
    read = UserFile()
    examples, skipped = read.examples, read.skipped
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    with handle:
        for number, line in numbered_lines(handle.read()):
            try:
                row = parse_json_line(line)
                if isinstance(row, dict) and "question" in row:
                    question = labelled_question(row, f"{path.name}:{number}")
                    if row.get("domain") and normalise_domain(str(row["domain"])) != domain:
                        read.other_domains += 1
                    else:
                        read.questions.append(question)
                    continue
                messages = _user_messages(domain, row)
            except (ValueError, TypeError, KeyError) as exc:  # BadJsonLine is a ValueError
                skipped.append(f"{path.name}:{number}: {exc}")
                continue
            prompt = json.dumps(messages[:-1], sort_keys=True)
            group = "user:" + hashlib.sha256(prompt.encode()).hexdigest()[:16]
            examples.append(Example(example_id(group, "user"), "user", group, messages, messages[-1]["content"], "text"))
    return read


def labelled_question(row: dict, where: str) -> LabelledQuestion:
    """A ``{"question", "answers", "evidence_doc_ids"}`` row (``id`` and ``answer_type`` optional)."""
    question, answers = row.get("question"), row.get("answers")
    if not isinstance(question, str) or not question.strip() or len(question) > MAX_QUESTION_CHARS:
        raise ValueError(f"'question' must be a non-empty string of at most {MAX_QUESTION_CHARS} characters")
    if not isinstance(answers, list) or not answers or not all(
            isinstance(a, str) and a.strip() and len(a) <= MAX_ANSWER_CHARS for a in answers):
        raise ValueError(f"'answers' must be a non-empty list of strings of at most {MAX_ANSWER_CHARS} characters")
    documents = row.get("evidence_doc_ids", [])
    if not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
        raise ValueError("'evidence_doc_ids' must be a list of document ids")
    return LabelledQuestion(str(row.get("id") or where), question.strip(), tuple(a.strip() for a in answers),
                            tuple(documents), str(row.get("answer_type") or ""))


def _user_messages(domain: str, row: object) -> list[dict[str, str]]:
    if not isinstance(row, dict):
        raise ValueError("each line must be a JSON object")
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError("'messages' must be a non-empty list")
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant") \
                    or not isinstance(message.get("content"), str) or not message["content"].strip():
                raise ValueError("each message needs a role (system, user, assistant) and non-empty content")
        if messages[-1]["role"] != "assistant" or not any(m["role"] == "user" for m in messages):
            raise ValueError("a conversation must have a user turn and end with the assistant's answer")
        if messages[0]["role"] != "system":
            messages = [{"role": "system", "content": prompts.system_message(domain)}, *messages]
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    prompt, completion = row.get("prompt"), row.get("completion")
    if not isinstance(prompt, str) or not isinstance(completion, str) or not prompt.strip() or not completion.strip():
        raise ValueError("expected 'messages', or non-empty 'prompt' and 'completion' strings")
    return prompts.chat_messages(domain, prompt.strip(), answer=completion.strip())
