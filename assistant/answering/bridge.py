"""A multi-hop question answered in two steps: the first evidence names the entity the question
goes through, and a second search about that entity finds the answer.

"Which president nominated to the Supreme Court the lawyer who argued Brown v. Board of
Education?" The first retrieval finds "Thurgood Marshall argued Brown v. Board of Education", the
first hop: it answers the question's inner clause, not the question. The name it adds,
"Thurgood Marshall", is the bridge. The second hop asks what the first left open ("Which
president nominated Supreme Court lawyer Thurgood Marshall"), and its evidence gives "Lyndon B.
Johnson nominated Thurgood Marshall". The answer quotes both hops, each cited, and the evidence
panel shows the chain.

A bridge is followed only when all of these hold, so a single-hop question keeps its answer:
- the question is shaped like a chain: a relative clause ("the lawyer who argued ...", "the
  county in which ...") or more than one sentence ("... a central bank. In what year was the act
  that created that central bank passed?"); a yes/no question is not followed (its label is
  decided from the evidence as it is);
- the opening the answer writer found (graph facts or a quoted sentence) leaves some of the
  question's content words uncovered, beyond words that only name the answer's type ("year",
  "city");
- that opening names something the question does not: a capitalised name, the bridge.

The second hop's sentence must come from the second search's evidence, be about the bridge (its
item names it, in its text or title), hold the answer type the question asks for, and pass the
quote picker's floor (assistant/answering/evidence_quotes.py); else the ordinary opening stands.

Pure text and the caller's ``encode``; the second retrieval itself is the caller's
(:func:`follow`, given a ``retrieve`` function), so the chat and ``assistant eval`` share it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

from adapters.prompts import EvidenceItem, number_evidence
from assistant.answering.attribution import content_words
from assistant.answering.evidence_quotes import answer_type, best_quote
from assistant.answering.fact_answers import Lead, is_yes_no_question
from assistant.answering.retrieval import Evidence, Passage, RankedFact
from assistant.answering.sentences import split_sentences, without_citations

_RELATIVE = frozenset({"who", "whom", "whose", "that", "which", "where"})
# Words that name only the kind of answer asked for; a first hop that leaves only these open answers.
_TYPE_WORDS = frozenset(content_words("year date month day city country state place name person number amount "
                                      "many much long"))
# Lower-case words that may sit inside a name: "Bank of England", "Brown v. Board of Education".
_NAME_JOINERS = frozenset({"of", "the", "v", "v.", "vs", "vs.", "de", "von", "van", "der", "la", "du", "for"})
_MONTHS = frozenset("january february march april may june july august september october november december".split())
_TOKEN = re.compile(r"[^\s,;:()\"\[\]]++")  # a word with its inner punctuation ("v.", "D.C.", "Lagarde's")
SECOND_HOP_FACTS = 3  # evidence items the second search adds, of each kind, ahead of the first search's rest
SECOND_HOP_PASSAGES = 3


@dataclass(frozen=True)
class Bridge:
    entity: str  # the name the first hop adds ("Thurgood Marshall")
    first: str  # the first hop's sentence, as the answer opened, without its citation
    first_item: str  # the text of the evidence item it cites
    query: str  # what the second search asks: the words the first hop left open, and the entity
    second_items: frozenset[str] = frozenset()  # texts of the evidence the second search found


@dataclass
class Bridged:
    bridge: Bridge
    facts: list[RankedFact]
    passages: list[Passage]


def is_chain_shaped(question: str) -> bool:
    """A relative clause after the first word, or more than one sentence."""
    tokens = [token.lower() for token in _TOKEN.findall(question)]
    if any(token in _RELATIVE for token in tokens[1:]):
        return True
    return len(split_sentences(question)) > 1


def open_words(question: str, first: str) -> set[str]:
    """The question's content words the first hop does not cover, beyond the answer type's:
    the type words ("year", "city") and the noun a "which" or "what" asks for ("Which lawyer")."""
    tokens = [token.lower() for token in _TOKEN.findall(split_sentences(question)[-1])]
    asked_for = next((content_words(after) for word, after in zip(tokens, tokens[1:])
                      if word in ("which", "what", "whose") and content_words(after)), set())
    return content_words(question) - content_words(first) - _TYPE_WORDS - asked_for


def names(sentence: str) -> list[str]:
    """Capitalised names in order ("Thurgood Marshall", "Brown v. Board of Education", "Securities
    Act of 1933"): runs of capitalised words, with joiners ("of", "v.") only between two of them (a
    year may follow "of"). Punctuation between two words ends a name ("Fund (IMF)"), and so does a
    capitalised stop word ("... Conference The Bretton ..."); a stop word opening the sentence
    ("The", "In") is no part of a name, nor a month, nor a hyphenated word with a lower-case part
    ("Non-selective")."""
    found: list[str] = []
    run: list[str] = []
    pending: list[str] = []
    end = 0
    for match in _TOKEN.finditer(sentence):
        written = match.group()
        token = written.rstrip(".!?")
        if sentence[end:match.start()].strip():  # punctuation between the two words
            found, run, pending = _close(found, run), [], []
        end = match.end()
        if _capitalised(token):
            run += pending + [written]
            pending = []
        elif run and (token in _NAME_JOINERS or (token.isdigit() and pending == ["of"])):
            if token.isdigit():
                run += pending + [written]
                pending = []
            else:
                pending.append(written)
        else:
            found, run, pending = _close(found, run), [], []
    return _close(found, run)


def _capitalised(token: str) -> bool:
    parts = [part for part in token.split("-") if part]
    return bool(parts) and all(part[:1].isupper() or part.isdigit() for part in parts) \
        and any(part[:1].isupper() for part in parts) and token.lower() not in _MONTHS and bool(content_words(token))


def _close(found: list[str], run: list[str]) -> list[str]:
    """``found`` with the run as one more name, as written, without a sentence's full stop ("D.C." keeps its own)."""
    if not run:
        return found
    last = run[-1].rstrip("!?")
    if last.endswith(".") and "." not in last[:-1]:
        last = last[:-1]
    return found + [" ".join(run[:-1] + [last])]


def bridge_entity(question: str, first: str) -> str | None:
    """The first name in ``first`` that the question does not already hold. A name of several words
    comes before a single word (a capitalised single word is often no name: "Treatment has ...",
    "French"), and one sharing a word with the question ("McDowell County" for "the county in
    which ...") before one that shares none."""
    asked = content_words(question)
    candidates = [name for name in names(first) if content_words(name) - asked]
    ranked = sorted(candidates, key=lambda name: (len(name.split()) == 1, not content_words(name) & asked))
    return ranked[0] if ranked else None


def second_hop_query(question: str, first: str, entity: str) -> str:
    """The question without what the first hop answered, with the entity in its place: the asking
    sentence's wording up to its first content word ("In what year", "Which"), then its other
    content words the first hop does not hold, then the entity."""
    covered = content_words(first)
    kept: list[str] = []
    opening = True
    asking = split_sentences(question)[-1]  # "X did Y. In what year ...?": the earlier sentences led to the first hop
    for token in _TOKEN.findall(asking.rstrip("?")):
        words = content_words(token)
        if opening and not words:
            kept.append(token)
            continue
        opening = False
        if words and not words <= covered and token.lower() not in _RELATIVE:
            kept.append(token)
    return " ".join(kept + [entity])


def find_bridge(question: str, lead: Lead | None, items: Sequence[EvidenceItem]) -> Bridge | None:
    """The bridge the opening ``lead`` names, or None when the question needs no second hop."""
    if lead is None or lead.kind not in ("facts", "quote") or not lead.numbers or is_yes_no_question(question):
        return None
    if not is_chain_shaped(question):
        return None
    first = without_citations(split_sentences(lead.text)[0]).strip().rstrip(".!?").strip()
    if not open_words(question, first):
        return None
    entity = bridge_entity(question, first)
    cited = next((item for item in items if item.number == lead.numbers[0]), None)
    if entity is None or cited is None:
        return None
    return Bridge(entity, first, cited.text, second_hop_query(question, first, entity))


def follow(question: str, facts: Sequence[RankedFact], passages: Sequence[Passage],
           opening: Callable[..., Lead | None], retrieve: Callable[[str], Evidence]) -> Bridged | None:
    """The evidence for a two-hop answer, or None when there is no bridge to follow or the second
    search does not answer: ``opening(question, facts, items, bridge=None)`` is the answer
    writer's lead, ``retrieve`` the second search. The item the first hop cites comes first, then
    the second search's best items, then the first search's others (the prompt's budget cuts from
    the end)."""
    if is_yes_no_question(question) or not is_chain_shaped(question):  # before the opening: it embeds sentences
        return None
    items = number_evidence([f.text for f in facts], [(p.title, p.text) for p in passages])
    bridge = find_bridge(question, opening(question, facts, items), items)
    if bridge is None:
        return None
    second = retrieve(bridge.query)
    second_facts = list(second.facts[:SECOND_HOP_FACTS])
    second_passages = list(second.passages[:SECOND_HOP_PASSAGES])
    if not second_facts and not second_passages:
        return None
    texts = frozenset(item.text for item in [*second_facts, *second_passages])
    bridge = Bridge(bridge.entity, bridge.first, bridge.first_item, bridge.query, texts)
    merged = Bridged(bridge, _merged([f for f in facts if f.text == bridge.first_item], second_facts, facts),
                     _merged([p for p in passages if p.text == bridge.first_item], second_passages, passages))
    # Only a second hop that answers changes the evidence: else the answer is the one the first search gave.
    chained = opening(question, merged.facts, number_evidence([f.text for f in merged.facts],
                                                              [(p.title, p.text) for p in merged.passages]), bridge)
    return merged if chained is not None and chained.kind == "bridge" else None


def chain_lead(bridge: Bridge, question: str, items: Sequence[EvidenceItem], encode) -> Lead | None:
    """"<first hop> [a]. <second hop> [b].": the first hop's sentence cited to its item as numbered
    now, and the sentence of the second search's evidence that best answers what the first left
    open, among those about the bridge (the sentence or its item's title names it)."""
    first = next((item for item in items if item.text == bridge.first_item), None)
    if first is None:
        return None
    candidates = [EvidenceItem(item.number, item.kind, sentence, item.title)
                  for item in items if item.text in bridge.second_items
                  for sentence in (split_sentences(item.text) if item.kind == "passage" else [item.text])
                  if _names(bridge, question, f"{item.title} {sentence}") and not _same(sentence, bridge.first)]
    if not candidates:
        return None
    asked = bridge.query if answer_type(bridge.query) == answer_type(question) else f"{question} {bridge.entity}"
    quote = best_quote(asked, candidates, encode)
    if quote is None:
        return None
    text = f"{bridge.first[:1].upper()}{bridge.first[1:]} [{first.number}]. {quote.text}"
    return Lead(text, tuple(dict.fromkeys((first.number, quote.number))), None, kind="bridge")


def _names(bridge: Bridge, question: str, text: str) -> bool:
    """Whether ``text`` is about the bridge: it holds at least half of the entity's words that the
    question does not ("Earl Warren" of "Chief Justice Earl Warren")."""
    about = content_words(bridge.entity) - content_words(question) or content_words(bridge.entity)
    return len(about & content_words(text)) * 2 >= len(about)


def _merged(first: list, second: list, rest: Sequence) -> list:
    """The first hop's item, the second search's, then the first search's others, each once."""
    merged = []
    for item in [*first, *second, *rest]:
        if item not in merged:
            merged.append(item)
    return merged


def _same(quoted: str, sentence: str) -> bool:
    return content_words(without_citations(quoted)) == content_words(sentence)
