"""The chat's facts pictures (issue 33, item 15): one file per picture, however many users ask the
same question; drawn from many threads at once without pyplot's global state; and a picture that
cannot be drawn costs only the picture, never the answer the chat has already written.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import matplotlib.pyplot
from PIL import Image

from assistant.answering.pipeline import Answer
from assistant.answering.retrieval import RankedFact
from assistant.web.presenter import facts_picture, message_text
from indexing.graph_render import draw_subgraph
from indexing.graph_store import Fact, Subgraph

CHAT_THREADS = 8  # ui_concurrency: the chat events worked on at once


def _answer(text: str) -> Answer:
    fact = Fact("vitamin K", "vitamin_k", "reverses", "warfarin", "warfarin", 0.9, 2, ("w.md#1",), ("w.md",), False, 1)
    return Answer(text=text, domain="medicine", facts=[RankedFact(fact, "medicine", 0.9, ("Warfarin",))])


def _subgraph(number: int) -> Subgraph:
    nodes = [{"key": f"n{i}", "name": f"Entity {number}-{i}", "type": "PERSON"} for i in range(4)]
    edges = [{"head": f"n{i}", "relation": "related_to", "tail": f"n{i + 1}", "confidence": 0.9} for i in range(3)]
    return Subgraph(nodes, edges)


def test_two_answers_with_the_same_text_get_pictures_of_their_own(tmp_path):
    first = facts_picture(_answer("Vitamin K reverses warfarin [1]."), tmp_path)
    second = facts_picture(_answer("Vitamin K reverses warfarin [1]."), tmp_path)
    assert first != second and first.is_file() and second.is_file()


def test_pictures_drawn_from_many_threads_at_once_are_each_whole_and_their_own(tmp_path, monkeypatch):
    """Each thread's PNG is the picture its subgraph gives when drawn alone. pyplot's global
    figure state is not thread-safe, so the drawing must not touch it at all."""
    alone = [Image.open(draw_subgraph(_subgraph(n), tmp_path / f"alone-{n}.png", title=f"graph {n}")).tobytes()
             for n in range(CHAT_THREADS)]

    def no_pyplot_state(*args, **kwargs):
        raise AssertionError("pyplot's global figure state was used")

    for name in ("figure", "subplots", "gcf", "gca", "close"):
        monkeypatch.setattr(matplotlib.pyplot, name, no_pyplot_state)
    start = threading.Barrier(CHAT_THREADS)

    def draw(number: int):
        start.wait(timeout=60)
        return draw_subgraph(_subgraph(number), tmp_path / f"together-{number}.png", title=f"graph {number}")

    with ThreadPoolExecutor(CHAT_THREADS) as pool:
        drawn = list(pool.map(draw, range(CHAT_THREADS)))
    assert len(set(drawn)) == CHAT_THREADS
    for number, path in enumerate(drawn):
        with Image.open(path) as picture:
            assert picture.format == "PNG"
            assert picture.tobytes() == alone[number]  # whole, and not mixed with another thread's


def test_a_picture_that_cannot_be_drawn_leaves_the_answer(running_app, monkeypatch, caplog):
    from gradio_client import Client

    import indexing.graph_render

    def broken(*args, **kwargs):
        raise RuntimeError("the renderer broke")

    monkeypatch.setattr(indexing.graph_render, "draw_subgraph", broken)
    client = Client(running_app.url, verbose=False)
    history, _, header, evidence, picture = client.predict("What reverses the effect of warfarin?", [], "auto",
                                                           api_name="/chat")
    assert picture is None  # no picture...
    assert "vitamin k" in message_text(history[-1]["content"]).lower() and "**Domain:**" in header and "warfarin" in evidence  # ...the answer
    assert "drawing the facts picture failed" in caplog.text

