"""The chat history a client sends (issue 33, item 7): anyone may send it, with no login, so reading
it must cost work linear in its size, and only what can reach the prompt is read at all.

* presenter.from_chat strips the chat's own tags with a forward scan (TagStripper) that gives
  what the regex ``<[^>]*>`` gave, and whose work, counted in characters examined (never timed),
  is at most two per character on hostile text (runs of '<', '<' without '>', one far '>').
  The regex took 0.14 / 0.57 / 2.27 s on 20k / 40k / 80k '<' (quadratic).
* presenter.chat_turns reads only the last history_max_turns turns (pipeline.recent_turns keeps
  no more), and gives the prompt the same turns as reading the whole history did.
"""

from __future__ import annotations

import html
import re

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from assistant.answering.pipeline import recent_turns
from assistant.web import presenter
from assistant.web.presenter import TagStripper, chat_turns, from_chat

# The regex the scanner replaced, kept only as the reference for what it removes: from every '<'
# it tried, it looked for a '>' through the rest of the text (quadratic without one).
OLD_TAG = re.compile(r"<[^>]*>")
REFERENCE_MAX_CHARS = 2_000  # the reference is quadratic: keep its inputs short

FRAGMENTS = ["<", ">", "</", "/>", "<a>", "</a>", "<br/>", "<<", ">>", "&lt;", "&gt;", "&amp;", "&", ";", " ", "\n",
             "a", "é", "[1]", '<a class="citation" href="#evidence-1-2">', '<span class="unsupported" title="x">']
PIECES = st.one_of(st.sampled_from(FRAGMENTS), st.integers(1, 300).map(lambda n: "<" * n), st.text(max_size=6))
CHAT_TEXT = st.lists(PIECES, max_size=60).map("".join)


def strip(text: str) -> tuple[str, int]:
    stripper = TagStripper()
    return stripper.strip(text), stripper.examined


def assert_linear(text: str, examined: int) -> None:
    """Every character is looked at at least once (so the count is real) and at most twice."""
    assert len(text) <= examined <= 2 * len(text), (len(text), examined)


@hypothesis_settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CHAT_TEXT.map(lambda text: text[:REFERENCE_MAX_CHARS]))
@example("<a<b>c")  # a '<' inside a tag is part of it, as [^>]* took it
@example("a>b<c")
@example("<" * REFERENCE_MAX_CHARS)
@example("")
def test_the_tag_stripper_removes_what_the_old_regex_removed(text):
    stripped, examined = strip(text)
    assert stripped == OLD_TAG.sub("", text)
    assert from_chat(text) == html.unescape(OLD_TAG.sub("", text))
    assert_linear(text, examined)


# Long texts made of one hostile unit repeated, then a tail; half the units lose their '>'s, so
# that many '<' wait for one far '>' (where a search restarted at every '<' is quadratic).
UNITS = st.tuples(st.lists(PIECES, min_size=1, max_size=10).map("".join), st.booleans()).map(
    lambda unit: unit[0].replace(">", "") if unit[1] else unit[0])


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(UNITS, st.integers(1, 20_000), st.sampled_from(["", ">", "<", "</a>"]) | PIECES)
def test_the_tag_stripper_examines_each_character_at_most_twice(unit, repeats, tail):
    text = unit * repeats + tail
    assert_linear(text, strip(text)[1])


WORST_TEXT = {
    "200,000 '<'": "<" * 200_000,
    "100,000 '<a' without '>'": "<a" * 100_000,
    "100,000 '<', then one '>'": "<" * 100_000 + ">",
    "100,000 empty tags": "<>" * 100_000,
    "100,000 '>' then 100,000 '<'": ">" * 100_000 + "<" * 100_000,
    "one tag of 200,000 characters": "<" + "x" * 200_000 + ">",
    "100,000 escaped '<'": "&lt;" * 100_000,
}


@pytest.mark.parametrize("text", list(WORST_TEXT.values()), ids=list(WORST_TEXT))
def test_worst_case_chat_text_is_read_in_linear_work(text):
    stripped, examined = strip(text)
    assert_linear(text, examined)
    if len(text) <= 20_000:
        assert stripped == OLD_TAG.sub("", text)


# --- only the turns that can reach the prompt are read ---------------------------------------------

TURNS = st.lists(st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool"]), "content": CHAT_TEXT}),
    st.fixed_dictionaries({"role": st.just("user"), "content": st.lists(st.sampled_from(["a<b>", "&lt;c"]), max_size=3)}),
    st.just("not a turn")), max_size=30)


@hypothesis_settings(max_examples=100, deadline=None)
@given(TURNS, st.integers(0, 10))
def test_reading_only_the_last_turns_gives_the_prompt_the_same_history(history, keep):
    whole = [{"role": turn.get("role"), "content": from_chat(presenter.message_text(turn.get("content")))}
             if isinstance(turn, dict) else turn for turn in history]  # every turn read, as the chat did
    assert recent_turns(chat_turns(history, keep), keep) == recent_turns(whole, keep)


def test_a_long_hostile_history_is_read_only_as_far_as_its_last_turns(monkeypatch):
    examined = []

    class CountingStripper(TagStripper):
        def strip(self, text: str) -> str:
            try:
                return super().strip(text)
            finally:
                examined.append(self.examined)

    monkeypatch.setattr(presenter, "TagStripper", CountingStripper)
    history = [{"role": "user", "content": "<" * 5_000} for _ in range(1_000)]  # 5 MB of '<' in all
    turns = chat_turns(history, 8)
    assert len(turns) == 8 and sum(examined) == 8 * 5_000

