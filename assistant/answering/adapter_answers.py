"""When a domain's adapter writes the answer itself, and when the extractive lead does instead.

An adapter trained to read evidence (adapters/evidence_reading.py) answers in the product's
form: a label or a quote with its citation, then the short answer. Its answer is kept when its
opening (its first sentence, a "Yes."/"No." label together with its reason) passes the same
support check every shown sentence gets (assistant/answering/attribution.py): supported by the
evidence it cites, no contradiction, a label that its reason gives; and for a yes/no question a
reason that reports something, not the study's aims or methods restated (the support check reads
words, and an aim shares the question's words: on PubMedQA adapters quoted aims as the reason for
"Yes"). Otherwise the generation is
cancelled and the answer is the lead written from the evidence (graph facts, a finding, table
cells or a quote), exactly as without the adapter; an adapter that says the evidence does not
answer is overruled by a lead, since the lead has its own bar for what answers.

Only the opening is checked before anything is shown, so a kept answer streams from its first
sentence on; the later sentences are attributed like any other (and dropped under strict
grounding when unsupported).
"""

from __future__ import annotations

from typing import Sequence

from adapters.prompts import EvidenceItem
from assistant.answering.attribution import attribute_sentences
from assistant.answering.fact_answers import is_yes_no_question
from assistant.answering.sentences import CitationScan, answer_sentences, without_citations
from assistant.answering.yes_no import states_the_question

LABELS = ("yes", "no", "maybe")

ADAPTER, LEAD = "adapter", "lead"  # what wrote an answer whose adapter was asked first


def opening_of(text: str, ended: bool) -> str | None:
    """The draft's first sentence (a bare label with the sentence after it) once it is whole: a
    later sentence has begun, or the generation ``ended``. None while it may still grow."""
    sentences = answer_sentences(text)
    if ended:
        return sentences[0] if sentences else ""
    if len(sentences) >= 2 and CitationScan(sentences[1]).marks() is None:
        return sentences[0]
    return None


def opening_holds(opening: str, evidence: Sequence[EvidenceItem], encode, question: str, threshold: float) -> bool:
    """Whether every claim of the opening is supported and none contradicts its evidence; an
    opening without a claim (the evidence-does-not-answer line, or nothing) does not hold."""
    judged = attribute_sentences(answer_sentences(opening), evidence, encode, question, threshold=threshold)
    claims = [sentence for sentence in judged if sentence.claim]
    if not claims or not all(sentence.supported and not sentence.contradiction for sentence in claims):
        return False
    if is_yes_no_question(question):  # the label's reason must be a finding, not the study's aim restated
        reasons = [s.text for s in claims if without_citations(s.text).strip(" .!").lower() not in LABELS]
        return any(not states_the_question(without_citations(reason)) for reason in reasons)
    return True
