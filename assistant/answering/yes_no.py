"""A yes/no question answered from the evidence's own findings, not from the model's first token.

The label is the answer's claim, so it is decided the way a reader of the evidence would: each
evidence sentence that reports a finding (assistant/answering/findings.py) votes for "Yes" (an effect, a
difference, an association: "significantly reduced", "p < 0.01") or "No" (its absence: "no
significant difference", "was not associated with", "similar in both groups"). A sentence that
turns from one finding to another ("X rose; however, Y was similar", "X, but not Y, was associated
with Z", "X improved without affecting Y") votes once per side, each side about its own subject,
so that the null finding beside the one asked about does not turn the whole sentence. Each vote is
weighted by

- how much of the question it is about (the share of the question's content words it holds,
  plus a floor, so that a finding about the question's subject in other words still counts); an
  abbreviation the abstract defines counts as the words it stands for ("NACT" in the results
  is the "neoadjuvant chemotherapy" the question names);
- where it stands: a study's background or aims state the question, not the answer, and its
  methods report nothing, so a sentence under such a heading weighs little; results and
  conclusions weigh most; a sentence whose section is unknown weighs in between;
- its kind: a null finding weighs ``NULL_WEIGHT`` times a positive one, since abstracts report
  some effect almost always and a reported absence is the rarer, stronger signal.

A plain statement that covers most of the question counts as a weak "Yes" (or "No" when negated:
"the intervention has no effect on X" without a finding word). Graph facts do not
vote: a triple ("X – associated with → Y") keeps the words of a finding but not its polarity or
its section. The sign of the sum decides ("Yes" above ``YES_ABOVE``). ``NULL_WEIGHT`` is the
calibration: with equal weights almost every abstract reads "Yes" (each reports some effect);
at 1.5 the labels come out near the questions' own spread instead of one label for everything.
The constants were set on half of the public PubMedQA development questions and checked on the
other half, with and without unrelated abstracts mixed in (see the issue 34 note), and left as they
were when the reading of sides, abbreviations and negators was added (gold abstract: 0.65 and 0.59
on the two halves, about 0.69 of the answers "Yes"); "Maybe" is never chosen: no word-level signal
separated it from the other two there.

The evidence decides only when it is a study's report (a sentence under a structured abstract's
heading, or one reporting statistics); encyclopedic evidence is left to the model's choice among
Yes/No/Maybe. Only the documents (by title) that hold most of the question's words vote: retrieval also brings
passages of neighbouring studies, and their own findings would outvote the study asked about.

The answer then opens with the label and the evidence sentences it rests on, strongest first and
as many as the answer may have, cited; each has the label's polarity by construction ("No. cIMT
was nearly identical between cases and controls [3]."), and the model is not called.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from adapters.prompts import EvidenceItem
from assistant.answering.attribution import content_words
from assistant.answering.fact_answers import Lead
from assistant.answering.findings import finding, negated, reports_statistics
from assistant.answering.sentences import heading_split, split_sentences
from indexing.words import WORD

NULL_WEIGHT = 1.5
YES_ABOVE = 0.0
RELEVANCE_FLOOR = 0.2  # added to a sentence's share of the question's words
PLAIN_STATEMENT_SHARE = 0.5  # a sentence without a finding counts when it covers this share of the question
PLAIN_STATEMENT_VOTE = 0.5
DOCUMENT_COVERAGE = 0.8  # a document votes when it holds this share of the question words the best one holds
SECTION_WEIGHTS = {"question": 0.1, "methods": 0.1, "findings": 1.0, None: 0.6}
_SECTION_NAMES = {
    "question": ("BACKGROUND", "OBJECTIVE", "AIM", "PURPOSE", "INTRODUCTION", "CONTEXT", "HYPOTHES", "RATIONALE",
                 "IMPORTANCE", "STUDY OBJECTIVE", "QUESTION"),
    "methods": ("METHOD", "DESIGN", "PARTICIPANT", "PATIENT", "SETTING", "MEASURE", "INTERVENTION", "MAIN OUTCOME",
                "MATERIAL", "SUBJECT", "STUDY DESIGN", "RESEARCH DESIGN", "POPULATION", "DATA SOURCE", "EXPOSURE"),
    "findings": ("RESULT", "FINDING", "CONCLUSION", "OUTCOME", "INTERPRETATION", "DISCUSSION", "MAIN RESULT"),
}


# Where a sentence turns from one finding to another ("X rose; however, Y was similar", "X differed,
# except for Y", "X, whereas Y"): each side is its own finding, about its own subject. So is a side
# effect's absence ("blood flow improved without affecting blood pressure"), which keeps its
# "without". A literal alternation (and one bounded word), so one linear pass.
_CONTRAST = re.compile(r";|\b(?:but|however|whereas|while|although|though|except|in contrast)\b(?! also\b)"
                       r"|(?=\bwithout [a-z]{1,30}ing\b)", re.IGNORECASE)


# An abbreviation the abstract defines: "neoadjuvant chemotherapy (NACT)" (two or more capitals).
_DEFINED = re.compile(r"\(([A-Za-z][A-Za-z0-9-]{1,9})\)")
_LONG_FORM_CHARACTERS = 120  # looked back over for the words an abbreviation stands for


# An aim in its usual words; a literal alternation, so one linear pass.
_AIM = re.compile(r"\b(?:aim(?:ed|s)? (?:was |is |were )?(?:to|at)|sought to|(?:objective|purpose|goal)s? (?:of|was|is|were)|"
                  r"(?:was|were) designed to|to (?:determine|assess|evaluate|investigate|examine|compare|explore) "
                  r"(?:whether|if|the))\b", re.IGNORECASE)


@dataclass(frozen=True)
class Vote:
    value: float  # > 0 for "Yes", < 0 for "No"
    number: int  # the evidence item
    sentence: str  # without its heading
    reported: bool = False  # from a study's report: under a structured abstract's heading, or with statistics


@dataclass(frozen=True)
class LabelDecision:
    label: str  # "Yes" or "No"
    score: float
    reasons: tuple[Vote, ...]  # the sentences voting for the label, strongest first; empty when none does

    @property
    def reason(self) -> Vote | None:
        return self.reasons[0] if self.reasons else None


def decide(question: str, items: Sequence[EvidenceItem]) -> LabelDecision | None:
    """The label the evidence gives ``question``, or None when it holds no study's report to read
    (no structured heading, no statistics): then the model's first-token choice stands, since
    word-level voting cannot tell "The Dow is price-weighted" answers "Is it weighted by market
    capitalization?" with "No"."""
    votes = [vote for item in _about_the_question(question, items) for vote in _votes(question, item)]
    if not any(vote.reported for vote in votes):  # no study's findings to read: the model's choice stands
        return None
    score = sum(vote.value for vote in votes)
    if negated(question):  # "Is X not associated with Y?": a reported effect answers "No"
        score = -score
        votes = [Vote(-vote.value, vote.number, vote.sentence, vote.reported) for vote in votes]
    label = "Yes" if score > YES_ABOVE else "No"
    sign = 1 if label == "Yes" else -1
    backing = sorted((vote for vote in votes if vote.value * sign > 0), key=lambda vote: -vote.value * sign)
    return LabelDecision(label, score, tuple(backing))


def findings_backing(question: str, items: Sequence[EvidenceItem], label: str) -> list[Vote]:
    """The evidence's findings that back ``label`` for ``question``, strongest first: the
    sentences a "Yes"/"No" answer can give as its reason and pass the label check of
    assistant/answering/attribution.py ("Maybe": the strongest findings either way). Used to
    write adapters' training answers (assistant/answering/training_evidence.py)."""
    votes = [vote for item in items for vote in _votes(question, item) if vote.reported]
    sign = -1 if negated(question) else 1
    wanted = {"Yes": 1, "No": -1}.get(label)
    if wanted is not None:
        votes = [vote for vote in votes if vote.value * sign * wanted > 0]
    return sorted(votes, key=lambda vote: -abs(vote.value))


def label_lead(question: str, items: Sequence[EvidenceItem], sentences: int = 1) -> Lead | None:
    """"Yes. <the finding it rests on> [n]." with up to ``sentences`` findings, strongest first
    (the label alone when no sentence backs it; the model then writes the rest)."""
    decision = decide(question, items)
    if decision is None:
        return None
    quoted, seen = [], set()
    for vote in decision.reasons:
        body = vote.sentence.strip().rstrip(".!?")
        if body and body not in seen and len(quoted) < sentences:
            seen.add(body)
            quoted.append((f"{body[:1].upper()}{body[1:]} [{vote.number}].", vote.number))
    text = " ".join([f"{decision.label}."] + [sentence for sentence, _ in quoted])
    return Lead(text, tuple(dict.fromkeys(number for _, number in quoted)), decision.label, kind="label")


def _about_the_question(question: str, items: Sequence[EvidenceItem]) -> list[EvidenceItem]:
    """The passages of the documents (by title) that hold the most of the question's words, within
    ``DOCUMENT_COVERAGE`` of the best: retrieval also brings neighbours about something else,
    whose own findings (every study reports some effect) would outvote the study asked about."""
    asked = content_words(question)
    documents: dict[str, list[EvidenceItem]] = {}
    for item in items:
        if item.kind == "passage":
            documents.setdefault(item.title or f"#{item.number}", []).append(item)
    coverage = {title: len(asked & set().union(*(content_words(f"{p.title} {p.text}") for p in passages)))
                for title, passages in documents.items()}
    best = max(coverage.values(), default=0)
    return [p for title, passages in documents.items() if coverage[title] >= DOCUMENT_COVERAGE * best
            for p in passages]


def _votes(question: str, item: EvidenceItem) -> list[Vote]:
    defined = abbreviations(item.text)
    asked = _with_long_forms(content_words(question), defined)
    if not asked:
        return []
    votes, section = [], None
    titled = content_words(item.title)
    for sentence in split_sentences(item.text):
        heading, sentence = heading_split(sentence)
        if heading is not None:
            section = _section(heading)
        reported = section is not None or reports_statistics(sentence)
        for clause, denied in clauses(sentence):
            share = len(asked & (_with_long_forms(content_words(clause), defined) | titled)) / len(asked)
            polarity = -1.0 if denied else _polarity(clause, share)
            if polarity:
                weight = SECTION_WEIGHTS[section]
                value = weight * (RELEVANCE_FLOOR + share) * (NULL_WEIGHT * polarity if polarity < 0 else polarity)
                votes.append(Vote(value, item.number, sentence, reported))
    return votes


def abbreviations(text: str) -> dict[str, frozenset[str]]:
    """The abbreviations the text defines, each with the content words it stands for: "the effect of
    neoadjuvant chemotherapy (NACT)" makes "NACT" stand for neoadjuvant and chemotherapy (the long
    form runs back to the nearest word opening with the abbreviation's first letter, within a few
    words). A reader of the results reads "NACT" as the treatment the question names in full."""
    defined: dict[str, frozenset[str]] = {}
    for match in _DEFINED.finditer(text):
        short = match.group(1)
        if sum(character.isupper() for character in short) < 2:
            continue
        before = WORD.findall(text[max(0, match.start() - _LONG_FORM_CHARACTERS):match.start()])
        reach = before[-(len(short) + 2):]
        for start in range(len(reach) - 1, -1, -1):
            if reach[start][:1].lower() == short[0].lower():
                long_form = content_words(" ".join(reach[start:]))
                if long_form:
                    defined.update({word: long_form for word in content_words(short)})
                break
    return defined


def _with_long_forms(words: set[str], defined: dict[str, frozenset[str]]) -> set[str]:
    return words.union(*(defined[word] for word in words if word in defined))


def clauses(sentence: str) -> list[tuple[str, bool]]:
    """The sentence's sides where it turns from one finding to another, each with whether it only
    denies the finding of the side before it. "ADNase B was significantly higher (p<0.001); however,
    ASO levels were similar" is a positive finding and a null one. A side that opens with "not" and
    reports nothing of its own ("X was correlated with Y in controls but not in patients") denies
    what the side before it reports; "X, but not Y, was associated with Z" says "X was associated
    with Z" and denies it of Y."""
    parts, start = [], 0
    for turn in _CONTRAST.finditer(sentence):
        parts.append(sentence[start:turn.start()])
        start = turn.end()
    parts.append(sentence[start:])
    sides: list[tuple[str, bool]] = []
    for part in parts:
        if not part.strip(" ,"):
            continue
        body = part.lstrip(" ,")
        if sides and body[:4].lower() == "not " and not finding(body[4:].split(",")[0]):
            other, rest = body[4:].partition(",")[::2]
            before = f"{sides[-1][0]} {rest}" if rest.strip() else sides[-1][0]
            if finding(before) > 0:
                sides[-1] = (before, sides[-1][1])
                sides.append((f"{other} {rest}", True))
                continue
        sides.append((part, False))
    return sides


def _polarity(sentence: str, share: float) -> float:
    found = finding(sentence)
    if found:
        return float(found)
    if share >= PLAIN_STATEMENT_SHARE:
        return -1.0 if negated(sentence) else PLAIN_STATEMENT_VOTE
    return 0.0


def states_the_question(sentence: str) -> bool:
    """Whether a sentence only states what a study asks or did (under a background, aims or
    methods heading, or in an aim's words: "This study aimed to determine whether ..."), so it
    cannot be the reason for a label."""
    heading, body = heading_split(sentence)
    if heading is not None and _section(heading) in ("question", "methods"):
        return True
    return bool(_AIM.search(body))


def _section(heading: str) -> str | None:
    upper = heading.upper()
    for section, names in _SECTION_NAMES.items():
        if upper.startswith(names):
            return section
    return None
