"""Hostile input: corpus files that are junk, chat messages that look like Cypher or HTML, and
evidence that carries HTML into the page.

* Corpus readers (fuzzed with hypothesis, plus hand-made worst cases): every file ends as a
  document or as a skipped entry with a reason, never as an exception and never silently.
* Chat through the real ChatPipeline on the demo graph: an answer or a clear limit message; the
  graph holds what it held; every statement sent is one of indexing/cypher.py's constants, so no
  user text is ever part of a query (the embedded FalkorDB inlines parameters, so its escaping
  is checked too: quoted names go in and come out unchanged).
* The presenter escapes HTML in evidence, titles, facts and job messages; Gradio's Chatbot and
  Markdown sanitise what is left (the answer and the question themselves).
"""

from __future__ import annotations

import json
import re
import struct
import tempfile
import zlib
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from assistant.answering.pipeline import MAX_QUESTION_CHARS, QUESTION_SHARE_OF_CONTEXT, Answer, ChatPipeline
from assistant.web.presenter import answer_header, answer_json, evidence_markdown, jobs_markdown
from indexing.graph_walk import WalkNode
from assistant.answering.retrieval import Passage, RankedFact
from indexing import cypher
from indexing.corpus import MAX_HTML_DEPTH, read_corpus
from indexing.graph_store import Fact

# --- corpus readers ------------------------------------------------------------------------------

SUFFIXES = [".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".jsonl", ".PDF", ".Md", ".png", ".zip", ""]
HTML_TAGS = ["div", "p", "span", "script", "style", "title", "h1", "body", "head", "table", "td", "svg", "a", "li"]
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=8)


def _html_tree(children) -> st.SearchStrategy[str]:
    return st.tuples(st.sampled_from(HTML_TAGS), st.text(max_size=10), st.lists(children, max_size=4),
                     st.booleans()).map(lambda t: f"<{t[0]} x='{t[1]}'>" + "".join(t[2]) + (f"</{t[0]}>" if t[3] else ""))


CONTENTS = st.one_of(
    st.binary(max_size=4096),  # random bytes
    st.binary(max_size=2048).map(lambda b: b"%PDF-1.7\n" + b + b"\n%%EOF\n"),  # PDFs that are not PDFs
    st.text(max_size=2000).map(lambda t: t.encode("utf-8", "surrogatepass")),  # random unicode, even lone surrogates
    st.recursive(st.text(max_size=40), _html_tree, max_leaves=30).map(lambda h: h.encode("utf-8", "surrogatepass")),
    st.lists(st.one_of(st.dictionaries(st.sampled_from(["id", "domain", "title", "text"]), JSON_VALUES, max_size=4)
                       .map(json.dumps), st.text(max_size=60)), max_size=6)
    .map(lambda rows: "\n".join(rows).encode("utf-8", "surrogatepass")),
)


def assert_every_file_reported(folder: Path, files: list[Path]) -> None:
    """read_corpus never raises, and each file became a document or a skipped entry with a reason
    (a JSONL file's lines count as the file)."""
    result = read_corpus(folder)
    sources = [d.source for d in result.documents] + [s.source for s in result.skipped]
    for path in files:
        mine = [s for s in sources if s == str(path) or s.startswith(f"{path}:")]
        assert mine, f"{path.name} ({path.stat().st_size} bytes) was neither read nor reported skipped"
    assert all(s.reason.strip() for s in result.skipped)
    assert result.files_seen == len(files)


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(SUFFIXES), CONTENTS), min_size=1, max_size=4))
def test_fuzzed_corpus_files_are_read_or_skipped_with_a_reason(files):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "fuzz"
        folder.mkdir()
        paths = []
        for number, (suffix, content) in enumerate(files):  # any content under any suffix: wrong suffixes too
            path = folder / f"file{number}{suffix}"
            path.write_bytes(content)
            paths.append(path)
        assert_every_file_reported(folder, paths)


def _pdf(objects: list[bytes]) -> bytes:
    """A PDF with a correct cross-reference table, so the reader gets past the header checks."""
    out, offsets = bytearray(b"%PDF-1.7\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"
PAGE = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 "
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>")


def _flate_bomb_pdf() -> bytes:
    """A page whose content stream inflates to 100 MB from ~100 KB: a valid zlib stream made of
    one flushed block of zeros repeated (cheaper than compressing 100 MB)."""
    block, content = bytes(1 << 20), b"BT /F1 12 Tf (A) Tj ET\n"
    compressor = zlib.compressobj(9)
    first = compressor.compress(content + block) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    checksum = zlib.adler32(content + block)
    for _ in range(99):
        checksum = zlib.adler32(block, checksum)
    bomb = first + again * 99 + compressor.flush()[:-4] + struct.pack(">I", checksum)
    return _pdf([CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", PAGE,
                 b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(bomb), bomb)])


# (file name, content (or what makes it), what the reader must do: "read" with this text in it, or "skip" with this reason)
WORST_CASES = [
    ("nested-divs.html", b"<div>" * 100_000 + b"deep" + b"</div>" * 100_000, ("skip", "nested deeper")),
    ("nested-mixed.htm", b"<span><section>" * 1000 + b"deep", ("skip", "nested deeper")),
    ("nested-ok.html", b"<div>" * (MAX_HTML_DEPTH - 10) + b"deep enough" + b"</div>" * (MAX_HTML_DEPTH - 10),
     ("read", "deep enough")),
    ("unclosed-paragraphs.html", b"<p>para" * 5000 + b"<li>item" * 5000, ("read", "para")),
    ("huge-line.txt", b"word" * 1_250_000, ("read", "wordword")),
    ("huge-line.jsonl", json.dumps({"id": "big", "text": "word " * 1_000_000}).encode(), ("read", "word word")),
    ("huge-text-node.html", b"<p>" + b"x" * 5_000_000 + b"</p>", ("read", "xxxx")),
    ("blank-lines.jsonl", b"\n \n\t\n", ("skip", "no JSON lines")),
    ("html.pdf", b"<html><body>not a pdf</body></html>", ("skip", "PDF")),
    ("zip.pdf", b"PK\x03\x04" + bytes(64), ("skip", "PDF")),
    ("truncated.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog", ("skip", "PDF")),
    ("page-cycle.pdf", _pdf([CATALOG, b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
                             b"<< /Type /Pages /Kids [2 0 R] /Count 1 /Parent 2 0 R >>"]), ("skip", "PDF")),
    ("deep-array.pdf", _pdf([CATALOG[:-2] + b" /X " + b"[" * 5000 + b"]" * 5000 + b" >>",
                             b"<< /Type /Pages /Kids [] /Count 0 >>"]), ("skip", "PDF")),
    ("flate-bomb.pdf", _flate_bomb_pdf, ("skip", "PDF")),
    ("pdf.txt", b"%PDF-1.7\n\x00\x01binary\x00", ("skip", "binary")),
    ("utf16.md", "# Title\nText".encode("utf-16"), ("skip", "binary")),
    ("latin1.html", "<p>caf\xe9</p>".encode("latin-1"), ("skip", "UTF-8")),
    ("archive.zip", b"PK\x05\x06" + bytes(18), ("skip", "unsupported")),
]


@pytest.mark.parametrize("name,content,expected", WORST_CASES, ids=[case[0] for case in WORST_CASES])
def test_worst_case_files_are_read_or_skipped_with_a_reason(tmp_path, name, content, expected):
    folder = tmp_path / "worst"
    folder.mkdir()
    (folder / name).write_bytes(content() if callable(content) else content)
    result = read_corpus(folder)
    outcome, words = expected
    if outcome == "read":
        assert not result.skipped and len(result.documents) == 1 and words in result.documents[0].text
    else:
        assert not result.documents and len(result.skipped) == 1, result.skipped
        assert words in result.skipped[0].reason, result.skipped[0].reason


# --- chat input through the real pipeline ------------------------------------------------------

# Questions that must get an ordinary answer; the entity named must still be found in the graph.
HOSTILE_QUESTIONS = {
    "control and odd characters": ("What reverses\x00 the effect\x1b[31m of warfarin?\x07\x7f\u202e\u200b \ud800 "
                                   "\U0001f9ea \U0010ffff \ufeff", "warfarin"),  # \ud800: a lone surrogate
    "cypher injection": ("warfarin') MATCH (n) DETACH DELETE n //", "warfarin"),
    "cypher syntax": ("What is `warfarin`? $x {} {x: 1} }) RETURN 1 UNION MATCH (n) DELETE n;", "warfarin"),
    "quotes and backslashes": ("What reverses the effect of 'warfarin'? \\' \" \\\\ \\n", "warfarin"),
    "script tag": ("<script>alert(1)</script> What does metformin treat?", "metformin"),
    "img onerror": ('<img src=x onerror="alert(document.cookie)"> What reverses warfarin?', "warfarin"),
}
# Fragments that must never be part of a statement sent to the graph.
INJECTED = ["DETACH DELETE n //", "$x {}", "UNION MATCH", "alert(", "onerror", "\\\\", "\u202e"]


CONTEXT_TOKENS = 512  # a small prompt budget keeps each answer cheap; the question may use 2/3 of it
QUESTION_TOKENS = int(CONTEXT_TOKENS * QUESTION_SHARE_OF_CONTEXT)


@pytest.fixture(scope="module")
def hostile_pipeline(demo_env, running_app, embedder):
    """A pipeline on the demo indexes and graph that shares the served app's model (no second
    model load) and answers in 4 tokens: the answer's content is not what is tested here."""
    settings = demo_env.settings.model_copy(update={"max_new_tokens": 4, "context_tokens": CONTEXT_TOKENS})
    return ChatPipeline.create(settings, demo_env.graph, embedder=embedder, engine=running_app.pipeline.engine)


def _graph_counts(graph) -> dict:
    return {domain: graph.stats(domain) for domain in graph.domains()}


def _known_statements() -> set[str]:
    """Every statement cypher.py defines: a statement sent that is not one of these was built."""
    known = {value for value in vars(cypher).values() if isinstance(value, str)}
    for table in (cypher.STATS, cypher.DELETE_VERSION_BATCH):
        known |= set(table.values())
    return known | set(cypher.FALKORDB.index_statements()) | set(cypher.NEO4J.index_statements())


@pytest.mark.parametrize("message,reply", [
    ("", "Please type a question."), ("   \n\t \r\n ", "Please type a question."),
    ("x" * 100_000, "That message is too long (100000 characters"),
    ("\U0001f9ea" * 1000, f"That message is too long (3000 tokens; the limit is {QUESTION_TOKENS})"),  # few characters
    ("".join(chr(0x10000 + i) for i in range(MAX_QUESTION_CHARS)), "That message is too long (15990 tokens"),
], ids=["empty", "whitespace", "100k characters", "1000 emoji", "4000 rare characters"])
def test_empty_and_oversized_messages_get_a_clear_limit_message(hostile_pipeline, message, reply):
    answer = hostile_pipeline.respond(message)
    assert answer.text.startswith(reply) and answer.error in ("empty question", "question too long")
    assert not answer.facts and not answer.passages


def test_hostile_questions_are_answered_and_never_reach_a_query(hostile_pipeline, demo_env, monkeypatch):
    connection = demo_env.connection
    sent: list[tuple[str, dict]] = []
    original = connection.query

    def recording(statement, params=None, **kwargs):
        sent.append((statement, params or {}))
        return original(statement, params, **kwargs)

    before = _graph_counts(demo_env.graph)
    monkeypatch.setattr(connection, "query", recording)
    for label, (question, entity) in HOSTILE_QUESTIONS.items():
        answer = hostile_pipeline.respond(question)
        assert isinstance(answer, Answer) and answer.error is None and answer.text, (label, answer.error)
        # (a question that is mostly Cypher may be off-topic: then all domains answer, which is fine)
        assert answer.domain in ("medicine", None) and not answer.degraded, (label, answer.notes)
        assert any(entity in f.fact.head.lower() or entity in f.fact.tail.lower() for f in answer.facts), label
        json.dumps(answer_json(answer))  # the API can send it
    forced = hostile_pipeline.respond("What reverses warfarin?", domain="') MATCH (n) DETACH DELETE n //")
    assert forced.error is None and forced.domain == "medicine"  # an unknown domain: routed as usual
    assert any("has no usable index" in note for note in forced.notes)
    monkeypatch.undo()
    assert sent, "the graph was never asked: the capture would prove nothing"
    unknown = {statement for statement, _ in sent} - _known_statements()
    assert not unknown, f"statements not from indexing/cypher.py (string-built?): {unknown}"
    for statement, _ in sent:
        assert not any(fragment in statement for fragment in INJECTED), statement
    assert _graph_counts(demo_env.graph) == before  # nothing deleted or added


def test_a_question_at_the_token_limit_is_answered_within_the_budget(hostile_pipeline):
    count = hostile_pipeline.engine.count_tokens
    question = "What reverses warfarin?"
    while count(question + " the") <= QUESTION_TOKENS:  # " the" is one token
        question += " the"
    assert count(question) == QUESTION_TOKENS
    answer = hostile_pipeline.respond(question)
    assert answer.error is None and answer.text and answer.prompt_tokens <= CONTEXT_TOKENS
    over = hostile_pipeline.respond(question + " the")
    assert over.error == "question too long" and f"the limit is {QUESTION_TOKENS}" in over.text


def test_the_api_takes_hostile_messages_without_failing(running_app):
    from gradio_client import Client

    hostile_domain = "') MATCH (n) DETACH DELETE n //"
    too_long = Client(running_app.url, verbose=False).predict("<b>" * 40_000, hostile_domain, api_name="/ask")
    assert too_long["error"] == "question too long" and "limit is" in too_long["text"]
    # JSON can carry a lone surrogate ("\ud800"), which no tokenizer takes; clients refuse to send
    # one, so it goes as a raw body, the way a script could.
    body = json.dumps({"data": ["\ud800 " * 2001, hostile_domain]})  # ASCII: the surrogate stays escaped
    call = httpx.post(f"{running_app.url}gradio_api/call/ask", content=body.encode(),
                      headers={"Content-Type": "application/json"}, timeout=30)
    stream = httpx.get(f"{running_app.url}gradio_api/call/ask/{call.json()['event_id']}", timeout=60).text
    assert "event: complete" in stream and "question too long" in stream, stream[:500]


def test_quoted_names_round_trip_through_the_graph(settings, store, embedder, tmp_path):
    """The embedded FalkorDB pastes parameters into the query text: names with quotes, backslashes,
    newlines, tabs and unicode must be stored, found and read back exactly."""
    from indexing.pipeline import index_source

    head, tail = "O'Brien's \"Rule\" \\d", "C:\\new\\table ' } RETURN 1 //\nsecond line\ttab ünïcødé"
    title = "It's a \"test\" \\ title ünïcødé"
    corpus = tmp_path / "quirks"
    corpus.mkdir()
    (corpus / "rules.md").write_text(f"# {title}\n\nO'Brien's Rule governs tables. The rule was written by lawyers.\n")
    (corpus / "triples.jsonl").write_text(json.dumps({"head": head, "relation": "applies to", "tail": tail}) + "\n")
    report = index_source(settings.indexing_params, corpus, "quirks", progress=False, graph=store, embedder=embedder)
    assert report.ok, report.format()
    facts = [f for f in store.all_facts("quirks") if f.relation == "applies_to"]
    assert [(f.head, f.tail) for f in facts] == [(head, tail)]
    assert store.document_titles("quirks", ["rules.md"]) == {"rules.md": title}
    links = store.link_entities("quirks", "What does O'Brien's \"Rule\" \\d apply to?")
    assert facts[0].head_key in {link.key for link in links}
    found = store.facts("quirks", [facts[0].head_key])
    assert any(f.tail == tail for f in found)


# --- nothing is rendered as HTML ---------------------------------------------------------------

SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(1)">'


def _answer_with_html() -> Answer:
    fact = Fact(head=SCRIPT, head_key="h", relation="made_<b>", tail=IMG, tail_key="t", confidence=0.9, count=1,
                chunk_ids=("a#0",), doc_ids=("a.md",), curated=False, hop=1)
    passage = Passage(chunk_id="x`" + IMG + "`.md#0", doc_id="x.md", title=IMG + " title", text=SCRIPT + " body",
                      domain="medicine", score=0.5, dense_rank=1, lexical_rank=None)
    walk = [WalkNode("entity", "k", SCRIPT, 0.2), WalkNode("passage", passage.chunk_id, IMG + " title", 0.1, "x.md")]
    return Answer(text=SCRIPT, domain="medicine", facts=[RankedFact(fact, "medicine", 0.9, titles=(SCRIPT,))],
                  passages=[passage], notes=[IMG + " note"], adapter="medicine-v1", walk=walk)


def _rendered_tags(markdown: str) -> set[str]:
    """The HTML tags a CommonMark renderer (markdown-it, as Gradio's Markdown is) makes of it."""
    from markdown_it import MarkdownIt

    return {tag.lower() for tag in re.findall(r"</?([a-zA-Z][a-zA-Z0-9]*)", MarkdownIt("commonmark").render(markdown))}


def test_the_presenter_escapes_html_in_evidence_titles_facts_and_notes():
    markdown = evidence_markdown(_answer_with_html()) + "\n" + answer_header(_answer_with_html())
    assert not _rendered_tags(markdown) & {"script", "img", "b"}, markdown
    assert "\\<script\\>" in markdown and "\\<img" in markdown  # shown as text (escaped), not dropped
    jobs = jobs_markdown({"jobs": [{"id": "reindex-1`<img src=x>", "target": SCRIPT, "status": "failed",
                                    "progress": 1.0, "message": IMG, "result": SCRIPT + "</pre><img src=x>"}]})
    allowed = {"details", "summary", "pre", "ul", "li", "code", "strong", "p"}
    assert _rendered_tags(jobs) <= allowed, jobs


def test_gradio_sanitises_what_the_app_renders_as_markdown(running_app):
    """The answer and the question go to the Chatbot as typed: its HTML sanitiser is what keeps a
    <script> or an onerror attribute from running, so it must stay on (Gradio's default)."""
    import gradio as gr

    rendered = [block for block in running_app.app.blocks.values() if isinstance(block, (gr.Chatbot, gr.Markdown))]
    assert any(isinstance(block, gr.Chatbot) for block in rendered)
    assert all(block.sanitize_html for block in rendered), [b.elem_id for b in rendered if not b.sanitize_html]
