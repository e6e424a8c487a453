"""The multi-hop bridge on fixed texts (assistant/answering/bridge.py): which questions are followed, which
name is the bridge, what the second search asks, and the answer that quotes both hops. The real
pipeline's two-hop answer is in tests/test_answer_kinds.py."""

from __future__ import annotations

from adapters.prompts import EvidenceItem, number_evidence
from assistant.answering import bridge
from assistant.answering.fact_answers import Lead
from assistant.answering.retrieval import Evidence, Passage

QUESTION = "Which president nominated to the Supreme Court the lawyer who argued Brown v. Board of Education?"
FIRST = "Thurgood Marshall argued Brown v. Board of Education for the plaintiffs"
BROWN = f"Brown v. Board of Education was decided in 1954. {FIRST}. The court ruled unanimously."
MARSHALL = "Thurgood Marshall was born in Baltimore. In 1967 President Lyndon B. Johnson chose Thurgood Marshall for the highest court."
MIRANDA = "Chief Justice Earl Warren wrote the majority opinion in Miranda v. Arizona, which President Eisenhower praised."


def _passage(doc: str, text: str) -> Passage:
    return Passage(f"{doc}#0", doc, doc.title(), text, "law", 1.0, 1, 1)


def test_names_are_runs_of_capitalised_words_with_joiners_inside():
    assert bridge.names(FIRST) == ["Thurgood Marshall", "Brown v. Board of Education"]
    assert bridge.names("The Banking Act of 1933 created the FDIC") == ["Banking Act of 1933", "FDIC"]
    assert bridge.names("Lagarde led the International Monetary Fund (IMF) in May") == \
        ["Lagarde", "International Monetary Fund", "IMF"]  # punctuation ends a name; a month is none
    assert bridge.names("Non-selective beta blockers trigger bronchospasm in 1990") == []
    assert bridge.names("Bretton Woods Conference The Bretton Woods Conference met") == \
        ["Bretton Woods Conference", "Bretton Woods Conference"]  # a capitalised stop word ends a name


def test_the_bridge_is_the_name_the_question_does_not_hold():
    assert bridge.bridge_entity(QUESTION, FIRST) == "Thurgood Marshall"
    # several words before one; a word shared with the question's noun ("county") before none
    assert bridge.bridge_entity("Which county borders the county in which Johnnycake is located?",
                                "Johnnycake is a community in McDowell County, West Virginia") == "McDowell County"
    assert bridge.bridge_entity("Which doctor treated the patient who took the drug?",
                                "Treatment with Metformin helped Jean Sterne") == "Jean Sterne"


def test_only_chain_shaped_questions_are_followed():
    assert bridge.is_chain_shaped(QUESTION)
    assert bridge.is_chain_shaped("The first president of the World Bank chaired a central bank. "
                                  "In what year was the act that created that central bank passed?")
    assert not bridge.is_chain_shaped("Which was introduced first, salbutamol or amoxicillin?")
    assert not bridge.is_chain_shaped("Who founded the Bank of England?")  # the wh-word is not a relative clause


def test_the_second_search_asks_what_the_first_hop_left_open():
    query = bridge.second_hop_query(QUESTION, FIRST, "Thurgood Marshall")
    assert query == "Which president nominated Supreme Court lawyer Thurgood Marshall"
    two = "The first president of the World Bank chaired a central bank. In what year was the act that created it passed?"
    assert bridge.second_hop_query(two, "Meyer chaired the Federal Reserve Board", "Federal Reserve Board") == \
        "In what year act created passed Federal Reserve Board"  # the asking sentence only


def test_no_bridge_when_the_first_hop_answers_or_the_question_is_yes_no():
    items = number_evidence([], [("Brown", BROWN)])
    quote = Lead(f"{FIRST} [1].", (1,), None, kind="quote")
    found = bridge.find_bridge(QUESTION, quote, items)
    assert found is not None and found.entity == "Thurgood Marshall" and found.first_item == BROWN
    assert bridge.find_bridge("Did the lawyer that argued Brown v. Board of Education join the Supreme Court?",
                              quote, items) is None
    answered = Lead("Thurgood Marshall argued Brown v. Board of Education, the case that ended school segregation [1].",
                    (1,), None, kind="quote")
    assert bridge.find_bridge("Which lawyer argued the case that ended school segregation, Brown v. Board of Education?",
                              answered, items) is None  # the first hop holds every word the question asks about
    assert bridge.find_bridge(QUESTION, Lead("4.1% [1].", (1,), None, kind="table"), items) is None


def test_following_the_bridge_quotes_both_hops_each_cited(embedder):
    first = [_passage("brown", BROWN), _passage("miranda", MIRANDA)]
    asked = []

    def opening(question, facts, items, bridge_followed=None):
        if bridge_followed is not None:  # the writer's lead with both hops, as the answer will open
            return bridge.chain_lead(bridge_followed, question, items, embedder.encode)
        return Lead(f"{FIRST} [1].", (1,), None, kind="quote")

    def retrieve(query):
        asked.append(query)
        return Evidence(ranked=[_passage("marshall", MARSHALL), _passage("miranda", MIRANDA)])

    bridged = bridge.follow(QUESTION, [], first, opening, retrieve)
    assert asked == ["Which president nominated Supreme Court lawyer Thurgood Marshall"]
    assert [p.doc_id for p in bridged.passages] == ["brown", "marshall", "miranda"]  # first hop, second, the rest
    assert bridge.follow(QUESTION, [], first, opening, lambda query: Evidence(ranked=[_passage("miranda", MIRANDA)])) \
        is None  # a second search that does not answer leaves the first evidence as it was
    items = number_evidence([], [(p.title, p.text) for p in bridged.passages])
    lead = bridge.chain_lead(bridged.bridge, QUESTION, items, embedder.encode)
    assert lead is not None and lead.kind == "bridge" and lead.numbers == (1, 2)
    assert lead.text == (f"{FIRST} [1]. In 1967 President Lyndon B. Johnson chose Thurgood Marshall for the "
                         "highest court [2].")


def test_a_second_hop_sentence_must_be_about_the_bridge(embedder):
    found = bridge.Bridge("Thurgood Marshall", FIRST, BROWN, "Which president nominated Supreme Court lawyer Thurgood Marshall",
                          frozenset({MIRANDA}))
    items = [EvidenceItem(1, "passage", BROWN, "Brown"), EvidenceItem(2, "passage", MIRANDA, "Miranda")]
    assert bridge.chain_lead(found, QUESTION, items, embedder.encode) is None  # names a president, not Marshall
