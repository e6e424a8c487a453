"""An adapter writes its own answer first, and the lead written from the evidence replaces it only
when its opening fails the support check (assistant/answering/adapter_answers.py), on the real
engine with a real LoRA adapter and the real embedder for attribution."""

from __future__ import annotations

import pytest

from adapters import prompts
from assistant.answering.adapter_answers import ADAPTER, LEAD, opening_of
from assistant.answering.answer_writer import AnswerWriter
from assistant.answering.fact_answers import Lead
from assistant.serving.engine import Engine
from assistant.settings import load_settings
from conftest import write_lora_adapter
from indexing.embedding import CachedEncoder


def test_the_opening_is_the_first_sentence_with_a_labels_reason_once_it_is_whole():
    assert opening_of("Paris is the capital", ended=False) is None
    assert opening_of("Paris is the capital of France [1].", ended=False) is None  # a citation may follow
    assert opening_of("Paris is the capital of France [1]. It", ended=False) == "Paris is the capital of France [1]."
    assert opening_of("Paris is the capital of France. [1", ended=False) is None  # the citation on its way
    assert opening_of("Yes. It", ended=False) is None  # a bare label waits for its reason
    assert opening_of("Yes. It is [1]. More", ended=False) == "Yes. It is [1]."
    assert opening_of("Paris is", ended=True) == "Paris is"
    assert opening_of("", ended=True) == ""


@pytest.fixture(scope="module")
def served(base_model, embedder, tmp_path_factory):
    """The engine with a zero-scaled LoRA adapter serving medicine (it answers as the base does,
    through peft) and a random one serving finance (it rambles)."""
    root = tmp_path_factory.mktemp("adapter-answers")
    (root / "data" / "models").mkdir(parents=True)
    (root / "data" / "models" / base_model.path.name).symlink_to(base_model.path)
    settings = load_settings(data_dir=root / "data", _env_file=None, max_new_tokens=40, adapter_answers=True)
    engine = Engine(settings)
    engine.load_adapter(write_lora_adapter(base_model, root / "plain", "medicine", seed=1, scale=0.0))
    engine.load_adapter(write_lora_adapter(base_model, root / "rambling", "finance", seed=3, scale=0.3))
    yield settings, engine, CachedEncoder(embedder)
    engine.close()


class FixedLead(AnswerWriter):
    """The writer with its lead given (an input here, like the evidence), so both outcomes of the
    check can be seen on one prompt."""
    def __init__(self, settings, engine, encode, lead: Lead | None):
        super().__init__(settings, engine, encode)
        self.fixed = lead

    def lead(self, question, facts, evidence, bridge=None):
        return self.fixed


QUESTION = "What is the capital of France?"
EVIDENCE = [("France", "Paris is the capital of France.")]
LEAD_TEXT = "Paris is a city of France [1]."


def _prompt(engine, domain: str):
    return prompts.build_prompt(engine.count_tokens, domain, QUESTION, [], EVIDENCE, [], 1536, 0)


def _alone(engine, writer, domain: str) -> str:
    return engine.submit(_prompt(engine, domain).messages, domain=domain, max_new_tokens=40, stop_when=writer.limit).text()


def test_an_adapters_supported_answer_is_kept_and_an_unsupported_one_gives_way_to_the_lead(served):
    settings, engine, encode = served
    writer = FixedLead(settings, engine, encode, Lead(LEAD_TEXT, (1,), None, kind="quote"))
    own = _alone(engine, writer, "medicine")
    assert writer.holds(QUESTION, opening_of(own, ended=True), _prompt(engine, "medicine").evidence)
    kept = writer.begin(QUESTION, _prompt(engine, "medicine"), [], domain="medicine").finish()
    assert (kept.answered_by, kept.lead, kept.draft) == (ADAPTER, None, own)
    assert kept.result.adapter is not None and LEAD_TEXT not in kept.text

    rambling = _alone(engine, writer, "finance")
    assert not writer.holds(QUESTION, opening_of(rambling, ended=True), _prompt(engine, "finance").evidence)
    overruled = writer.begin(QUESTION, _prompt(engine, "finance"), [], domain="finance").finish()
    assert overruled.answered_by == LEAD and overruled.draft.startswith(LEAD_TEXT)
    assert overruled.text.startswith(LEAD_TEXT) and rambling not in overruled.draft


def test_streaming_shows_only_the_answer_that_was_kept(served):
    settings, engine, encode = served
    writer = FixedLead(settings, engine, encode, Lead(LEAD_TEXT, (1,), None, kind="quote"))
    draft = writer.begin(QUESTION, _prompt(engine, "finance"), [], domain="finance")
    streamed = "".join(draft)
    assert streamed.startswith(LEAD_TEXT) and draft.answered_by == LEAD
    assert draft.finish().draft == streamed


def test_without_an_adapter_or_with_the_setting_off_the_lead_opens_as_before(served):
    assert not load_settings(_env_file=None).adapter_answers  # off unless asked (see the setting)
    settings, engine, encode = served
    lead = Lead(LEAD_TEXT, (1,), None, kind="quote")
    for writer, domain in ((FixedLead(settings, engine, encode, lead), "law"),  # no adapter serves law
                           (FixedLead(settings.model_copy(update={"adapter_answers": False}), engine, encode, lead),
                            "medicine")):
        written = writer.begin(QUESTION, _prompt(engine, domain), [], domain=domain).finish()
        assert written.answered_by == "" and written.draft.startswith(LEAD_TEXT)


def test_a_yes_no_openings_reason_must_report_a_finding_not_restate_the_aim(embedder):
    """On PubMedQA the support check let "Yes. <the study's aim> [n]." through: the aim shares
    the question's words."""
    from assistant.answering.adapter_answers import opening_holds
    from assistant.answering.yes_no import states_the_question

    evidence = prompts.number_evidence([], [("PMID 1", "OBJECTIVE: This study aimed to determine whether statins "
                                                       "reduce stroke risk in the elderly. RESULTS: Statins reduced "
                                                       "stroke risk in the elderly significantly (p < 0.01).")])
    question = "Do statins reduce stroke risk in the elderly?"
    encode = CachedEncoder(embedder)
    aim = "Yes. This study aimed to determine whether statins reduce stroke risk in the elderly [1]."
    found = "Yes. Statins reduced stroke risk in the elderly significantly (p < 0.01) [1]."
    assert not opening_holds(aim, evidence, encode, question, 0.55)
    assert opening_holds(found, evidence, encode, question, 0.55)
    # not a yes/no question: an aim sentence is judged by its support alone
    assert opening_holds("This study aimed to determine whether statins reduce stroke risk in the elderly [1].",
                         evidence, encode, "What did the study aim to determine?", 0.55)
    assert states_the_question("METHODS: We enrolled 200 patients.")
    assert states_the_question("The purpose of this study was to compare two scanners.")
    assert not states_the_question("There was no significant difference between the groups (P = 0.07).")
