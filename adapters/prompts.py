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

DEFAULT_MAX_SENTENCES = 2
_SYSTEM = ("You are a careful {domain} assistant. Answer in at most {sentences}. When numbered evidence is given, "
           "answer only from it, end each sentence with the numbers of the evidence it uses like [1], and say \""
           + NO_ANSWER + "\" if it does not answer. Start the answer to a yes/no question with Yes, No or Maybe.")
_GENERAL = "general knowledge"
# Tried where a run of spaces begins, not again from each space in it (that was quadratic).
_CITATION = re.compile(r"(?<!\s)\s*\[\d+\]")


@dataclass(frozen=True)
class EvidenceItem:
    number: int
    kind: Literal["fact", "passage"]
    text: str
    title: str = ""


def system_message(domain: str | None, max_sentences: int = DEFAULT_MAX_SENTENCES) -> str:
    sentences = "one short sentence" if max_sentences == 1 else f"{max_sentences} short sentences"
    return _SYSTEM.format(domain=domain or _GENERAL, sentences=sentences)


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


# --- fitting a conversation into the model's budget --------------------------------------------

MESSAGE_OVERHEAD_TOKENS = 5  # <|im_start|>role\n ... <|im_end|>\n
MIN_PASSAGE_TOKENS = 32  # a passage cut shorter than this is left out instead


@dataclass
class Prompt:
    messages: list[dict[str, str]]
    evidence: list[EvidenceItem]
    facts_used: int
    passages_used: int
    history_messages: int
    tokens: int


def build_prompt(count_tokens, domain: str | None, question: str, facts: Sequence[str],
                 passages: Sequence[tuple[str, str]], history: Sequence[dict], budget: int,
                 history_budget: int, max_sentences: int = DEFAULT_MAX_SENTENCES) -> Prompt:
    """System line, as many facts then passages as fit, the most recent turns that fit in
    ``history_budget``, and the question, all within ``budget`` tokens (``count_tokens`` is the
    serving model's tokenizer). Facts come first: they are short and the most precise evidence."""
    def cost(text: str) -> int:
        return count_tokens(text) + MESSAGE_OVERHEAD_TOKENS

    turns = [{"role": m["role"], "content": m["content"]} for m in history
             if m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str) and m["content"].strip()]
    system = system_message(domain, max_sentences)
    fixed = cost(system) + cost(f"Facts:\nPassages:\n\nQuestion: {question}") + MESSAGE_OVERHEAD_TOKENS
    kept_turns: list[dict[str, str]] = []
    spent_history = 0
    for turn in reversed(turns):
        size = cost(turn["content"])
        if spent_history + size > min(history_budget, budget - fixed):
            break
        kept_turns.insert(0, turn)
        spent_history += size
    if kept_turns and kept_turns[0]["role"] == "assistant":  # never start mid-exchange
        spent_history -= cost(kept_turns.pop(0)["content"])
    room = budget - fixed - spent_history
    chosen_facts: list[str] = []
    for fact in facts:
        size = count_tokens(fact) + 4  # "[n] " and the newline
        if size > room:
            break
        chosen_facts.append(fact)
        room -= size
    chosen_passages: list[tuple[str, str]] = []
    for title, text in passages:
        size = count_tokens(f"{title}: {text}") + 4
        if size > room:
            text = _cut_to(count_tokens, text, room - count_tokens(title) - 6)
            if text is None:
                break
            size = count_tokens(f"{title}: {text}") + 4
        chosen_passages.append((title, text))
        room -= size
    evidence = number_evidence(chosen_facts, chosen_passages)
    messages = [{"role": "system", "content": system}, *kept_turns,
                {"role": "user", "content": user_message(question, evidence)}]
    tokens = sum(cost(m["content"]) for m in messages) + MESSAGE_OVERHEAD_TOKENS
    return Prompt(messages, evidence, len(chosen_facts), len(chosen_passages), len(kept_turns), tokens)


def _cut_to(count_tokens, text: str, limit: int) -> str | None:
    """The longest word prefix of ``text`` within ``limit`` tokens, marked with an ellipsis."""
    if limit < MIN_PASSAGE_TOKENS:
        return None
    words = text.split()
    low, high = 0, len(words)
    while low < high:  # binary search on the number of words
        middle = (low + high + 1) // 2
        if count_tokens(" ".join(words[:middle]) + " ...") <= limit:
            low = middle
        else:
            high = middle - 1
    return " ".join(words[:low]) + " ..." if low else None
