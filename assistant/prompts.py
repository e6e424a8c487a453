"""Every prompt the assistant and its adapters see, in one place.

The adapters are trained on exactly the messages the chat pipeline sends (a system line naming
the domain, numbered evidence, the question), so what an adapter learns about using evidence
and citing it carries over to serving unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Sequence

NO_ANSWER = "The evidence does not answer this."
YES, NO = "Yes.", "No."

_SYSTEM = ("You are a careful {domain} assistant. Answer briefly. When numbered evidence is given, answer "
           "from it, cite the numbers you used like [1], and say \"" + NO_ANSWER + "\" if it does not answer.")
_GENERAL = "general knowledge"
_CITATION = re.compile(r"\s*\[\d+\]")


@dataclass(frozen=True)
class EvidenceItem:
    number: int
    kind: Literal["fact", "passage"]
    text: str
    title: str = ""


def system_message(domain: str | None) -> str:
    return _SYSTEM.format(domain=domain or _GENERAL)


def number_evidence(facts: Sequence[str], passages: Sequence[tuple[str, str]]) -> list[EvidenceItem]:
    """Facts first, then (title, text) passages, numbered from 1."""
    items = [EvidenceItem(i + 1, "fact", text) for i, text in enumerate(facts)]
    items += [EvidenceItem(len(items) + i + 1, "passage", text, title) for i, (title, text) in enumerate(passages)]
    return items


def format_evidence(items: Sequence[EvidenceItem]) -> str:
    lines: list[str] = []
    facts = [item for item in items if item.kind == "fact"]
    passages = [item for item in items if item.kind == "passage"]
    if facts:
        lines.append("Facts:")
        lines += [f"[{item.number}] {item.text}" for item in facts]
    if passages:
        lines.append("Passages:")
        lines += [f"[{item.number}] {item.title}: {item.text}" if item.title else f"[{item.number}] {item.text}"
                  for item in passages]
    return "\n".join(lines)


def user_message(question: str, evidence: Sequence[EvidenceItem] = ()) -> str:
    if not evidence:
        return question
    return f"{format_evidence(evidence)}\n\nQuestion: {question}"


def chat_messages(domain: str | None, question: str, evidence: Sequence[EvidenceItem] = (),
                  answer: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_message(domain)},
                {"role": "user", "content": user_message(question, evidence)}]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def cite(answer: str, *numbers: int) -> str:
    """An answer with its citations, the form adapters are taught: ``Warfarin [2].``"""
    marks = "".join(f" [{n}]" for n in numbers)
    return f"{answer.rstrip('.')}{marks}."


def strip_citations(text: str) -> str:
    return _CITATION.sub("", text)
