"""An answer streamed as it will finally read: each sentence is attributed (cited, scored, and
under strict grounding dropped when no evidence supports it) as soon as the next one begins,
and only then sent.

The chat page streams the raw draft and replaces it with the attributed answer at the end; a
client of the OpenAI-compatible API (assistant/web/openai_api.py) cannot take anything back, so it
gets this instead: the pieces join into exactly the final text (:attr:`GroundedStream.answer`),
at the cost of seeing each sentence only once it is whole. Attribution judges every sentence on
its own (attribution.attribute_sentences), so attributing them one by one gives the answer that
attributing the whole draft would.

``stop`` strings (the protocol's ``stop``) end the answer where the first one begins; the
generation behind it is cancelled at once.
"""

from __future__ import annotations

from typing import Iterator, Sequence

from adapters.prompts import NO_ANSWER
from assistant.answering.answer_writer import AnswerWriter, Draft, WrittenAnswer
from assistant.answering.attribution import AnswerSentence, attribute_sentences, is_bare_label
from assistant.answering.sentences import CitationScan, answer_sentences


class GroundedStream:
    """Iterate for the answer's attributed text, piece by piece; then :attr:`answer` holds it."""

    def __init__(self, writer: AnswerWriter, draft: Draft, stop: Sequence[str] = ()):
        self.writer, self.draft, self.stop = writer, draft, [s for s in stop if s]
        self.answer: WrittenAnswer | None = None
        self.hit_stop = False  # a stop string ended the answer
        self._text = ""  # the draft so far: the lead, then what the model generated
        self._attributed: list[AnswerSentence] = []
        self._done = 0  # sentences of the draft attributed so far
        self._shown: list[AnswerSentence] = []

    def __iter__(self) -> Iterator[str]:
        pieces = iter(self.draft)
        try:
            for piece in pieces:
                self._text += piece
                if self._cut_at_stop():
                    break
                yield from self._release(self._complete_sentences())
        finally:
            pieces.close()  # a stop string or a caller that stopped reading: the generation is cancelled
        yield from self._release(answer_sentences(self._text))
        if not self._shown:
            yield NO_ANSWER
        self.answer = self._written()

    def _cut_at_stop(self) -> bool:
        found = [i for i in (self._text.find(s) for s in self.stop) if i >= 0]
        if found:
            self._text, self.hit_stop = self._text[:min(found)], True
        return bool(found)

    def _complete_sentences(self) -> list[str]:
        """The sentences a later one has begun after (so nothing more can join them)."""
        sentences = answer_sentences(self._text)
        complete = len(sentences) - 1
        # What follows a finished sentence before the next one has shown a word: citations,
        # complete or on their way ("[2]", "[2][3", "["), belong to the sentence before them.
        while complete > 0 and CitationScan(sentences[complete]).marks() is not None:
            complete -= 1
        # A bare label ("No.") is judged by the sentence after it (its reason): it waits for it.
        if complete > 0 and is_bare_label(sentences[complete - 1]):
            complete -= 1
        return sentences[:max(complete, 0)]

    def _release(self, sentences: list[str]) -> Iterator[str]:
        limit = self.writer.settings.answer_max_sentences
        new = sentences[self._done:limit]
        if not new:
            return
        self._done += len(new)
        lead = self.draft.lead
        attributed = attribute_sentences(new, self.draft.prompt.evidence, self.writer.encode, self.draft.question,
                                         threshold=self.writer.settings.support_threshold,
                                         computed=lead.computed if lead else ())
        self._attributed += attributed
        strict = self.draft.grounded and self.writer.settings.strict_grounding
        for sentence in attributed:
            if strict and not sentence.supported:
                continue
            yield (" " if self._shown else "") + sentence.text
            self._shown.append(sentence)

    def _written(self) -> WrittenAnswer:
        handle = self.draft.handle
        text = " ".join(s.text for s in self._shown) or NO_ANSWER
        return WrittenAnswer(text, list(self._shown), list(self._attributed), self._text, self.draft.lead,
                             handle.result if handle is not None else None, list(self.draft.prompt.evidence),
                             self.draft.answered_by)
