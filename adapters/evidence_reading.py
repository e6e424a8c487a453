"""Evidence-reading examples: the product's own prompt for a question, with the answer a careful
reader writes from it (the RAFT recipe: Zhang et al., 2024).

For each question with a known answer and the documents that hold it:

- the prompt is what the chat would send: the facts and passages retrieval returns for the
  question, numbered, within a token budget (``prompts.build_prompt``). The other retrieved items
  are the distractors: they come from the same domain and were ranked close to the question, so
  they are the hard ones a served answer has to read past;
- when retrieval missed every gold document, the gold document's closest chunk takes the last
  passage's place (an example must be answerable to teach answering);
- in ``no_gold_percent`` of the examples (chosen by a hash of the question, so fixed) every item
  from a gold document is taken out, and the target is ``prompts.NO_ANSWER``: the adapter learns
  that a near-miss passage is not an answer;
- otherwise the target quotes the evidence sentence the answer rests on, with its number (a
  question whose answer no gold sentence states, such as a value computed from a table, gets no
  example), and then gives the short answer: "Yes. <sentence> [2]." for a yes/no/maybe question (the label
  first, as the product's system line asks), "<sentence> [2]. Answer: <answer> [2]." otherwise
  (the short answer alone when the quote would repeat it word for word).

The questions come from the corpus (the fact questions of adapters/dataset.py) or from a user's
labelled file. Retrieval lives above this layer: the app passes an :class:`EvidenceReader`.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Sequence

from tqdm import tqdm

from adapters import prompts
from adapters.example import AnswerType, Example, example_id
from indexing.chunking import split_sentences
from indexing.vector_store import ChunkRow

READING_KIND = "reading"
LABELS = {"yes": "Yes", "no": "No", "maybe": "Maybe"}
MAX_ANSWER_CHARS = 300  # a longer "short answer" is a passage, not an answer
_WORD = re.compile(r"[a-z0-9]+")
# Words that say nothing about which sentence answers ("what", "the", "did"): not counted as overlap.
_QUESTION_WORDS = frozenset("""a an and are as at be by did do does for from has have how in is it its of on or the
that to was were what when where which who whom why with""".split())


@dataclass(frozen=True)
class FoundEvidence:
    """What the product's retrieval returns for a question, in its prompt order."""
    facts: Sequence[tuple[str, tuple[str, ...]]]  # (fact text, the documents it was read in)
    passages: Sequence[ChunkRow]


@dataclass(frozen=True)
class EvidenceReader:
    """What the app lends the dataset builder: its retrieval, its model's token counter and the
    prompt budget of one example (the training window less room for the answer)."""
    find: Callable[[str], FoundEvidence]
    count_tokens: Callable[[str], int]
    budget: int
    no_gold_percent: int = 20
    # The app's choice of the sentence a yes/no/maybe answer gives as its reason: (question, gold
    # label, the gold evidence items) -> (sentence, item number), or None to fall back on word overlap.
    label_reason: Callable[[str, str, Sequence[prompts.EvidenceItem]], tuple[str, int] | None] | None = None


@dataclass(frozen=True)
class LabelledQuestion:
    """A question with its gold answers and the documents that hold them (the eval format)."""
    id: str
    question: str
    answers: tuple[str, ...]
    evidence_doc_ids: tuple[str, ...]
    answer_type: str = ""

    @property
    def group(self) -> str:
        return "question:" + hashlib.sha256(self.question.strip().lower().encode()).hexdigest()[:16]

    @property
    def label(self) -> str | None:
        """"Yes", "No" or "Maybe" when the gold answer is one of those words."""
        return LABELS.get(self.answers[0].strip().lower().rstrip(".")) if self.answers else None


def reading_examples(domain: str, questions: Sequence[LabelledQuestion], reader: EvidenceReader,
                     rows: Sequence[ChunkRow], progress: bool = True) -> tuple[list[Example], int]:
    """Each question's evidence-reading example (``rows``: the domain's chunks, where a gold
    chunk retrieval missed is found); returns the examples and how many questions had none."""
    chunks_by_doc: dict[str, list[ChunkRow]] = defaultdict(list)
    for row in rows:
        chunks_by_doc[row.doc_id].append(row)
    examples = []
    for question in tqdm(questions, desc=f"evidence-reading {domain}", unit="question", disable=not progress,
                         leave=False):
        example = reading_example(domain, question, reader, chunks_by_doc)
        if example is not None:
            examples.append(example)
    return examples, len(questions) - len(examples)


def closed_book_example(domain: str, question: LabelledQuestion) -> Example:
    """A labelled question asked without evidence (when no retrieval is at hand)."""
    answer = f"{question.label}." if question.label else question.answers[0]
    return Example(example_id(question.group, "user"), "user", question.group,
                   prompts.chat_messages(domain, question.question, answer=answer), question.answers[0],
                   "yesno" if question.label else "span")


def reading_example(domain: str, question: LabelledQuestion, reader: EvidenceReader,
                    chunks_by_doc: dict[str, list[ChunkRow]]) -> Example | None:
    """The question's evidence-reading example, or None when no evidence can be put together
    (no gold chunk known and none retrieved, or nothing left once the gold is taken out)."""
    found = reader.find(question.question)
    gold = set(question.evidence_doc_ids)
    facts = [(text, tuple(docs)) for text, docs in found.facts]
    passages = list(found.passages)
    without_gold = _stable_int(question.group + "|no-gold") % 100 < reader.no_gold_percent
    if without_gold:
        facts = [(text, docs) for text, docs in facts if not gold & set(docs)]
        passages = [row for row in passages if row.doc_id not in gold]
        if not facts and not passages:
            return None
    prompt = _fit(domain, question, reader, facts, passages)
    if not without_gold and not _holds_gold(prompt, facts, passages, gold):
        # Retrieval missed the gold, or it fell outside the budget: it takes the last passage's place.
        gold_row = next((row for row in passages if row.doc_id in gold), None) or \
            _closest_gold_chunk(question, chunks_by_doc)
        if gold_row is None:
            return None
        kept = [row for row in passages[:prompt.passages_used] if row.doc_id not in gold]
        for keep in range(max(prompt.passages_used, 1) - 1, -1, -1):  # fewer distractors until the gold fits
            passages = [*kept[:keep], gold_row]
            prompt = _fit(domain, question, reader, facts, passages)
            if _holds_gold(prompt, facts, passages, gold):
                break
        else:
            return None
    if without_gold:
        target, answer = prompts.NO_ANSWER, prompts.NO_ANSWER
    else:
        quoted = _supporting_quote(question, prompt.evidence, _sources(prompt, facts, passages), gold,
                                   reader.label_reason)
        if quoted is None:  # the budget cut the gold away, or no sentence states the answer
            return None
        target, answer = _target(question, *quoted), question.answers[0]
    messages = [*prompt.messages, {"role": "assistant", "content": target}]
    answer_type: AnswerType = "yesno" if question.label else "span"
    gold_chunks = [] if without_gold else [row.chunk_id for row in passages[:prompt.passages_used] if row.doc_id in gold]
    return Example(example_id(question.group, READING_KIND), READING_KIND, question.group, messages, answer,
                   answer_type, gold_chunks)


def _fit(domain: str, question: LabelledQuestion, reader: EvidenceReader,
         facts: Sequence[tuple[str, tuple[str, ...]]], passages: Sequence[ChunkRow]) -> prompts.Prompt:
    return prompts.build_prompt(reader.count_tokens, domain, question.question, [text for text, _ in facts],
                                [(row.title, row.text) for row in passages], (), reader.budget, 0)


def _sources(prompt: prompts.Prompt, facts: Sequence[tuple[str, tuple[str, ...]]],
             passages: Sequence[ChunkRow]) -> list[tuple[str, ...]]:
    """The documents behind each numbered evidence item of ``prompt``."""
    return [docs for _, docs in facts[:prompt.facts_used]] + [(row.doc_id,) for row in passages[:prompt.passages_used]]


def _holds_gold(prompt: prompts.Prompt, facts, passages, gold: set[str]) -> bool:
    return any(gold & set(docs) for docs in _sources(prompt, facts, passages))


def _target(question: LabelledQuestion, sentence: str, number: int) -> str:
    quote = prompts.cite(sentence.strip(), number)
    if question.label:
        return f"{question.label}. {quote}"
    answer = question.answers[0].strip()
    if _words(answer) == _words(sentence):
        return quote
    return f"{quote} Answer: {prompts.cite(answer, number)}"


def _supporting_quote(question: LabelledQuestion, evidence: Sequence[prompts.EvidenceItem],
                      sources: Sequence[tuple[str, ...]], gold: set[str], label_reason=None) -> tuple[str, int] | None:
    """The sentence of a gold item the answer rests on, with its evidence number: for a label,
    the app's reason for it (``label_reason``) when it has one, else the sentence sharing most
    words with the question; for any other answer, a sentence holding its words in order (a
    passage's before a fact's), or None: a computed answer ("-13.36" from a table's cells) has no
    sentence to quote, and teaching the model to write it anyway would teach it to invent numbers."""
    items = [item for item, docs in zip(evidence, sources) if gold & set(docs)]
    if not items:
        return None
    if question.label and label_reason is not None:
        found = label_reason(question.question, question.label, items)
        if found is not None:
            return found
    ordered = sorted(items, key=lambda item: item.kind != "passage")
    candidates = [(sentence, item.number) for item in ordered for sentence in (split_sentences(item.text) or [item.text])]
    if not question.label:  # an answer the evidence does not state (computed, or paraphrased) is not taught
        for answer in question.answers:
            wanted = " ".join(_WORD.findall(answer.lower()))
            holding = [c for c in candidates if wanted and f" {wanted} " in f" {' '.join(_WORD.findall(c[0].lower()))} "]
            if holding:
                return holding[0]
        return None
    asked = _content(question.question)
    return max(candidates, key=lambda c: (len(asked & _content(c[0])), -abs(len(c[0]) - 160)))


def _closest_gold_chunk(question: LabelledQuestion, chunks_by_doc: dict[str, list[ChunkRow]]) -> ChunkRow | None:
    rows = [row for doc in question.evidence_doc_ids for row in chunks_by_doc.get(doc, [])]
    if not rows:
        return None
    asked = _content(question.question + " " + " ".join(question.answers))
    return max(rows, key=lambda row: len(asked & _content(row.text)))


def _content(text: str) -> set[str]:
    return {word[:6] for word in _WORD.findall(text.lower()) if word not in _QUESTION_WORDS}


def _words(text: str) -> list[str]:
    return _WORD.findall(prompts.strip_citations(text).lower())


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
