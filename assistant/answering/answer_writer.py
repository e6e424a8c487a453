"""Writing one answer from its evidence: the part of answering that the chat, ``/ask`` and
``assistant eval`` share, so the evaluation scores exactly what users get.

1. The prompt: the evidence numbered (facts first) within the budget, the question, at most
   ``answer_max_sentences`` sentences asked for.
2. The lead, written from the evidence before the model runs; the model continues it, and is
   not called at all when the lead fills every sentence. The first that applies:
   - a multi-hop question whose first evidence names the entity it goes through (the caller
     followed the bridge, assistant/answering/bridge.py): the first hop's sentence and the second's, cited;
   - graph facts (assistant/answering/fact_answers.py): a fact that answers the question, cited;
   - a yes/no question: the label the evidence's findings give and the sentence it rests on
     (assistant/answering/yes_no.py, ``evidence_labels``);
   - a question about a table's cells: the cells, or the value computed from them, with the
     cells shown (assistant/answering/table_answers.py, ``table_answers``);
   - the evidence sentence most likely to answer, quoted (assistant/answering/evidence_quotes.py,
     ``answer_quotes``), or nothing when none is close enough.
   Where an adapter serves the domain (``adapter_answers``), the adapter writes its own answer
   first and the lead is used only when that answer's opening fails the support check
   (assistant/answering/adapter_answers.py); ``WrittenAnswer.answered_by`` says which.
3. Generation on the serving engine stops when a sentence beyond the limit begins; a yes/no
   question without a lead (no evidence, or none that is a study's report) starts with the likeliest
   of "Yes", "No", "Maybe".
4. Attribution (assistant/answering/attribution.py): each sentence gets the evidence that supports it
   and a score, citations are corrected, a label contradicted by its own reason is marked, and
   with ``strict_grounding`` unsupported sentences go.

``begin`` submits and returns a :class:`Draft`; iterating it streams the reply's text (the lead
first), ``finish`` waits and returns the :class:`WrittenAnswer`. Several drafts may be in flight
at once (the engine decodes them together).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from adapters import prompts
from adapters.fact_wording import FactLine
from assistant.answering.adapter_answers import ADAPTER, LEAD, opening_holds, opening_of
from assistant.answering.attribution import AnswerSentence, attribute, render
from assistant.answering.bridge import Bridge, chain_lead
from assistant.answering.evidence_quotes import best_quote, holds_answer_type
from assistant.answering.fact_answers import Lead, is_yes_no_question, lead_for
from assistant.answering.retrieval import Passage, RankedFact
from assistant.answering.sentences import SentenceLimit
from assistant.answering.table_answers import table_lead
from assistant.answering.yes_no import label_lead
from assistant.serving.adapter_pool import AdapterLoadError
from assistant.serving.engine_base import EngineBase
from assistant.serving.generation import EngineBusy, EngineStopped, GenerationHandle, GenerationResult, RequestRejected
from assistant.settings import Settings

LABEL_WORDS = ["Yes", "No", "Maybe"]


@dataclass(frozen=True)
class AnswerOptions:
    """What a caller may ask of one answer's generation (the OpenAI-compatible API's request)."""
    adapter: str | None = None  # exactly this adapter (None: the domain's active one) ...
    base_model: bool = False  # ... or the base model, without one
    max_new_tokens: int | None = None  # None: the max_new_tokens setting
    temperature: float = 0.0  # 0: greedy
    stop: tuple[str, ...] = ()  # the answer ends where the first of these begins (GroundedStream)


@dataclass
class WrittenAnswer:
    text: str  # what is shown: the attributed sentences
    sentences: list[AnswerSentence]  # as shown (strict grounding applied when on)
    all_sentences: list[AnswerSentence]  # every sentence, supported or not
    draft: str  # the lead plus what the model generated, before attribution
    lead: Lead | None
    result: GenerationResult | None  # None: the lead said everything, nothing was generated
    evidence: list[prompts.EvidenceItem] = field(default_factory=list)
    answered_by: str = ""  # ADAPTER or LEAD when the adapter was asked first (adapter_answers.py)

    @property
    def dropped(self) -> int:
        """Sentences left out for want of support."""
        return len(self.all_sentences) - len(self.sentences)

    def text_with(self, strict: bool) -> str:
        kept = [s for s in self.all_sentences if s.supported] if strict else self.all_sentences
        return render(kept) if self.all_sentences else self.text


@dataclass
class Draft:
    """A submitted answer: iterate for its text as it is written, then :meth:`finish`."""
    writer: "AnswerWriter"
    question: str
    prompt: prompts.Prompt
    lead: Lead | None
    handle: GenerationHandle | None
    grounded: bool
    # The adapter's own answer is in ``handle``, kept only when its opening holds
    # (assistant/answering/adapter_answers.py); ``submit(prefix)`` starts the lead's continuation.
    adapter_first: bool = False
    submit: Callable[[str], GenerationHandle] | None = None
    answered_by: str = ""  # ADAPTER or LEAD once an adapter_first draft has decided
    _streamed: bool = False

    def __iter__(self) -> Iterator[str]:
        self._streamed = True
        if self.adapter_first:
            yield from self._adapter_or_lead()
        else:
            yield from self._lead_then_model()

    def _lead_then_model(self) -> Iterator[str]:
        ended = False
        try:
            if self.lead:
                yield self.lead.text
            if self.handle is not None:
                yield from self.handle
            ended = True
        finally:
            if not ended and self.handle is not None:  # closed while the lead was out (a closed tab)
                self.handle.cancel()

    def _adapter_or_lead(self) -> Iterator[str]:
        pieces = iter(self.handle)
        finished = False
        try:
            text, opening = "", None
            for piece in pieces:
                text += piece
                opening = opening_of(text, ended=False)
                if opening is not None:
                    break
            if opening is None:
                opening = opening_of(text, ended=True)
            if self.lead is None or self.writer.holds(self.question, opening, self.prompt.evidence):
                self.answered_by, self.lead = ADAPTER, None
                yield text
                yield from pieces
                finished = True
                return
        finally:
            if not finished:  # overruled, or the caller stopped reading: the adapter's generation ends
                pieces.close()
        self.answered_by, self.handle = LEAD, self._continue_lead()
        yield from self._lead_then_model()

    def _continue_lead(self) -> GenerationHandle | None:
        """The model's continuation of the lead when it leaves room (None: the lead is the answer)."""
        if self.lead is None or self.submit is None or self.writer.limit.full(self.lead.text):
            return None
        try:
            return self.submit(self.lead.text)
        except (EngineBusy, EngineStopped, AdapterLoadError, RequestRejected):
            return None  # the lead alone is still a whole, cited answer

    def finish(self) -> WrittenAnswer:
        if not self._streamed:
            for _ in self:
                pass
        generated = self.handle.result.text if self.handle is not None else ""
        draft = (self.lead.text if self.lead else "") + generated
        written = self.writer.attribute(self.question, draft, self.prompt.evidence, self.lead,
                                        self.handle.result if self.handle is not None else None, self.grounded)
        written.answered_by = self.answered_by
        return written


class AnswerWriter:
    def __init__(self, settings: Settings, engine: EngineBase, encode: Callable[[list[str]], object]):
        self.settings, self.engine, self.encode = settings, engine, encode
        self.limit = SentenceLimit(settings.answer_max_sentences)

    def prompt(self, question: str, domain: str | None, facts: Sequence[RankedFact], passages: Sequence[Passage],
               history: Sequence[dict] = ()) -> prompts.Prompt:
        return prompts.build_prompt(self.engine.count_tokens, domain, question, [f.text for f in facts],
                                    [(p.title, p.text) for p in passages], history, self.settings.context_tokens,
                                    self.settings.history_tokens, self.settings.answer_max_sentences)

    def begin(self, question: str, prompt: prompts.Prompt, facts: Sequence[RankedFact], *,
              adapter: str | None = None, domain: str | None = None, cancel: threading.Event | None = None,
              max_new_tokens: int | None = None, temperature: float = 0.0, bridge: Bridge | None = None) -> Draft:
        """Submit the answer to ``prompt`` (``facts``: the RankedFacts numbered first in it).
        ``adapter`` or ``domain`` choose the model as in Engine.submit; ``bridge``: the second hop
        the caller followed for a multi-hop question (assistant/answering/bridge.py). Raises EngineBusy."""
        grounded = bool(prompt.evidence)
        lead = self.lead(question, facts[:prompt.facts_used], prompt.evidence, bridge) if grounded else None
        adapter_first = grounded and self.settings.adapter_answers and self._adapter_serves(adapter, domain)

        def submit(prefix: str, choices: tuple[int, ...] = ()) -> GenerationHandle:
            return self.engine.submit(prompt.messages, adapter=adapter, domain=domain, cancel=cancel,
                                      max_new_tokens=max_new_tokens or self.settings.max_new_tokens,
                                      timeout_s=self.settings.generation_timeout_s, answer_prefix=prefix,
                                      stop_when=self.limit, first_token_choices=choices, temperature=temperature)

        labels = self.engine.token_ids(LABEL_WORDS) if is_yes_no_question(question) else ()
        handle = None
        if adapter_first:
            handle = submit("", labels)
        elif lead is None or not self.limit.full(lead.text):  # room for the model to add a sentence
            handle = submit(lead.text if lead else "", labels if lead is None else ())
        return Draft(self, question, prompt, lead, handle, grounded, adapter_first, submit)

    def _adapter_serves(self, adapter: str | None, domain: str | None) -> bool:
        """Whether the answer would be an adapter's: one asked for, or the domain's active one."""
        return adapter is not None or self.engine.pool.adapter_for(domain) is not None

    def holds(self, question: str, opening: str, evidence: Sequence[prompts.EvidenceItem]) -> bool:
        return opening_holds(opening, evidence, self.encode, question, self.settings.support_threshold)

    def lead(self, question: str, facts: Sequence[RankedFact], evidence: Sequence[prompts.EvidenceItem],
             bridge: Bridge | None = None) -> Lead | None:
        return opening(self.settings, self.encode, question, facts, evidence, bridge)

    def attribute(self, question: str, draft: str, evidence: Sequence[prompts.EvidenceItem], lead: Lead | None,
                  result: GenerationResult | None, grounded: bool) -> WrittenAnswer:
        everything = attribute(draft, evidence, self.encode, question, threshold=self.settings.support_threshold,
                               max_sentences=self.settings.answer_max_sentences,
                               computed=lead.computed if lead else ())
        strict = grounded and self.settings.strict_grounding
        shown = [s for s in everything if s.supported] if strict else everything
        text = render(shown) if everything else (draft.strip() or prompts.NO_ANSWER)
        return WrittenAnswer(text, shown, everything, draft, lead, result, list(evidence))


def opening(settings: Settings, encode: Callable[[list[str]], object], question: str, facts: Sequence[RankedFact],
            evidence: Sequence[prompts.EvidenceItem], bridge: Bridge | None = None) -> Lead | None:
    """Both hops of a followed bridge; else the facts that answer the question; else for a
    yes/no question its label from the evidence; else the table cells it asks about; else the
    evidence sentence most likely to answer it (see the module's docstring). No model call, so
    the evaluation's retrieval stage can ask for it before any model is loaded."""
    if bridge is not None:
        chained = chain_lead(bridge, question, evidence, encode)
        if chained is not None:
            return chained
    lines = [FactLine(i + 1, f.fact.head, f.fact.relation, f.fact.tail) for i, f in enumerate(facts)]
    found = lead_for(question, lines, settings.answer_max_sentences) if settings.facts_first else None
    if found is not None and holds_answer_type(question, found.text):
        return found
    found = None  # a fact about the question's words that lacks the number, year or cause asked for
    if is_yes_no_question(question):
        return label_lead(question, evidence, settings.answer_max_sentences) if settings.evidence_labels else None
    if settings.table_answers:
        found = table_lead(question, evidence)
    if found is None and settings.answer_quotes:
        quote = best_quote(question, evidence, encode)
        if quote is not None:
            found = Lead(quote.text, (quote.number,), None, kind="quote")
    return found
