"""Regexes that could freeze the server (issue 33, item 8): Python's ``re`` holds the GIL, so a
pattern that backtracks exponentially or quadratically on hostile text stops every thread.

* The grounded stream's "citations so far" regex split a run of spaces in exponentially many
  ways ("[1 " * 30 + "x": minutes). A one-pass scan replaces it: it accepts exactly what the regex
  accepted, and the characters it examines, counted (never timed), never exceed the text's length.
* Every other pattern rewritten to be linear (possessive repeats, atomic groups, lookbehinds that
  stop a search rescanning a run from each of its positions) finds exactly what the old one found.
* The sentence splitter judges each possible end on the text since the one before, not the whole
  sentence so far ("v. " * 12,000 took 2 s): the same sentences, and the characters its patterns
  read, counted, stay within the text's length plus two a judgement.
* A static guard: no regex compiled in the product packages holds an unbounded backtracking repeat
  inside another, unless the allow-list below says why it is safe.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import re._constants as sre_constants  # Python 3.11+ (pyproject), where possessive repeats came in
import re._parser as sre_parse

from adapters import prompts
from assistant.answering import attribution, retrieval, sentences
from assistant.answering.sentences import CitationScan
from indexing import words

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("assistant", "indexing", "adapters")
PROPERTY_SETTINGS = hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The patterns replaced, kept here only as references for what the new ones must find. Each of the
# first six is exponential or quadratic on some text; the rest were linear but nested a repeat.
OLD = {
    "citations so far": re.compile(r"^(?:\s*\[[\d,\s]*\]?)*\s*$"),
    "partial citation": re.compile(r"^\s*\[[\d,\s]*\]?\s*$"),
    "last word": re.compile(r"([A-Za-z][A-Za-z.]*)\.$"),
    "list marker": re.compile(r"(?:^|\n)\s*\d{1,3}\.$"),
    "space before punctuation": re.compile(r"\s+([.!?,;:])"),
    "prompt citation": re.compile(r"\s*\[\d+\]"),
    "lexical cue": re.compile(r"\d|\b[A-Za-z]+[A-Z0-9][A-Za-z0-9-]*\b"),
    "boundary": re.compile(r"""(?<=[.!?])["')\u201d\u2019]*(?:\s*\[\d+(?:\s*,\s*\d+)*\])*(?=\s)|(?=\n)"""),
    "citation": re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]"),
    "number": re.compile(r"\d+(?:[.,]\d+)*"),
    "label lead": re.compile(r"^\s*(yes|no|maybe)\s*(?:\[\d+\]\s*)*[,.;:!]\s*(.*)$", re.IGNORECASE | re.DOTALL),
    "word": re.compile(r"[A-Za-z0-9\u00c0-\u024f]+(?:['\u2019-][A-Za-z0-9\u00c0-\u024f]+)*"),
}

# Text made of the pieces these patterns care about, and of anything else.
FRAGMENTS = ["[", "]", "[1]", "[2, 3]", "1", "23", "1234", ",", " ", "  ", "\n", "\t", "\u2028", ".", "!", "?",
             ";", ":", "a", "B", "v", "e.g", "No", "yes", "Maybe", "GDPR", "aB", "x9", "_", "-", "'", "\u2019",
             '"', ")", "\u201d", "é", "\u0663"]
TEXT = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=3), max_size=25).map("".join)


def groups(match: re.Match | None):
    return None if match is None else (match.span(), match.groups())


# --- item 8: the grounded stream's citations-so-far scan ---------------------------------------------

CITATION_TEXT = st.lists(st.sampled_from(["[", "]", "1", "23", ",", " ", "\n", "\t", "\u3000", "\u0663", "x", "[1]"]),
                         max_size=30).map("".join)


@PROPERTY_SETTINGS
@given(CITATION_TEXT | TEXT)
@example("[1 " * 8 + "x")  # the exponential case, short enough for the old regex
@example("[2][3")
@example(" [1, ")
@example("[1]2")
@example("]")
@example("\n")
@example("")
def test_the_citation_scan_accepts_what_the_old_regexes_accepted(text):
    scan = CitationScan(text)
    marks = scan.marks()
    assert (marks is not None) == bool(OLD["citations so far"].match(text))  # grounded_stream
    assert (marks == 1) == bool(OLD["partial citation"].match(text))  # SentenceLimit
    assert scan.examined <= len(text)
    if marks is not None:
        assert scan.examined == len(text)  # accepted: every character was looked at, once


# Long texts made of one unit repeated, then a tail: the scan stops at the first character that
# cannot be part of a citation, and never looks at one twice.
CITATION_UNITS = st.lists(st.sampled_from(["[", "]", "1", ",", " ", "\n", "[1 ", "[1]", "x"]), min_size=1, max_size=6).map("".join)


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CITATION_UNITS, st.integers(1, 20_000), st.sampled_from(["", "x", "]", "[", "1", " "]))
def test_the_citation_scan_examines_each_character_at_most_once(unit, repeats, tail):
    text = unit * repeats + tail
    scan = CitationScan(text)
    marks = scan.marks()
    assert scan.examined <= len(text)
    assert marks is None or scan.examined == len(text)


WORST_CITATIONS = {
    "100,000 '[1 ' then a word (exponential for the old regex)": "[1 " * 100_000 + "x",
    "'[' and 300,000 spaces then a word (quadratic)": "[" + " " * 300_000 + "x",
    "100,000 complete marks": "[1][2, 3]" * 100_000,
    "300,000 '['": "[" * 300_000,
    "300,000 digits in one mark": "[" + "1" * 300_000,
}


@pytest.mark.parametrize("text", list(WORST_CITATIONS.values()), ids=list(WORST_CITATIONS))
def test_worst_case_citations_are_scanned_in_linear_work(text):
    scan = CitationScan(text)
    marks = scan.marks()
    assert scan.examined == len(text)  # one look at each character: the last one decides
    assert (marks is None) == text.endswith("x")


# --- every other rewritten pattern finds what the old one found --------------------------------------

def boundaries(pattern: re.Pattern, text: str) -> list[tuple[int, int]]:
    return [m.span() for m in pattern.finditer(text)]


def last_word(pattern: re.Pattern, text: str) -> str | None:
    match = pattern.search(text)  # the new match also spans the dots before the word; only the word is read
    return match.group(1) if match else None


# name -> (what the product does with its pattern, the same done with the old pattern)
SAME_RESULT = {
    "last word": (lambda t: last_word(sentences._LAST_WORD, t), lambda t: last_word(OLD["last word"], t)),
    "list marker": (lambda t: bool(sentences._LIST_MARKER.search(t)), lambda t: bool(OLD["list marker"].search(t))),
    "space before punctuation": (lambda t: sentences._SPACE_BEFORE_PUNCTUATION.sub(r"\1", t),
                                 lambda t: OLD["space before punctuation"].sub(r"\1", t)),
    "without citations": (sentences.without_citations,
                          lambda t: re.sub(r"\s+([.!?,;:])", r"\1", OLD["citation"].sub("", t)).strip()),
    "prompt citation": (prompts.strip_citations, lambda t: OLD["prompt citation"].sub("", t)),
    "lexical cue": (retrieval.has_lexical_cue, lambda t: bool(OLD["lexical cue"].search(t))),
    "boundary": (lambda t: boundaries(sentences._BOUNDARY, t), lambda t: boundaries(OLD["boundary"], t)),
    "citation": (lambda t: (sentences.CITATION.findall(t), sentences.CITATION.sub("", t)),
                 lambda t: (OLD["citation"].findall(t), OLD["citation"].sub("", t))),
    "number": (lambda t: attribution._NUMBER.findall(t), lambda t: OLD["number"].findall(t)),
    "label lead": (lambda t: groups(attribution._LABEL_LEAD.match(t)), lambda t: groups(OLD["label lead"].match(t))),
    "word": (lambda t: words.WORD.findall(t), lambda t: OLD["word"].findall(t)),
}


@pytest.mark.parametrize("name", list(SAME_RESULT))
def test_each_rewritten_pattern_finds_what_the_old_one_found(name):
    new, old = SAME_RESULT[name]

    @PROPERTY_SETTINGS
    @given(TEXT)
    @example("Roe v. Wade.")
    @example("aaaa b.")
    @example("..ab.\n")
    @example("x\n  \n 12.")
    @example("x 12.")
    @example("  1.\n")
    @example("Yes [1] [2], it is [3].")
    @example("No[1]\n. x")
    @example("a ,  . [1] \t[2]")
    @example("aB-c_ McC_ H2O")
    @example("end.\u201d [1, 2]  [3]\nnext")
    @example("1,000.5 and 2.")
    @example("don't-stop l\u2019\u00e9t\u00e9-x")
    def same(text):
        assert new(text) == old(text)

    same()


# --- sentence splitting: each possible end judged on the text since the one before ---------------

def old_split_sentences(text: str) -> list[str]:
    """The splitter before the change, with the old patterns: it judged each possible end on the
    whole sentence so far, so a run of abbreviations was rescanned at each one (quadratic)."""
    def ends_sentence(piece: str) -> bool:
        bare = OLD["citation"].sub("", piece).rstrip()
        if not bare or bare.endswith(("!", "?", "\n")) or not bare.endswith("."):
            return True
        if OLD["list marker"].search(bare):
            return False
        word = OLD["last word"].search(bare)
        if word is None:
            return True
        token = word.group(1).lower()
        return not (token in sentences._ABBREVIATIONS or (len(token) == 1 and word.group(1).isupper()))

    found, start = [], 0
    for match in OLD["boundary"].finditer(text):
        end = match.end()
        if end <= start or not ends_sentence(text[start:end]):
            continue
        found.append(text[start:end])
        start = end
    found.append(text[start:])
    return [s.strip() for s in found if s.strip()]


SENTENCE_FRAGMENTS = ["v.", "e.g.", "1.", "12.", "1234.", "A.", "No.", "Yes.", "U.S.", " ", "  ", "\n", "\t", "[1]",
                      "[2, 3]", "[1", "[1\n]", "\n,2]", '"', ")", "\u201d", "!", "?", ".", "word", "Word", "x", "_", "#"]
SENTENCE_TEXT = st.lists(st.sampled_from(SENTENCE_FRAGMENTS) | st.text(max_size=2), max_size=30).map("".join)


@hypothesis_settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SENTENCE_TEXT | TEXT)
@example("Smith v.\n\nJones. Next.")
@example("Smith v.  \n 1. x")
@example("x v. 1. y")
@example("Steps:\n1.\n2.\nDone.")
@example("ab.[1\n,2] cd. e")
@example("See e.g. [1] v. [2]\n\n[3] Wade.")
def test_sentences_are_split_as_before(text):
    assert sentences.split_sentences(text) == old_split_sentences(text)


WORST_SENTENCES = {
    "30,000 abbreviations": "Roe " + "v. " * 30_000 + "Wade.",
    "an abbreviation, then 30,000 line breaks": "Roe v." + "\n" * 30_000 + "Wade.",
    "an abbreviation, then 30,000 indented line breaks": "Roe v. [1]" + "\n " * 30_000 + "Wade.",
    "30,000 list markers": "Steps:\n" + "1.\n" * 30_000,
    "30,000 initials": "A. " * 30_000,
}


@pytest.mark.parametrize("text", list(WORST_SENTENCES.values()), ids=list(WORST_SENTENCES))
def test_the_splitter_judges_each_character_once(text, monkeypatch):
    handed, read = [], []  # characters handed to each judgement, and read by the end-of-sentence patterns
    judge, ends_sentence = sentences._judge, sentences._ends_sentence
    monkeypatch.setattr(sentences, "_judge", lambda new, before: handed.append(len(new)) or judge(new, before))
    monkeypatch.setattr(sentences, "_ends_sentence", lambda bare: read.append(len(bare)) or ends_sentence(bare))
    sentences.split_sentences(text)
    assert len(handed) >= 30_000  # every possible end was judged...
    assert sum(handed) <= len(text)  # ...each on the text since the one before
    assert sum(read) <= len(text) + 2 * len(read)  # the patterns read it once, plus two context characters a time


def test_the_sentences_of_a_cited_answer_are_unchanged():
    answer = ("Yes. Metformin [1] is first-line, e.g. in Type 2 diabetes [2, 3]. See Roe v. Wade [4].\n"
              "1. Steps , then more ; [5]")
    assert sentences.split_sentences(answer) == [
        "Yes.", "Metformin [1] is first-line, e.g. in Type 2 diabetes [2, 3].", "See Roe v. Wade [4].",
        "1. Steps , then more ; [5]"]
    assert sentences.without_citations("Steps , then more ; [5]") == "Steps, then more;"


# --- the static guard: no repeat inside a repeat -----------------------------------------------------

# (file, pattern) -> why its nested repeat cannot backtrack more than linearly. Keep it short.
ALLOWED_NESTING: dict[tuple[str, str], str] = {}

REGEX_FUNCTIONS = {"compile": 1, "search": 2, "match": 2, "fullmatch": 2, "findall": 2, "finditer": 2, "split": 3,
                   "sub": 4, "subn": 4}  # function -> where its flags argument is
UNBOUNDED = 50  # a repeat of more than this many is treated as unbounded (as ../shared/hooks/before-stop does)


def nested_repeat(items, inside: bool = False) -> bool:
    """Whether a parsed pattern has an unbounded backtracking repeat inside another. Possessive
    repeats, atomic groups and lookarounds never give back what they matched, so a repeat inside
    one is judged afresh (a nested pair entirely inside them still counts)."""
    for op, av in items:
        if op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
            low, high, body = av
            unbounded = high == sre_constants.MAXREPEAT or high > UNBOUNDED
            if unbounded and inside:
                return True
            if nested_repeat(body, inside or unbounded):
                return True
        elif op == sre_constants.POSSESSIVE_REPEAT:
            if nested_repeat(av[2]):
                return True
        elif op == sre_constants.ATOMIC_GROUP:
            if nested_repeat(av):
                return True
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            if nested_repeat(av[1]):
                return True
        elif op == sre_constants.SUBPATTERN:
            if nested_repeat(av[-1], inside):
                return True
        elif op == sre_constants.BRANCH:
            if any(nested_repeat(branch, inside) for branch in av[1]):
                return True
        elif op == sre_constants.GROUPREF_EXISTS:
            if any(nested_repeat(branch, inside) for branch in av[1:] if branch is not None):
                return True
    return False


def has_nested_repeat(pattern: str, flags: int = 0) -> bool:
    return nested_repeat(sre_parse.parse(pattern, flags))


def pattern_text(node: ast.expr) -> str | None:
    """The pattern a call compiles, with each ``re.escape(...)`` part as a plain letter (it can
    only match itself); None when the text cannot be read from the source alone."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        return node.value if isinstance(node.value, str) else node.value.decode("latin-1")
    if isinstance(node, ast.Call) and ast.unparse(node.func) == "re.escape":
        return "x"
    if isinstance(node, ast.JoinedStr):
        parts = [pattern_text(v.value if isinstance(v, ast.FormattedValue) else v) for v in node.values]
        return None if None in parts else "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = pattern_text(node.left), pattern_text(node.right)
        return None if left is None or right is None else left + right
    return None


def flag_value(node: ast.expr) -> int:
    """``re.IGNORECASE | re.DOTALL`` as a number (VERBOSE changes how a pattern parses)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return flag_value(node.left) | flag_value(node.right)
    assert isinstance(node, ast.Attribute) and ast.unparse(node.value) == "re", ast.unparse(node)
    return int(getattr(re, node.attr))


def call_flags(call: ast.Call, position: int) -> int:
    node = next((k.value for k in call.keywords if k.arg == "flags"), None)
    if node is None and len(call.args) > position:
        node = call.args[position]
    return 0 if node is None else flag_value(node)


def product_regexes() -> list[tuple[str, int, str | None, int]]:
    """(file, line, pattern or None when unreadable, flags) for every ``re`` call in the product packages."""
    found = []
    for package in PRODUCT_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for call in ast.walk(ast.parse(path.read_text(), str(path))):
                if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and ast.unparse(call.func.value) == "re" and call.func.attr in REGEX_FUNCTIONS):
                    continue
                pattern = call.args[0] if call.args else next(k.value for k in call.keywords if k.arg == "pattern")
                found.append((str(path.relative_to(ROOT)), call.lineno, pattern_text(pattern),
                               call_flags(call, REGEX_FUNCTIONS[call.func.attr])))
    return found


def test_no_product_regex_nests_an_unbounded_repeat_in_another():
    regexes = product_regexes()
    # the scan reads what the product compiles, patterns built at run time included
    assert ("assistant/answering/sentences.py", sentences.CITATION.pattern) in {(path, p) for path, _, p, _ in regexes}
    assert any(path == "assistant/answering/fact_answers.py" and p and "x(?:s|es)?" in p for path, _, p, _ in regexes)
    unreadable = [f"{path}:{line}" for path, line, pattern, _ in regexes if pattern is None]
    assert not unreadable, f"patterns the guard cannot read from the source (build them from literals and re.escape): {unreadable}"
    nested = [f"{path}:{line} {pattern!r}" for path, line, pattern, flags in regexes
              if (path, pattern) not in ALLOWED_NESTING and has_nested_repeat(pattern, flags)]
    assert not nested, "a repeat inside a repeat can backtrack exponentially; make the inner or outer one " \
                       "possessive or atomic where giving back never helps, or scan: " + "; ".join(nested)
    stale = set(ALLOWED_NESTING) - {(path, pattern) for path, _, pattern, _ in regexes}
    assert not stale, f"allow-listed patterns no longer in the product: {stale}"


@pytest.mark.parametrize("pattern", [OLD["citations so far"].pattern, OLD["boundary"].pattern, OLD["citation"].pattern,
                                     OLD["label lead"].pattern, OLD["word"].pattern, r"(a+)+b", r"(?:x|a*)*?",
                                     r"(?>(?:a+)*c)", r"(?=(?:\s*\w*)+$)", r"(a{1,100})*"])
def test_the_guard_catches_a_repeat_inside_a_repeat(pattern):
    assert has_nested_repeat(pattern)


@pytest.mark.parametrize("pattern", [sentences._BOUNDARY.pattern, sentences.CITATION.pattern, attribution._LABEL_LEAD.pattern,
                                     attribution._NUMBER.pattern, words.WORD.pattern, r"(?:ab){1,3}+", r"(a{1,5})*",
                                     r"(?:(?>a+)b)*", r"(?:x[^x]*+)*", r"\w+(?=\s*\d+)"])
def test_the_guard_passes_repeats_that_cannot_give_back(pattern):
    assert not has_nested_repeat(pattern)
