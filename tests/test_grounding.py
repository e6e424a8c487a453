"""Answers that keep to their evidence, piece by piece on fixed texts: sentences and the sentence
limit, sentence-level attribution with the real embedder (a supported sentence, an invented one,
a wrong citation, a number that differs), and graph-facts-first leads."""

from __future__ import annotations

import pytest

from adapters.fact_wording import FactLine
from adapters.prompts import NO_ANSWER, number_evidence
from assistant.answering.attribution import attribute, render
from assistant.answering.fact_answers import is_yes_no_question, lead_for
from assistant.answering.sentences import SentenceLimit, answer_sentences, citations_in, split_sentences, without_citations

# --- sentences ---------------------------------------------------------------------------------


def test_sentences_keep_their_citations_and_ignore_abbreviations_and_list_markers():
    assert split_sentences("Aspirin inhibits COX [2]. Fleming found it. [1] Then more") == [
        "Aspirin inhibits COX [2].", "Fleming found it. [1]", "Then more"]
    assert split_sentences("Marbury v. Madison was decided in 1803 [1]. The U.S. Senate agreed.") == [
        "Marbury v. Madison was decided in 1803 [1].", "The U.S. Senate agreed."]
    assert split_sentences("It is 1.5 mg.\n1. First.\n2. Second") == ["It is 1.5 mg.", "1. First.", "2. Second"]
    assert answer_sentences("No. Metformin does not cause weight gain [3]. Yes.") == [
        "No. Metformin does not cause weight gain [3].", "Yes."]
    assert citations_in("A [1, 3] b [3][4].") == [1, 3, 4]
    assert without_citations("Aspirin inhibits COX [2] [5].") == "Aspirin inhibits COX."


def test_the_sentence_limit_waits_for_a_citation_after_the_full_stop():
    one = SentenceLimit(1)
    assert not one("Aspirin inhibits COX.")
    assert not one("Aspirin inhibits COX. [") and not one("Aspirin inhibits COX. [2")
    assert one("Aspirin inhibits COX. [2] It")
    assert one("Aspirin inhibits COX.\nQuestion")
    assert not SentenceLimit(2)("Yes. Aspirin inhibits COX [2].")  # the label is not a sentence of its own
    assert SentenceLimit(2).full("Aspirin inhibits COX [2]. It thins blood [3].")


# --- attribution --------------------------------------------------------------------------------

EVIDENCE = number_evidence(
    ["Alexander Fleming discover penicillin", "aspirin inhibit cyclooxygenase", "vitamin K reverse effect of warfarin"],
    [("Aspirin", "Aspirin is a nonsteroidal anti-inflammatory drug. It irreversibly inhibits the enzyme "
                 "cyclooxygenase, which lowers prostaglandin production."),
     ("FDIC", "The FDIC was created by the Banking Act of 1933. Coverage started on 1 January 1934 with a limit "
              "of $2,500 per depositor.")])


@pytest.fixture(scope="module")
def encode(embedder):
    return embedder.encode


def _one(text: str, encode, **options):
    sentences = attribute(text, EVIDENCE, encode, "What does aspirin inhibit?", **options)
    assert len(sentences) == 1
    return sentences[0]


def test_a_supported_sentence_keeps_its_citation(encode):
    sentence = _one("Aspirin inhibits cyclooxygenase [2].", encode)
    assert sentence.supported and sentence.citations == (2,) and sentence.score > 0.9
    assert sentence.text == "Aspirin inhibits cyclooxygenase [2]."
    assert 4 in sentence.support  # the passage says it too, but the sentence cited the fact


def test_a_supported_sentence_without_a_citation_gets_its_best_item(encode):
    sentence = _one("Vitamin K reverses the effect of warfarin.", encode)
    assert sentence.supported and sentence.citations == (3,)
    assert sentence.text == "Vitamin K reverses the effect of warfarin [3]."


def test_an_invented_sentence_is_unsupported_and_loses_its_citation(encode):
    invented = _one("Aspirin inhibits phospholipid peroxisomeprocalinole phosphate lipase [2].", encode)
    assert not invented.supported and invented.citations == () and "[2]" not in invented.text
    florey = _one("The British scientist Howard Florey discovered penicillin in 1947 [1].", encode)
    assert not florey.supported and florey.citations == ()


def test_a_sentence_that_only_restates_the_question_is_not_an_answer(encode):
    (echo,) = attribute("Aspirin inhibits something [2].", EVIDENCE, encode, "What does aspirin inhibit?")
    assert not echo.supported and echo.citations == ()
    label, reason = attribute("Yes, aspirin inhibits cyclooxygenase.", EVIDENCE, encode,
                              "Does aspirin inhibit cyclooxygenase?")
    assert label.text == "Yes." and label.supported  # judged by its reason
    assert reason.text == "Aspirin inhibits cyclooxygenase [2]." and reason.supported  # may restate the question
    label, reason = attribute("No, aspirin does not inhibit cyclooxygenase.", EVIDENCE, encode,
                              "Does aspirin inhibit cyclooxygenase?")
    assert not reason.supported and reason.contradiction  # it denies what the evidence says
    assert not label.supported and label.contradiction  # and so does the label (tests/test_support_polarity.py)


def test_strict_grounding_keeps_the_label_of_a_yes_no_answer_whose_reason_is_invented(encode):
    question = "Is paracetamol an anti-inflammatory drug?"
    sentences = attribute("No, paracetamol is not one due to its lack of selectivity for the COX-7 pathway.",
                          number_evidence([], [("Paracetamol", "Paracetamol is a pain reliever. It is not an "
                                                               "anti-inflammatory drug.")]), encode, question)
    assert [(s.text.split()[0], s.supported) for s in sentences] == [("No", True), ("Paracetamol", False)]
    assert render([s for s in sentences if s.supported]) == "No [1]."


def test_a_wrong_citation_is_replaced_by_the_item_that_supports_the_sentence(encode):
    sentence = _one("Alexander Fleming discovered penicillin [5].", encode)
    assert sentence.supported and sentence.citations == (1,) and sentence.draft_citations == (5,)
    assert sentence.text == "Alexander Fleming discovered penicillin [1]."
    invalid = _one("Alexander Fleming discovered penicillin [9].", encode)  # no item 9 at all
    assert invalid.citations == (1,)


def test_a_number_that_differs_from_the_evidence_is_unsupported(encode):
    wrong = _one("Coverage started in 1934 with a limit of $5,000 per depositor [5].", encode)
    assert not wrong.supported and wrong.citations == () and wrong.score <= 0.25
    right = _one("Coverage started in 1934 with a limit of $2,500 per depositor.", encode)
    assert right.supported and right.citations == (5,)


def test_strict_grounding_leaves_out_unsupported_sentences(encode):
    text = "Aspirin inhibits cyclooxygenase [2]. There are two types of aspirin, aspirin A and aspirin B [4]."
    lenient = attribute(text, EVIDENCE, encode, "What does aspirin inhibit?")
    assert [s.supported for s in lenient] == [True, False]
    strict = attribute(text, EVIDENCE, encode, "What does aspirin inhibit?", strict=True)
    assert render(strict) == "Aspirin inhibits cyclooxygenase [2]."
    assert render(attribute("Aspirin A and B are two types [4].", EVIDENCE, encode, strict=True)) == NO_ANSWER


def test_the_no_answer_line_is_not_a_claim_and_the_sentence_cap_holds(encode):
    (sentence,) = attribute(NO_ANSWER, EVIDENCE, encode)
    assert not sentence.claim and sentence.supported and sentence.citations == ()
    capped = attribute("Aspirin inhibits cyclooxygenase. Fleming discovered penicillin. Vitamin K reverses warfarin.",
                       EVIDENCE, encode, max_sentences=2)
    assert len(capped) == 2 and all(s.supported for s in capped)


# --- graph facts first ---------------------------------------------------------------------------

FACTS = [FactLine(1, "vitamin K", "reverse", "effect of warfarin"), FactLine(2, "aspirin", "inhibit", "cyclooxygenase"),
         FactLine(3, "Alexander Fleming", "discover", "penicillin"), FactLine(4, "aspirin", "inhibit", "thromboxane"),
         FactLine(5, "metformin", "is_a", "biguanide"), FactLine(6, "Earl Warren", "appoint", "Chief Justice"),
         FactLine(7, "Eisenhower", "appoint", "Earl Warren"),
         FactLine(8, "FDIC", "abbreviation_of", "Federal Deposit Insurance Corporation")]


@pytest.mark.parametrize("question,lead", [
    ("What does aspirin inhibit?", "Aspirin inhibits cyclooxygenase [2] and thromboxane [4]."),
    ("Who discovered penicillin?", "Alexander Fleming discovered penicillin [3]."),
    ("What reverses the effect of warfarin?", "Vitamin K reverses effect of warfarin [1]."),
    ("What does aspirin inhibit, and who discovered penicillin?",
     "Aspirin inhibits cyclooxygenase [2] and thromboxane [4]. Alexander Fleming discovered penicillin [3]."),
    ("What drug class does metformin belong to?", "Metformin is a biguanide [5]."),
    ("Which president appointed Earl Warren?", "Eisenhower appointed Earl Warren [7]."),  # not fact 6: order
    ("What does FDIC stand for?", "FDIC stands for Federal Deposit Insurance Corporation [8]."),
    ("Does aspirin inhibit cyclooxygenase?", "Yes. Aspirin inhibits cyclooxygenase [2]."),
    ("What does metformin treat?", None),  # no fact says
    ("Does aspirin cause bleeding?", None),  # a yes/no question no fact confirms
])
def test_a_fact_that_answers_the_question_opens_the_answer(question, lead):
    found = lead_for(question, FACTS, max_sentences=2)
    assert (found.text if found else None) == lead


def test_facts_that_give_the_same_answer_share_one_mention():
    facts = [FactLine(1, "vitamin K", "reverse", "effect of warfarin"), FactLine(2, "protamine", "reverse", "heparin"),
             FactLine(3, "vitamin K", "reverse", "warfarin")]
    lead = lead_for("What reverses the effect of warfarin?", facts, max_sentences=2)
    assert lead.text == "Vitamin K reverses effect of warfarin [1] [3]." and lead.numbers == (1, 3)


def test_leads_respect_the_sentence_limit_and_yes_no_questions_are_recognised():
    lead = lead_for("What does aspirin inhibit, and who discovered penicillin?", FACTS, max_sentences=1)
    assert lead.text == "Aspirin inhibits cyclooxygenase [2] and thromboxane [4]." and lead.numbers == (2, 4)
    assert is_yes_no_question("Is weight gain a usual effect of metformin?")
    assert not is_yes_no_question("Which law created the Federal Reserve System?")
    assert not is_yes_no_question("Is it true which court decided?")


def test_a_fact_parsed_across_a_tables_rows_does_not_open_the_answer():
    """TAT-QA: "devices sell 15,343\nActive users" came from rows read as a sentence."""
    rows = [FactLine(1, "devices", "sell", "15,343\nActive users"), FactLine(2, "Revenue | 2019", "include", "fees")]
    assert lead_for("How many devices were sold?", rows, max_sentences=2) is None
    assert lead_for("What does revenue include?", rows, max_sentences=2) is None


def test_a_fact_without_the_year_asked_for_gives_way_to_the_sentence_that_has_it(encode):
    """The demo's "Supreme Court decided case [5]." for "In which year ... Marbury v. Madison?"."""
    from assistant.answering.answer_writer import opening
    from assistant.settings import Settings

    evidence = number_evidence(["Supreme Court decide landmark case"],
                               [("Marbury v. Madison", "The Supreme Court decided Marbury v. Madison in 1803. "
                                                       "The opinion was written by John Marshall.")])
    line = FactLine(1, "Supreme Court", "decide", "landmark case")
    question = "In which year did the Supreme Court decide Marbury v. Madison?"
    assert lead_for(question, [line], 2).text == "Supreme Court decided landmark case [1]."
    lead = opening(Settings(), encode, question, [_ranked(line)], evidence)
    assert lead.kind == "quote" and "1803 [2]" in lead.text
    # not asked for a number, a year or a cause, the fact still opens the answer
    named = opening(Settings(), encode, "What did the Supreme Court decide?", [_ranked(line)], evidence)
    assert named.kind == "facts" and named.text == "Supreme Court decided landmark case [1]."


def _ranked(line: FactLine):
    from assistant.answering.retrieval import RankedFact
    from indexing.graph_store import Fact

    return RankedFact(Fact(line.head, line.head.lower(), line.relation, line.tail, line.tail.lower(), 1.0, 1, ("c#1",),
                           ("d",), False, 1), "law", 1.0)


# --- quoting the evidence when no fact answers ------------------------------------------------------

QUOTED = number_evidence(
    ["Banking Act of 1933 create Federal Deposit Insurance Corporation"],
    [("FDIC", "The FDIC was created by the Banking Act of 1933. Coverage started on 1 January 1934. "
              "The initial coverage limit was $2,500 per depositor."),
     ("Bank of England", "The Bank of England is the second-oldest central bank, after the Riksbank, which was founded "
                         "in 1668. The bank was founded in 1694 to act as the banker of the English government.")])


@pytest.mark.parametrize("question,expected", [
    ("What was the FDIC's deposit insurance limit per depositor when coverage started in 1934?",
     "The initial coverage limit was $2,500 per depositor [2]."),
    ("In what year was the Bank of England founded?",
     "The bank was founded in 1694 to act as the banker of the English government [3]."),
    ("How do I bake sourdough bread?", None),
])
def test_the_evidence_sentence_that_answers_is_quoted_with_its_citation(question, expected, encode):
    from assistant.answering.evidence_quotes import answer_type, best_quote

    quote = best_quote(question, QUOTED, encode)
    assert (quote.text if quote else None) == expected
    assert answer_type("How many justices sat?") == "number" and answer_type("When did it start?") == "year"
    assert answer_type("Who discovered penicillin?") == "name" and answer_type("How?") is None


def test_a_quote_stands_on_its_own_and_is_never_a_table_row(encode):
    from assistant.answering.evidence_quotes import best_quote

    items = number_evidence([], [
        ("Metformin", "Metformin is studied widely. It is the first-line drug treatment for type 2 diabetes in most "
                      "clinical guidelines."),
        ("Annual report", "TABLE:\n| 2019 | 2018\nFirst-line drug treatment revenue | 4,100 | 3,900")])
    quote = best_quote("What is the first-line drug treatment for type 2 diabetes?", items, encode)
    assert quote.text == ("Metformin is the first-line drug treatment for type 2 diabetes in most clinical "
                          "guidelines [1].")  # "It" became the passage's subject
    rows = number_evidence([], [("Annual report", "TABLE:\n| 2019 | 2018\nCash and cash equivalents | 21,956 | "
                                                  "20,003\nTEXT: Cash is held in euros.")])
    assert best_quote("How much cash and cash equivalents were there in 2019?", rows, encode) is None


def test_a_typed_question_quotes_only_a_sentence_holding_its_type(encode):
    from assistant.answering.evidence_quotes import best_quote

    items = number_evidence([], [("Bank of England", "The Bank of England is the central bank of the United "
                                                     "Kingdom. The bank acts as the government's banker.")])
    assert best_quote("In what year was the Bank of England founded?", items, encode) is None  # no year: no quote


@pytest.mark.parametrize("question,kind", [
    ("Why?", "reason"), ("What was the reason for the change in other income?", "reason"),
    ("What is the increase in total revenue attributed to?", "reason"),
    ("How many quarters did net income attributable to VMware exceed $1,000 million?", "number"),  # not a cause
    ("When did it start?", "year"), ("When are multi-year agreement customers invoiced?", None),  # how it is done
    ("Which country became the 20th member of the euro area when it adopted the euro in 2023?", "name"),
])
def test_what_a_question_asks_for(question, kind):
    from assistant.answering.evidence_quotes import answer_type

    assert answer_type(question) == kind


def test_a_when_question_about_how_things_are_done_quotes_a_sentence_without_a_year(encode):
    from assistant.answering.evidence_quotes import best_quote

    items = number_evidence([], [("Contract balances", "The agreements were first signed with customers in 2018. For "
                                                       "multi-year agreements, we generally invoice customers annually "
                                                       "at the beginning of each annual coverage period.")])
    assert best_quote("When are multi-year agreement customers invoiced?", items, encode).text == (
        "For multi-year agreements, we generally invoice customers annually at the beginning of each annual "
        "coverage period [1].")


def test_a_reason_question_prefers_the_sentence_that_gives_a_cause(encode):
    from assistant.answering.evidence_quotes import best_quote

    items = number_evidence([], [("Other income", "Other income changed by $119.4 million from 2018 to 2019. Other "
                                                  "income changed because of a $158.3 million gain on an equity "
                                                  "investment from 2018 to 2019.")])
    assert best_quote("What was the reason for the change in other income from 2018 to 2019?", items,
                      encode).text == ("Other income changed because of a $158.3 million gain on an equity investment "
                                       "from 2018 to 2019 [1].")


def test_a_sentence_opening_with_a_pronoun_is_quoted_after_the_sentence_it_continues(encode):
    from assistant.answering.evidence_quotes import best_quote

    items = number_evidence([], [("Annual report excerpt: stock-based compensation expense by type of award",
                                  "As of December 31, 2019, there was $1,882 of unrecognized stock-based compensation "
                                  "expense related to unvested RSUs. These costs are expected to be recognized over a "
                                  "weighted-average period of 2.33 years.")])
    quote = best_quote("How long is it expected to take for the unrecognized stock-based compensation expense related "
                       "to unvested RSUs to be recognized?", items, encode)
    assert quote.text == ("As of December 31, 2019, there was $1,882 of unrecognized stock-based compensation expense "
                          "related to unvested RSUs. These costs are expected to be recognized over a weighted-average "
                          "period of 2.33 years [1].")


# --- how the chat and the evidence panel show it ------------------------------------------------------

def test_the_chat_links_each_citation_to_its_evidence_item_and_marks_unsupported_sentences():
    from assistant.answering.attribution import AnswerSentence
    from assistant.answering.pipeline import Answer
    from assistant.web.presenter import answer_html, evidence_anchor, evidence_markdown, from_chat
    from assistant.answering.retrieval import Passage, RankedFact
    from indexing.graph_store import Fact

    fact = RankedFact(Fact("aspirin", "aspirin", "inhibit", "cyclooxygenase", "cyclooxygenase", 0.9, 2, ("a.md#1",),
                           ("a.md",), False, 1), "medicine", 0.8, ("Aspirin",))
    passages = [Passage(f"p{i}.md#1", f"p{i}.md", f"Title {i}", "Some <b>text</b> [1] here.", "medicine", 0.03, i, i)
                for i in (1, 2)]
    sentences = [AnswerSentence("Aspirin inhibits cyclooxygenase [1].", (1,), True, 0.97, support={1: 0.97}),
                 AnswerSentence("It <img src=x> cures colds [7].", (), False, 0.2)]
    answer = Answer(text=" ".join(s.text for s in sentences), domain="medicine", facts=[fact], passages=passages,
                    sentences=sentences)
    shown = answer_html(answer, turn=3)
    assert f'<a class="citation" href="#{evidence_anchor(3, 1)}">[1]</a>' in shown
    assert "[7]" in shown and "#evidence-3-7" not in shown  # not a citation it kept: no link
    assert '<span class="unsupported"' in shown and "&lt;img src=x&gt;" in shown and "<img" not in shown
    assert from_chat(shown) == answer.text  # the history a client sends back is the plain text
    panel = evidence_markdown(answer, turn=3)
    cited, folded = panel.split("<details>")
    assert 'id="evidence-3-1"' in cited and "sentence 1\\, strong support" in cited  # Markdown-escaped
    assert 'id="evidence-3-2"' in folded and 'id="evidence-3-3"' in folded and "passage 2 of 2 by relevance" in folded
    assert "0.03" not in panel and "score" not in panel  # no fusion scores for people to puzzle over
    assert "found by dense 2\\, words 2" in folded and "graph walk" not in folded.split("</details>")[0]


def test_the_evidence_panel_shows_where_the_graph_walk_went():
    from assistant.answering.pipeline import Answer
    from assistant.web.presenter import answer_json, evidence_markdown
    from assistant.answering.retrieval import Passage
    from indexing.graph_walk import WalkNode

    passages = [Passage("insulin.md#0", "insulin.md", "Insulin", "Insulin is made in the pancreas.", "medicine",
                        0.03, None, None, walk_rank=2)]
    walk = [WalkNode("entity", "metformin", "Metformin", 0.21), WalkNode("entity", "insulin", "Insulin", 0.12),
            WalkNode("passage", "metformin.md#0", "Metformin", 0.3, "metformin.md"),
            WalkNode("passage", "insulin.md#0", "Insulin", 0.1, "insulin.md")]
    answer = Answer(text="Insulin is made in the pancreas [1].", domain="medicine", passages=passages, walk=walk)
    panel = evidence_markdown(answer)
    assert "found by graph walk 2" in panel  # only the walk found this passage: the reader sees why it came in
    section = panel.split("<summary>Why these passages: the graph walk</summary>")[1].split("</details>")[0]
    assert "Entities: Metformin (0.210), Insulin (0.120)" in section
    assert "- Metformin (0.300)\n" in section and "- Insulin (0.100) → given as \\[1\\]" in section
    assert answer_json(answer)["walk"][0] == {"kind": "entity", "name": "Metformin", "score": 0.21, "doc_id": ""}
    assert answer_json(answer)["passages"][0]["walk_rank"] == 2
