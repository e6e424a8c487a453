"""The support check sees negation, number order and labels (assistant/answering/attribution.py), with the
real embedder: a sentence that denies its evidence, numbers stated in the other direction, and a
yes/no label contradicted by its own reason are not supported, and are marked contradictions."""

from __future__ import annotations

import pytest

from adapters.prompts import number_evidence
from assistant.answering.attribution import attribute, is_bare_label

METFORMIN = number_evidence([], [("Metformin", "Metformin is a first-line treatment for type 2 diabetes. "
                                               "It rarely causes weight gain.")])
LIMITS = number_evidence([], [("FDIC", "In 1950 the coverage limit was raised from $5,000 to $10,000 per depositor.")])


@pytest.fixture(scope="module")
def encode(embedder):
    return embedder.encode


def test_a_sentence_that_denies_its_evidence_is_not_supported_by_it(encode):
    (denied,) = attribute("Metformin does not treat type 2 diabetes [1].", METFORMIN, encode,
                          "What is metformin used for?")
    assert not denied.supported and denied.contradiction and denied.citations == ()
    (stated,) = attribute("Metformin is a first-line treatment for type 2 diabetes [1].", METFORMIN, encode,
                          "What is metformin used for?")
    assert stated.supported and not stated.contradiction and stated.citations == (1,)


def test_numbers_in_the_other_direction_are_not_supported(encode):
    (reversed_,) = attribute("In 1950 the limit was raised from $10,000 to $5,000 [1].", LIMITS, encode,
                             "How did the coverage limit change in 1950?")
    assert not reversed_.supported and reversed_.contradiction
    (kept,) = attribute("In 1950 the limit was raised from $5,000 to $10,000 [1].", LIMITS, encode,
                        "How did the coverage limit change in 1950?")
    assert kept.supported and kept.citations == (1,)


def test_a_label_is_judged_by_its_reason(encode):
    question = "Is metformin a first-line treatment for type 2 diabetes?"
    label, reason = attribute("Yes. Metformin is a first-line treatment for type 2 diabetes [1].", METFORMIN,
                              encode, question)
    assert label.supported and reason.supported and not label.contradiction
    # The label its own (supported) reason contradicts: the defect the writer must never show.
    wrong, reason = attribute("No. Metformin is a first-line treatment for type 2 diabetes [1].", METFORMIN,
                              encode, question)
    assert reason.supported and not wrong.supported and wrong.contradiction
    assert [s.text for s in attribute("No. Metformin is a first-line treatment for type 2 diabetes [1].",
                                      METFORMIN, encode, question, strict=True)] == [
        "Metformin is a first-line treatment for type 2 diabetes [1]."]


def test_a_label_without_a_supported_reason_is_judged_by_the_closest_evidence(encode):
    question = "Does metformin usually cause weight gain?"
    label, invented = attribute("No, because of its effect on the hepatic QX-9 receptor.", METFORMIN, encode,
                                question)
    assert not invented.supported and label.supported  # "It rarely causes weight gain" reads as "No"
    label, _ = attribute("Yes, because of its effect on the hepatic QX-9 receptor.", METFORMIN, encode, question)
    assert not label.supported and label.contradiction


def test_bare_labels_are_recognised():
    assert is_bare_label("No.") and is_bare_label("Yes [2].") and is_bare_label("Maybe")
    assert not is_bare_label("No significant difference was found.") and not is_bare_label("No, it does not.")
    assert not is_bare_label("")


def test_a_denial_about_something_the_evidence_does_not_name_is_not_a_contradiction(encode):
    items = number_evidence([], [("Vanguard", "In 1976, Vanguard launched the First Index Investment Trust, the "
                                              "first index mutual fund for individual investors.")])
    # The evidence never says what the fund tracked: denying a price-weighted index is not denying it.
    (sentence,) = attribute("The first index mutual fund for individual investors did not track a price-weighted "
                            "index [1].", items, encode, "Did the first index fund track a price-weighted index?")
    assert not sentence.contradiction
