"""The chat pipeline the UI and the CLI call: route, retrieve, prompt, generate, explain.

``ChatPipeline.respond(message, history)`` returns an :class:`Answer`; ``stream`` yields the
answer's text pieces as they are generated and finally the Answer itself. Nothing in here
raises to the caller: a dead graph server gives a passages-only answer marked ``degraded``, a
domain without an index is named in ``notes``, and an unexpected failure becomes an Answer
with ``error`` set and a plain-language text (the details go to the log).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from assistant.answering.adapter_answers import LEAD
from assistant.answering.answer_writer import AnswerOptions, AnswerWriter
from assistant.answering.attribution import AnswerSentence
from assistant.answering.bridge import Bridge, Bridged, follow
from assistant.answering.grounded_stream import GroundedStream
from assistant.answering.retrieval import Passage, RankedFact, Retriever
from assistant.answering.router import Route, Router
from assistant.serving.adapter_pool import AdapterLoadError
from assistant.serving.engine_base import EngineBase
from assistant.serving.generation import EngineBusy, EngineStopped, GenerationFailed, RequestRejected
from assistant.serving.remote_engine import serving_engine
from assistant.settings import Settings
from indexing.embedding import CachedEncoder, Embedder, get_embedder
from indexing.graph_store import GraphStore
from indexing.graph_walk import WalkNode
from indexing.vector_store import VectorStore

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 4000
# A question may take this share of the prompt budget (context_tokens); the rest is for the system
# line and the evidence. Characters alone do not bound tokens: 4,000 emoji are 12,000 tokens.
QUESTION_SHARE_OF_CONTEXT = 2 / 3
_LEAD_NOTES = {"facts": "graph facts", "label": "the label its findings give, with the finding",
               "table": "table cells", "quote": "a quoted evidence sentence",
               "bridge": "two hops: the entity the first evidence names, then what a second search found about it"}
BUSY_TEXT = "The assistant is busy right now; please try again in a moment."


@dataclass
class Answer:
    text: str
    domain: str | None = None  # the domain whose adapter and evidence were used; None: all / base
    confidence: float = 0.0
    route: Route | None = None
    adapter: str | None = None  # the adapter that generated the text; None: the base model
    answered_by: str = ""  # "adapter" (its own answer was kept) or "lead" (overruled by the evidence's lead)
    # when the domain's adapter was asked first (adapter_answers); "" otherwise
    facts: list[RankedFact] = field(default_factory=list)  # numbered 1..len(facts) in the prompt
    passages: list[Passage] = field(default_factory=list)  # numbered after the facts
    walk: list[WalkNode] = field(default_factory=list)  # the graph walk's top entities and passages
    bridge: Bridge | None = None  # a multi-hop question's second search (assistant/answering/bridge.py), when one was made
    timings: dict[str, float] = field(default_factory=dict)  # seconds: route, retrieve, prompt, generate, and
    # first_token (from the request, as the user waits)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds of the request's own thread per stage:
    # route, retrieve (with a bridge's second search), prompt, opening (the lead written before generating),
    # stream (attribution while streaming, and what the caller does with each piece), finish; a stage that
    # resumed on another thread is left out. The model's work is on the engine's thread and not here.
    notes: list[str] = field(default_factory=list)
    degraded: bool = False  # the knowledge graph could not be used
    abstained: bool = False  # the router did not pick a domain
    sentences: list[AnswerSentence] = field(default_factory=list)  # the text's sentences, cited and scored
    stopped: str = ""  # why generation ended: end, stop_when (the sentence limit), max_tokens, timeout,
    # cancelled, stop (a caller's stop string), facts (graph facts said everything; nothing was generated), or
    # evidence (a yes/no label with its finding, table cells or a quote said everything; nothing was generated)
    prompt: list[dict] = field(default_factory=list)  # the messages the model was given
    prompt_tokens: int = 0
    new_tokens: int = 0
    error: str | None = None
    refused: str = ""  # why no generation started: "busy" (the engine's queue was full: try again), or
    # "adapter" (the adapter asked for is not loaded, e.g. unloaded a moment ago)

    def evidence_number(self, item: RankedFact | Passage) -> int:
        """The [n] the prompt (and so the answer's citations) used for a fact or passage."""
        if isinstance(item, RankedFact):
            return self.facts.index(item) + 1
        return len(self.facts) + self.passages.index(item) + 1


class ChatPipeline:
    def __init__(self, settings: Settings, router: Router, retriever: Retriever, engine: EngineBase):
        self.settings, self.router, self.retriever, self.engine = settings, router, retriever, engine
        # One cache of sentence vectors for every answer: the quote picker, attribution and the
        # stream's sentence-by-sentence attribution embed the same evidence sentences.
        self.writer = AnswerWriter(settings, engine, CachedEncoder(retriever.embedder))

    @classmethod
    def create(cls, settings: Settings, graph: GraphStore | None, *, embedder: Embedder | None = None,
               engine: EngineBase | None = None) -> "ChatPipeline":
        """Everything from settings: the passage indexes, the embedder, the serving engine (the
        base model with every registered adapter), and the graph (None: passages only)."""
        embedder = embedder or get_embedder(settings.embedder)
        vectors = VectorStore(settings.domains_dir, settings.hnsw_ef_search)
        engine = engine or serving_engine(settings)
        return cls(settings, Router(settings, vectors, embedder), Retriever(settings, vectors, embedder, graph), engine)

    def respond(self, message: str, history: Sequence[dict] = (), domain: str | None = None) -> Answer:
        answer = None
        for item in self.stream(message, history, domain):
            if isinstance(item, Answer):
                answer = item
        assert answer is not None
        return answer

    def stream(self, message: str, history: Sequence[dict] = (), domain: str | None = None,
               cancel: threading.Event | None = None, options: AnswerOptions = AnswerOptions(),
               grounded_pieces: bool = False) -> Iterator[str | Answer]:
        """Text pieces as they are generated, then the complete Answer (always last, always once).
        With ``grounded_pieces`` the pieces are the attributed sentences as each ends, joining into
        the Answer's text (assistant/answering/grounded_stream.py); else the raw draft, which attribution
        may then change."""
        answer = Answer(text="")
        try:
            question = _encodable(message or "").strip()
            if not question:
                answer.text, answer.error = "Please type a question.", "empty question"
            elif len(question) > MAX_QUESTION_CHARS:
                answer.text = f"That message is too long ({len(question)} characters; the limit is {MAX_QUESTION_CHARS})."
                answer.error = "question too long"
            elif (tokens := self.engine.count_tokens(question)) > self._max_question_tokens:
                answer.text = (f"That message is too long ({tokens} tokens; the limit is "
                               f"{self._max_question_tokens}).")
                answer.error = "question too long"
            else:
                turns = recent_turns(history, self.settings.history_max_turns)
                yield from self._answer(question, turns, domain, answer, cancel, options, grounded_pieces)
        except Exception as exc:  # never a stack trace to the user; the log has it
            log.exception("answering %r failed", message[:200] if message else message)
            answer.error = f"internal error ({type(exc).__name__}; the server log has the details)"
            answer.text = (answer.text + "\n\n" if answer.text else "") + \
                "Sorry, something went wrong while answering. The error has been logged."
        yield answer

    @property
    def _max_question_tokens(self) -> int:
        return int(self.settings.context_tokens * QUESTION_SHARE_OF_CONTEXT)

    def _answer(self, question: str, history: list[dict], forced: str | None, answer: Answer,
                cancel: threading.Event | None, options: AnswerOptions, grounded_pieces: bool) -> Iterator[str]:
        clock = started = time.perf_counter()
        cpu = _thread_cpu()
        query = self.router.query_vector(question, history)
        route, domains = self._route(question, history, forced, answer, query)
        answer.timings["route"] = time.perf_counter() - clock
        cpu = _spent(answer, "route", cpu)
        if not domains:
            answer.text = ("No domain has been indexed yet, so there is nothing to answer from. "
                           "Index a corpus first (assistant index --source PATH).")
            answer.error = "no domains"
            return
        clock = time.perf_counter()
        evidence = self.retriever.retrieve(question, domains, query)
        answer.timings["retrieve"] = time.perf_counter() - clock
        answer.notes += evidence.notes
        answer.degraded, answer.walk = evidence.graph_degraded, evidence.walk_nodes
        facts, passages = evidence.facts, evidence.passages
        bridged = self._follow_bridge(question, domains, facts, passages, answer)
        if bridged is not None:
            facts, passages, answer.bridge = bridged.facts, bridged.passages, bridged.bridge
        cpu = _spent(answer, "retrieve", cpu)
        clock = time.perf_counter()
        prompt = self.writer.prompt(question, answer.domain, facts, passages, history)
        answer.facts, answer.passages = facts[:prompt.facts_used], passages[:prompt.passages_used]
        answer.prompt, answer.prompt_tokens = prompt.messages, prompt.tokens
        answer.timings["prompt"] = time.perf_counter() - clock
        cpu = _spent(answer, "prompt", cpu)
        try:  # the domain's active adapter when the engine starts the request (a hot-load may come first)
            draft = self.writer.begin(question, prompt, answer.facts, cancel=cancel,
                                      domain=None if options.base_model else answer.domain,
                                      adapter=options.adapter, max_new_tokens=options.max_new_tokens,
                                      temperature=options.temperature, bridge=answer.bridge)
        except EngineStopped as exc:  # not a wait-and-retry: the engine will not come back by itself
            answer.text = "The assistant's model is not running; please tell the administrator (the app needs a restart)."
            answer.error, answer.refused = f"stopped: {exc}", "busy"
            return
        except EngineBusy as exc:
            answer.text, answer.error, answer.refused = BUSY_TEXT, f"busy: {exc}", "busy"
            return
        except AdapterLoadError as exc:
            answer.text, answer.error, answer.refused = str(exc), str(exc), "adapter"
            return
        except RequestRejected as exc:  # the request itself can never run as asked (HTTP 400)
            answer.text, answer.error, answer.refused = str(exc), str(exc), "invalid"
            return
        cpu = _spent(answer, "opening", cpu)
        pieces = GroundedStream(self.writer, draft, options.stop) if grounded_pieces else draft
        try:
            for piece in pieces:
                if not answer.text:
                    answer.timings["first_token"] = time.perf_counter() - started  # as the user waits for it
                answer.text += piece
                yield piece
        except GenerationFailed as exc:  # the model (or the remote generation server) failed this answer
            log.error("generation failed for %r: %s", question[:200], exc)
            answer.error = f"generation failed: {exc}"
            answer.text = (answer.text + "\n\n" if answer.text else "") + f"Sorry, the answer could not be written: {exc}."
            return
        cpu = _spent(answer, "stream", cpu)
        clock = time.perf_counter()
        written = pieces.answer if grounded_pieces else draft.finish()
        answer.timings["attribute"] = time.perf_counter() - clock  # GroundedStream: attributed while streaming
        _spent(answer, "finish", cpu)
        answer.text, answer.sentences, answer.answered_by = written.text, written.sentences, written.answered_by
        if written.answered_by == LEAD:
            answer.notes.append("the adapter's own answer did not pass the support check; the answer opens "
                                "with what the evidence says instead")
        if written.dropped:
            answer.notes.append(f"{written.dropped} sentence(s) that no evidence supports were left out")
        hit_stop = grounded_pieces and pieces.hit_stop
        result = written.result
        if result is None:
            kind = written.lead.kind if written.lead else "facts"
            answer.stopped = "facts" if kind == "facts" else "evidence"
            answer.notes.append(f"answered from the evidence alone ({_LEAD_NOTES.get(kind, kind)}), without generating")
            return
        answer.adapter = result.adapter
        answer.stopped = "stop" if hit_stop else result.stopped  # the stop string cancelled the rest
        answer.new_tokens = result.new_tokens
        answer.timings.update(generate=result.seconds, queue=result.queued_s, prefill=result.prefill_s,
                              decode=result.decode_s)
        if result.stopped == "timeout":
            answer.notes.append(f"the answer was cut off after {self.settings.generation_timeout_s:.0f} s")
        elif result.stopped == "max_tokens":
            answer.notes.append(f"the answer reached the {result.new_tokens}-token limit (max_new_tokens) and may be cut")

    def _follow_bridge(self, question: str, domains: list[str], facts: list[RankedFact], passages: list[Passage],
                       answer: Answer) -> Bridged | None:
        """A multi-hop question's second search, about the entity its first evidence names
        (assistant/answering/bridge.py); its time counts as retrieval."""
        if not self.settings.follow_bridges or not (facts or passages):
            return None
        clock = time.perf_counter()

        def retrieve(query: str):
            second = self.retriever.retrieve(query, domains)
            answer.notes += [note for note in second.notes if note not in answer.notes]
            answer.degraded = answer.degraded or second.graph_degraded
            return second

        bridged = follow(question, facts, passages, self.writer.lead, retrieve)
        answer.timings["retrieve"] += time.perf_counter() - clock
        return bridged

    def _route(self, question: str, history: list[dict], forced: str | None, answer: Answer,
               query) -> tuple[Route, list[str]]:
        routable = self.router.domains()
        if forced:
            if forced not in routable:
                answer.notes.append(f"domain {forced!r} has no usable index; routing automatically instead")
            else:
                route = Route(forced, 1.0, {forced: 1.0}, 0.0, "chosen by the user")
                answer.route, answer.domain, answer.confidence = route, forced, 1.0
                return route, [forced]
        route = self.router.route(question, history, routable, query)
        answer.route, answer.confidence = route, route.confidence
        if route.abstained:
            answer.abstained = True
            answer.notes.append(f"no domain matched clearly ({route.reason}); answered with the base model "
                                f"from all domains")
            return route, routable
        answer.domain = route.domain
        return route, [route.domain]


def recent_turns(history: Sequence[dict], keep: int) -> list[dict]:
    """The last ``keep`` turns of a history a client sent, as user/assistant text, each cut to the
    question limit. The history is the client's word, unchecked: without the cut, a long one is
    re-tokenised (and partly embedded) at every turn; turns of other roles (a "system" turn) or
    without text are dropped rather than put into the prompt."""
    turns = []
    for turn in list(history)[-keep:] if keep > 0 else []:
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
            continue
        content = turn.get("content")
        if isinstance(content, str) and content.strip():
            turns.append({"role": turn["role"], "content": _encodable(content)[:MAX_QUESTION_CHARS]})
    return turns


def _encodable(text: str) -> str:
    """The text with lone surrogates (JSON can carry "\\ud800"; no tokenizer takes them) as "?"."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _thread_cpu() -> tuple[int, float]:
    return threading.get_ident(), time.thread_time()


def _spent(answer: Answer, stage: str, since: tuple[int, float]) -> tuple[int, float]:
    """Add this thread's CPU seconds since ``since`` (a :func:`_thread_cpu` reading) to the
    answer's ``stage``; returns now's reading. A stage that resumed on another thread is not
    counted: Gradio may run each step of a streaming handler on any of its workers."""
    now = _thread_cpu()
    if now[0] == since[0]:
        answer.cpu[stage] = answer.cpu.get(stage, 0.0) + now[1] - since[1]
    return now
