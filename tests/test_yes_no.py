"""Yes/no answers decided from the evidence's findings (assistant/answering/findings.py, assistant/answering/yes_no.py):
what a sentence denies or reports, the label a set of findings gives, and the lead that opens
the answer with the label and the sentence it rests on, which always agree."""

from __future__ import annotations

import pytest

from adapters.prompts import number_evidence
from assistant.answering.findings import finding, negated
from assistant.answering.yes_no import abbreviations, clauses, decide, label_lead


@pytest.mark.parametrize("sentence,expected", [
    ("There was no significant difference in survival between the groups.", -1),
    ("Overall survival was not influenced by the mismatch (P = NS).", -1),
    ("Carotid thickness was nearly identical between cases and controls.", -1),
    ("Rates were similar in both arms (p = 0.42).", -1),
    ("Regression analysis showed no association between BMI and asthma control.", -1),
    ("Telephone counseling promoted a significantly higher proportion of screening (71% vs 61%).", 1),
    ("Mortality was reduced in the treated group (p < 0.01).", 1),
    ("The mean age was 62 years.", 0),
    ("Not only did the score improve, it also predicted discharge.", 1),  # "not only" denies nothing
])
def test_a_sentence_reports_a_finding_or_its_absence(sentence, expected):
    assert finding(sentence) == expected


def test_negation_is_read_from_words_not_from_substrings():
    assert negated("Metformin does not treat type 2 diabetes.")
    assert negated("Nasdaq has no physical trading floor.") and negated("The court didn't agree.")
    assert negated("Patients failed to respond.") and negated("The result was unchanged.")
    assert not negated("Metformin is a first-line treatment for type 2 diabetes.")
    assert not negated("Notable knowledge of nonsense nodes.")  # "not", "no" only as whole words
    assert not negated("The filing was due no later than March.")


ABSTRACT = ("BACKGROUND: Whether tailored counseling increases screening is not known. "
            "METHODS: Women were randomised to usual care or counseling; there were no exclusions. "
            "RESULTS: Counseling significantly increased screening compared with usual care (71% vs 61%, p < 0.01). "
            "Costs were similar in both groups.")
NULL_ABSTRACT = ("BACKGROUND: Low HDL cholesterol is thought to increase carotid thickness. "
                 "RESULTS: Carotid thickness was nearly identical between carriers and controls. "
                 "There was no significant association between the mutations and carotid thickness.")


def test_the_label_follows_the_findings_not_the_questions_words():
    yes = decide("Does tailored counseling increase screening?", number_evidence([], [("Trial", ABSTRACT)]))
    assert yes.label == "Yes" and "significantly increased" in yes.reason.sentence
    no = decide("Do mutations causing low HDL increase carotid thickness?",
                number_evidence([], [("Study", NULL_ABSTRACT)]))
    assert no.label == "No" and no.score < 0
    assert no.reason.sentence.startswith("There was no significant association")  # heading dropped, strongest null


def test_background_and_methods_weigh_little_beside_results():
    # The background's "not known" and the methods' "no exclusions" are not findings about the question.
    only_intro = number_evidence([], [("Trial", "BACKGROUND: It is not known whether counseling increases "
                                                "screening. METHODS: There were no exclusions.")])
    decision = decide("Does counseling increase screening?", only_intro)
    assert decision.label == "Yes" and decision.score > -0.3  # too little evidence of an absence for "No"


def test_encyclopedic_evidence_leaves_the_label_to_the_model():
    # No study's report (no structured heading, no statistics): word-level votes cannot tell that
    # "price-weighted" answers "weighted by market capitalization?" with "No".
    items = number_evidence([], [("Dow Jones", "The Dow Jones Industrial Average is a price-weighted index. Stocks "
                                               "with higher share prices have a larger influence on it.")])
    assert decide("Is the Dow Jones Industrial Average weighted by market capitalization?", items) is None
    assert label_lead("Is the Dow Jones Industrial Average weighted by market capitalization?", items) is None
    assert decide("Does Nasdaq have a physical trading floor?", []) is None
    statistics = number_evidence([], [("Trial", "Screening rose with counseling (71% vs 61%, p < 0.01).")])
    assert decide("Does counseling increase screening?", statistics).label == "Yes"  # statistics: a study's report


def test_a_negated_question_flips_the_label():
    items = number_evidence([], [("Trial", ABSTRACT)])
    assert decide("Does counseling not increase screening?", items).label == "No"


def test_the_lead_opens_with_the_label_and_the_sentence_it_rests_on():
    lead = label_lead("Do mutations causing low HDL increase carotid thickness?",
                      number_evidence(["HDL level – measured in → plasma"], [("Study", NULL_ABSTRACT)]))
    assert lead.kind == "label" and lead.label == "No" and lead.numbers == (2,)
    assert lead.text == ("No. There was no significant association between the mutations and carotid "
                         "thickness [2].")
    assert finding(lead.text.split(". ", 1)[1]) == -1  # the sentence after the label says what the label says


@pytest.mark.parametrize("question,expected", [
    ("Does aspirin block cyclooxygenase irreversibly?", True),
    ("Double balloon enteroscopy: is it efficacious and safe in a community setting?", True),
    ("In adults with asthma, does a higher body mass index worsen control?", True),
    ("Assessment of carotid stenosis before bypass surgery. Is it always necessary?", True),
    ("Aripiprazole: a new risk factor for pathological gambling?", True),  # a title-style question
    ("Patient comprehension of discharge instructions: are patients aware of when they do not understand?", True),
    ("What is the main treatment of type 2 diabetes, and is metformin first-line?", False),
    ("Insulin: how is it stored?", False),
    ("In what year was the Bank of England founded?", False),
    ("Metformin?", False),
])
def test_yes_no_questions_are_recognised_after_a_lead_in(question, expected):
    from assistant.answering.fact_answers import is_yes_no_question

    assert is_yes_no_question(question) is expected


def test_the_lead_quotes_as_many_findings_as_the_answer_may_have_strongest_first():
    items = number_evidence([], [("Study", NULL_ABSTRACT)])
    lead = label_lead("Do mutations causing low HDL increase carotid thickness?", items, sentences=2)
    assert lead.text == ("No. There was no significant association between the mutations and carotid thickness [1]. "
                         "Carotid thickness was nearly identical between carriers and controls [1].")
    assert lead.numbers == (1,)


def test_only_the_documents_about_the_question_vote():
    # A neighbouring study's positive findings must not outvote the null finding of the study asked about.
    neighbour = ("Statin trial", "RESULTS: " + " ".join(f"Outcome {n} improved significantly with statins (p < 0.01)."
                                                        for n in range(12)))
    question = "Do mutations causing low HDL increase carotid thickness?"
    assert decide(question, number_evidence([], [neighbour])).label == "Yes"  # alone, the neighbour says "Yes"
    assert decide(question, number_evidence([], [("Study", NULL_ABSTRACT), neighbour])).label == "No"


@pytest.mark.parametrize("sentence,expected", [
    # A subject negator ("none", "neither") denies the whole predicate after it, not three words of it.
    ("None of the patients had elevated cTnI 18-24 hours after the DSE.", -1),
    ("In regression analyses, none of the general practice variables were associated with online use.", -1),
    # A negator reaches a reported effect's word and a study's verbs of observing.
    ("The procedure was not safe.", -1),
    ("Ultrasonography did not detect the retractile testes.", -1),
    ("Of the 135 cases, 47 per cent were not found on the register.", -1),
    # "Similarly," opening a sentence and "a similar relation" report another finding, not an absence.
    ("Similarly, the group receiving tamoxifen had fewer fractures (P<.001).", 1),
    ("A similar relation was found for intermediate-acting insulin (p = 0.01).", 1),
    # "no. 2" is a number, not a negator.
    ("The mean scores for tests no. 1 and no. 2 were higher in the group that built maps.", 1),
])
def test_negators_reach_what_a_reader_takes_them_to_deny(sentence, expected):
    assert finding(sentence) == expected


def test_a_sentence_is_read_side_by_side_where_it_turns_from_one_finding_to_another():
    assert clauses("ADNase B levels were significantly higher (p<0.001); however, ASO levels were similar.") == [
        ("ADNase B levels were significantly higher (p<0.001)", False), (", ASO levels were similar.", False)]
    # "X, but not Y, was associated with Z": Z's association holds for X and is denied of Y.
    sides = clauses("Stromal invasion, but not the response to NACT, was associated with upper LNM.")
    assert [denied for _, denied in sides] == [False, True]
    assert "associated with upper LNM" in sides[0][0] and sides[1][0].startswith("the response to NACT")
    # An absent side effect is a side of its own, and keeps its "without".
    assert [side.strip() for side, _ in clauses("Blood flow improved without affecting blood pressure.")] == [
        "Blood flow improved", "without affecting blood pressure."]
    # The finding about the question's subject decides, not the null one beside it in the same sentence.
    items = number_evidence([], [("Study", "RESULTS: ADNase B levels were significantly higher in patients with "
                                           "multiple sclerosis than in controls (p<0.001); however, ASO levels "
                                           "were similar in both groups.")])
    assert decide("Are ADNase B levels higher in multiple sclerosis?", items).label == "Yes"


def test_an_abbreviation_the_abstract_defines_stands_for_the_words_of_its_long_form():
    text = ("METHODS: Women with cervical cancer received neoadjuvant chemotherapy (NACT) before surgery or surgery "
            "alone. RESULTS: Lymph node metastasis was significantly more frequent in older patients (p<0.01). "
            "Metastasis rates were similar with and without NACT.")
    assert abbreviations(text) == {"nact": frozenset({"neoadjuvant", "chemotherap"})}
    # The null finding is about the treatment asked about, named by its abbreviation.
    decision = decide("Does neoadjuvant chemotherapy change lymph node metastasis?", number_evidence([], [("Study", text)]))
    assert decision.label == "No" and decision.reason.sentence.startswith("Metastasis rates were similar")
