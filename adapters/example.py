"""One training example (a chat conversation ending in the answer, with its gold short answer
and the chunks it rests on) and how examples are named and compared."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Literal

from adapters import prompts

AnswerType = Literal["span", "yesno", "text"]
_WORD = re.compile(r"[a-z0-9]+")


class DatasetError(ValueError):
    """The dataset cannot be built (no index, unreadable user file); the message says why."""


@dataclass
class Example:
    id: str
    kind: str
    group: str  # examples sharing a group always land in the same split
    messages: list[dict[str, str]]
    answer: str  # the gold short answer evaluation compares with
    answer_type: AnswerType
    evidence: list[str] = field(default_factory=list)  # chunk ids the answer rests on
    split: str = ""

    @property
    def question(self) -> str:
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user").rsplit("Question: ", 1)[-1]

    @property
    def dedup_key(self) -> str:
        return f"{self.kind}|{comparable_words(self.question)}|{comparable_words(self.answer)}"


def example_id(group: str, kind: str) -> str:
    return hashlib.sha256(f"{group}|{kind}".encode()).hexdigest()[:16]


def comparable_words(text: str) -> str:
    return " ".join(_WORD.findall(prompts.strip_citations(text).lower()))
