"""What a sentence says about its subject, as far as words can tell: whether it is negated, and
whether it reports a finding (an effect, a difference, an association) or the absence of one.

Two users: the yes/no decision (assistant/answering/yes_no.py) weighs the evidence's findings, and
attribution (assistant/answering/attribution.py) refuses to count "X does not treat Y" as supported by
"X is a first-line treatment for Y". Word lists and token scans, no model: no entailment model
ships inside a package here (the embedder does, and it barely separates a sentence from its
negation). A negator governs the few words after it ("no significant difference", "not effective",
"was not found"), or, standing for the subject ("none of the variables", "neither group"), the rest
of its clause. Everything is a linear pass over the sentence's words.
"""

from __future__ import annotations

import re
from typing import Sequence

from indexing.words import WORD

_NEGATORS = frozenset({"not", "no", "never", "none", "nor", "neither", "without", "cannot", "nothing", "nobody",
                       "rarely", "seldom", "hardly"})
_NEGATING_PAIRS = frozenset({("failed", "to"), ("fails", "to"), ("fail", "to"), ("unable", "to"),
                             ("lack", "of"), ("absence", "of"), ("no", "longer")})
# Not a negation of the sentence's claim: "not only ... but also", "no later than", "not least".
_NOT_NEGATING_AFTER = frozenset({"only", "least", "later", "less", "more", "until"})
# Words that report the absence of a difference or an effect.
_NULL_WORDS = frozenset({"similar", "similarly", "comparable", "identical", "unchanged", "unaffected", "unrelated",
                         "equivalent", "nonsignificant", "non-significant", "insignificant", "unaltered",
                         "indistinguishable", "inconclusive"})
# After "similar", a finding seen again, not an absence: "a similar relation was found", "similar results".
_REPEATED_FINDINGS = ("result", "finding", "relation", "pattern", "trend", "association", "correlation", "difference")
# Stems a negator must reach (within a few words) for the sentence to report a null finding.
_FINDING_STEMS = ("significan", "statistic", "differ", "associat", "correlat", "relat", "effect", "impact",
                  "benefi", "chang", "evidence", "improv", "influenc", "increas", "decreas", "reduc", "predict",
                  "advantage", "role", "link", "affect", "alter", "superior", "inferior", "better", "worse",
                  "higher", "lower", "greater", "risk", "useful", "valu")
# Stems of a reported effect or association.
_POSITIVE_STEMS = ("significan", "associat", "correlat", "predict", "effective", "efficac", "improv", "increas",
                   "reduc", "decreas", "higher", "lower", "greater", "better", "superior", "safe", "feasib",
                   "success", "benefi", "elevat", "enhanc", "prolong", "protect", "accurate", "sensitiv",
                   "useful", "valuable", "independent")
# A negator that reaches a finding's word or a reported effect's reports its absence ("not effective",
# "no elevated troponin", "not an independent predictor").
# A negator also reaches a study's verbs of observing: "was not found", "did not detect", "not observed".
_NEGATABLE = _FINDING_STEMS + _POSITIVE_STEMS + ("found", "detect", "observ", "identif", "show", "demonstrat",
                                                 "reveal")
NEGATOR_REACH = 3  # words after a negator that it still governs ("no statistically significant difference")
# A negator that stands for the subject denies the whole predicate after it, to the clause's end:
# "None of the practice variables were associated with use", "None of the patients had elevated cTnI".
_SUBJECT_NEGATORS = frozenset({"none", "neither", "nothing", "nobody"})
_CLAUSE_END = re.compile(r"[,;:]")
# A p-value: "p < 0.05", "P = NS", "p>0.1" (each repeat bounded; nothing nested).
_P_VALUE = re.compile(r"\bp\s{0,3}([<>=\u2264\u2265])\s{0,3}(n\.?s\b|0?\.\d{1,5}|1(?:\.0{1,4})?\b)", re.IGNORECASE)
SIGNIFICANCE_LEVEL = 0.05


def words(text: str) -> list[str]:
    return [w.lower().replace("\u2019", "'") for w in WORD.findall(text)]


def _negator_positions(tokens: Sequence[str]) -> list[int]:
    found = []
    for i, token in enumerate(tokens):
        after = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token in _NEGATORS or token.endswith("n't"):
            if after not in _NOT_NEGATING_AFTER and not (token == "no" and after[:1].isdigit()):  # "no. 2": number
                found.append(i)
        elif (token, after) in _NEGATING_PAIRS:
            found.append(i)
    return found


def _reports_no_difference(tokens: Sequence[str]) -> bool:
    """A word that reports no difference ("similar in both groups", "unchanged"), but not "Similarly,"
    opening a sentence (likewise: the finding that follows is another one of the same kind) nor
    "similar" before a finding's noun ("a similar relation was found": the finding again)."""
    for i, token in enumerate(tokens):
        if token in _NULL_WORDS:
            after = tokens[i + 1] if i + 1 < len(tokens) else ""
            if not (i == 0 and token == "similarly") and not (token == "similar" and after.startswith(_REPEATED_FINDINGS)):
                return True
    return False


def negated(text: str) -> bool:
    """Whether the sentence denies something: a negator ("not", "no", "never", "n't", "without",
    "failed to") or a word that reports no difference ("similar", "unchanged")."""
    tokens = words(text)
    return bool(_negator_positions(tokens)) or _reports_no_difference(tokens)


def _p_values(text: str) -> tuple[bool, bool]:
    """(a significant p-value is reported, a non-significant one is)."""
    significant = not_significant = False
    for relation, value in _P_VALUE.findall(text):
        if value.lower().startswith("n"):
            not_significant = True
            continue
        number = float(value)
        if relation in "<\u2264" and number <= SIGNIFICANCE_LEVEL or relation == "=" and number <= SIGNIFICANCE_LEVEL:
            significant = True
        elif number > SIGNIFICANCE_LEVEL and relation in ">=\u2265":
            not_significant = True
    return significant, not_significant


def finding(text: str) -> int:
    """-1 when the sentence reports no effect or difference ("no significant difference",
    "was not associated with", "similar in both groups", "P = NS"), +1 when it reports one
    ("significantly reduced", "was associated with", "p < 0.01"), 0 when it reports neither."""
    tokens = words(text)
    for position in _negator_positions(tokens):
        if any(token.startswith(_NEGATABLE) for token in tokens[position + 1:position + 1 + NEGATOR_REACH]):
            return -1
    if _SUBJECT_NEGATORS.intersection(tokens) and any(_denies_its_predicate(words(clause))
                                                       for clause in _CLAUSE_END.split(text)):
        return -1
    significant, not_significant = _p_values(text)
    if _reports_no_difference(tokens) or (not_significant and not significant):
        return -1
    if significant or any(token.startswith(_POSITIVE_STEMS) for token in tokens):
        return 1
    return 0


def _denies_its_predicate(tokens: Sequence[str]) -> bool:
    """Whether a finding's word follows a subject negator ("none", "neither") in the clause."""
    seen = False
    for token in tokens:
        seen = seen or token in _SUBJECT_NEGATORS
        if seen and token.startswith(_NEGATABLE):
            return True
    return False


def reads_as_no(sentence: str) -> bool:
    """Whether a reader takes "No" from the sentence as the answer to the question it is about:
    it reports an absence, or, reporting no finding either way, it denies something. The yes/no
    lead (assistant/answering/yes_no.py) and the label check (assistant/answering/attribution.py) both read it so."""
    found = finding(sentence)
    return found < 0 or (found == 0 and negated(sentence))


def reports_statistics(sentence: str) -> bool:
    """Whether the sentence reports a statistical result: a p-value, or (non-)significance. What a
    study states as its finding, where "higher prices have a larger influence" is a description."""
    return bool(_P_VALUE.search(sentence)) or any(token.startswith(("significan", "nonsignifican", "non-significan",
                                                                    "insignifican")) for token in words(sentence))
