"""Examples a user brings: a JSONL file of ``{"messages": [...]}`` conversations or
``{"prompt": ..., "completion": ...}`` pairs, put in the training chat format; bad lines are
skipped with their line number and reason, never the whole file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from adapters import prompts
from adapters.example import DatasetError, Example, example_id
from indexing.jsonl import numbered_lines, parse_json_line


def read_user_examples(domain: str, path: Path) -> tuple[list[Example], list[str]]:
    """Examples from a JSONL file of ``{"messages": [...]}`` or ``{"prompt": ..., "completion": ...}``;
    bad lines are skipped with their line number and reason."""
    examples, skipped = [], []
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    with handle:
        for number, line in numbered_lines(handle.read()):
            try:
                messages = _user_messages(domain, parse_json_line(line))
            except (ValueError, TypeError, KeyError) as exc:  # BadJsonLine is a ValueError
                skipped.append(f"{path.name}:{number}: {exc}")
                continue
            prompt = json.dumps(messages[:-1], sort_keys=True)
            group = "user:" + hashlib.sha256(prompt.encode()).hexdigest()[:16]
            examples.append(Example(example_id(group, "user"), "user", group, messages, messages[-1]["content"], "text"))
    return examples, skipped


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
