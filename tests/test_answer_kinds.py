"""What opens an answer, through the real pipeline (real indexes, embedder, base model on the
serving engine): a yes/no question gets the label its evidence gives and the finding it rests
on, which agree; a question about a table's cells gets the cells or the value computed from
them, cited, never a quote of the rendered table; a quote stands on its own; a multi-hop question
is answered through the entity its first evidence names, citing both hops."""

from __future__ import annotations

import pytest

from assistant.answering.findings import finding, negated
from assistant.answering.pipeline import ChatPipeline
from indexing.pipeline import index_source

REPORT = """Northwind annual report

TABLE:
 | 2019 | 2018
Cash and cash equivalents | 21,956 | 20,003
Dividend yield | 4.1% | 4.6%
Gross deferred tax assets | 124,387 | 131,128

TEXT:
Northwind sells industrial pumps in Europe and Asia. Revenue grew in both regions in 2019.
"""
TRIAL = """Counseling trial

BACKGROUND: Whether telephone counseling increases mammography screening is not known.
METHODS: Women were randomised to usual care or counseling.
RESULTS: Counseling did not significantly change screening rates compared with usual care (61% vs 60%, P = NS).
Costs were similar in both groups.
"""
BROWN = """Brown v. Board of Education

Brown v. Board of Education was decided by the Supreme Court in 1954. Thurgood Marshall argued Brown v. Board of
Education for the plaintiffs. The court ruled that segregated public schools were unconstitutional.
"""
MARSHALL = """Thurgood Marshall

Thurgood Marshall was born in Baltimore in 1908. In 1967 President Lyndon B. Johnson chose Thurgood Marshall for the
nation's highest court, where he served until 1991.
"""


@pytest.fixture(scope="module")
def engine(base_model, tmp_path_factory):
    from assistant.serving.engine import Engine
    from assistant.settings import load_settings

    data = tmp_path_factory.mktemp("kinds") / "data"
    (data / "models").mkdir(parents=True)
    (data / "models" / base_model.path.name).symlink_to(base_model.path)
    settings = load_settings(data_dir=data, _env_file=None, max_new_tokens=24)
    engine = Engine(settings, load_registered=False)
    yield settings, engine
    engine.close()


@pytest.fixture(scope="module")
def pipeline(engine, embedder, tmp_path_factory):
    """Three small domains indexed for real (FAISS and BM25; no graph: passages only)."""
    settings, serving = engine
    corpora = tmp_path_factory.mktemp("kinds-corpora")
    for domain, name, text in (("finance", "northwind.txt", REPORT), ("medicine", "trial.txt", TRIAL),
                               ("law", "brown.txt", BROWN), ("law", "marshall.txt", MARSHALL)):
        (corpora / domain).mkdir(exist_ok=True)
        (corpora / domain / name).write_text(text)
    for domain in ("finance", "medicine", "law"):
        report = index_source(settings.indexing_params, corpora / domain, domain, progress=False, embedder=embedder)
        assert report.ok, report.format()
    return ChatPipeline.create(settings, None, embedder=embedder, engine=serving)


def test_a_yes_no_question_opens_with_the_label_its_finding_gives(pipeline):
    answer = pipeline.respond("Does telephone counseling increase mammography screening?", domain="medicine")
    assert answer.error is None and answer.text.startswith("No. "), answer.text
    label, reason = answer.sentences[:2]
    assert label.supported and not label.contradiction and reason.supported and reason.citations
    assert finding(reason.text) == -1 or negated(reason.text)  # the finding says what the label says
    assert "RESULTS" not in reason.text  # the heading is not part of the quoted finding
    assert all(not s.contradiction for s in answer.sentences), answer.text
    assert answer.stopped == "evidence" and answer.new_tokens == 0  # the findings fill the answer: no model call


@pytest.mark.parametrize("question,expected", [
    ("What were the respective dividend yields in 2018 and 2019?", "Dividend yield: 4.6%, 4.1% in 2018 and 2019 respectively"),
    ("What was the percentage change in gross deferred tax assets between 2018 and 2019?",
     "from 2018 (131,128) to 2019 (124,387) was -5.14%"),
    ("What was the average cash and cash equivalents in 2018 and 2019?", "was 20979.5"),
])
def test_a_question_about_table_cells_gets_the_cells_or_the_computed_value(pipeline, question, expected):
    answer = pipeline.respond(question, domain="finance")
    assert answer.error is None and expected in answer.text, answer.text
    opening = answer.sentences[0]
    assert opening.supported and opening.citations and not opening.contradiction
    assert " | " not in answer.text and "TABLE" not in answer.text  # never the rendered table


def test_a_table_chunk_keeps_its_rows_as_lines(pipeline):
    from indexing.vector_store import VectorStore

    rows = VectorStore(pipeline.settings.domains_dir).get("finance").rows
    table = next(row.text for row in rows if "Dividend yield" in row.text)
    assert "\nDividend yield | 4.1% | 4.6%\n" in table and "\n| 2019 | 2018\n" in table


def test_a_streamed_label_comes_with_its_reason(pipeline):
    """The OpenAI-compatible stream sends each sentence once it is attributed; the label is judged
    by the finding after it (it waits for it), and the pieces join into the final answer."""
    from assistant.answering.pipeline import Answer

    items = list(pipeline.stream("Does telephone counseling increase mammography screening?", domain="medicine",
                                 grounded_pieces=True))
    answer, pieces = items[-1], items[:-1]
    assert isinstance(answer, Answer) and "".join(pieces) == answer.text
    assert pieces[0] == "No." and pieces[1].startswith(" Counseling did not significantly change"), pieces
    assert answer.sentences[0].supported and not answer.sentences[0].contradiction


def test_a_multi_hop_question_goes_through_the_entity_its_first_evidence_names(pipeline):
    """The first search finds who argued the case (the question's inner clause); the answer follows
    that name to a second search and quotes both hops, cited, and the panel shows the chain."""
    from assistant.web.presenter import evidence_markdown

    question = "Which president nominated to the Supreme Court the lawyer who argued Brown v. Board of Education?"
    answer = pipeline.respond(question, domain="law")
    assert answer.error is None and answer.bridge is not None and answer.bridge.entity == "Thurgood Marshall"
    first, second = answer.sentences[:2]
    assert first.text.startswith("Thurgood Marshall argued Brown v. Board of Education") and first.supported
    assert "Lyndon B. Johnson" in second.text and second.supported and second.citations != first.citations
    assert answer.stopped == "evidence" and answer.new_tokens == 0
    panel = evidence_markdown(answer)
    assert "How the answer was reached" in panel and "names **Thurgood Marshall**" in panel

    without = pipeline.settings.model_copy(update={"follow_bridges": False})
    plain = type(pipeline)(without, pipeline.router, pipeline.retriever, pipeline.engine).respond(question, domain="law")
    assert plain.bridge is None and "Lyndon" not in plain.text.split("]")[0]  # the first hop alone does not answer
