"""The launched Gradio app through gradio_client and plain HTTP: chat with evidence, admin
refusals, re-indexing and hot-loading through the admin API, concurrent chats."""

from __future__ import annotations

import json
import shutil
import threading
import time

import httpx
import pytest
from gradio_client import Client

from adapters.registry import AdapterRegistry
from assistant.settings import DEMO_CORPORA_DIR
from conftest import ADMIN_PASSWORD, write_lora_adapter


@pytest.fixture(scope="module")
def client(running_app) -> Client:
    return Client(running_app.url, verbose=False)


@pytest.fixture(scope="module")
def token(client) -> str:
    return client.predict("admin", ADMIN_PASSWORD, api_name="/admin_login")


def _wait_for_job(client: Client, token: str, job_id: str, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.predict(token, job_id, api_name="/admin_job")
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(1)
    raise AssertionError(f"job {job_id} did not finish")


def test_a_demo_question_gets_an_answer_with_evidence(client):
    answer = client.predict("What reverses the effect of warfarin?", "auto", api_name="/ask")
    assert answer["domain"] == "medicine" and answer["text"] and not answer["error"]
    assert any("vitamin K" in f["head"] and f["doc_ids"] == ["warfarin.md"] for f in answer["facts"])
    assert answer["passages"] and all(p["chunk_id"].startswith(p["doc_id"] + "#") for p in answer["passages"])
    numbers = {f["number"] for f in answer["facts"]} | {p["number"] for p in answer["passages"]}
    assert answer["sentences"] and " ".join(s["text"] for s in answer["sentences"]) == answer["text"]
    for sentence in answer["sentences"]:
        assert set(sentence) == {"text", "citations", "supported", "score", "claim"}
        assert isinstance(sentence["supported"], bool) and 0.0 <= sentence["score"] <= 1.0
        assert set(sentence["citations"]) <= numbers and all(f"[{n}]" in sentence["text"] for n in sentence["citations"])
    vitamin_k = next(f["number"] for f in answer["facts"] if "vitamin K" in f["head"])
    assert vitamin_k in answer["sentences"][0]["citations"]  # the graph fact opens the answer
    assert {"chat", "ask", "admin_login", "admin_domains"} <= {name.strip("/") for name in
                                                              client.view_api(print_info=False, return_format="dict")["named_endpoints"]}


def test_admin_calls_without_credentials_are_refused(client, running_app):
    with pytest.raises(Exception, match="wrong admin username or password"):
        client.predict("admin", "guess", api_name="/admin_login")
    for endpoint, arguments in (("/admin_domains", ["forged-token"]), ("/admin_status", [""]),
                                ("/admin_load_adapter", ["", "/tmp"]), ("/admin_reindex", ["x", "medicine", "/tmp", False])):
        with pytest.raises(Exception, match="admin login required"):
            client.predict(*arguments, api_name=endpoint)
    # The endpoint called directly over HTTP, as a script would: refused the same way.
    call = httpx.post(f"{running_app.url}gradio_api/call/admin_domains", json={"data": ["forged-token"]})
    event_id = call.json()["event_id"]
    stream = httpx.get(f"{running_app.url}gradio_api/call/admin_domains/{event_id}").text
    assert "event: error" in stream and "medicine" not in stream


def test_reindexing_a_changed_document_shows_in_the_next_answer(client, token, running_app, tmp_path):
    corpus = running_app.pipeline.settings.data_dir / "corpora" / tmp_path.name / "medicine"  # an allowed root
    shutil.copytree(DEMO_CORPORA_DIR / "medicine", corpus)
    with open(corpus / "warfarin.md", "a", encoding="utf-8") as f:
        f.write("\n\nIn the Zanzibar trial of 2031, warfarin tablets were coloured ultramarine for the study.\n")
    before = client.predict("What colour were the warfarin tablets in the Zanzibar trial?", "medicine", api_name="/ask")
    assert not any("ultramarine" in p["text"] for p in before["passages"])
    try:
        job = _wait_for_job(client, token, client.predict(token, "medicine", str(corpus), False, api_name="/admin_reindex"))
        assert job["status"] == "done", job
        after = client.predict("What colour were the warfarin tablets in the Zanzibar trial?", "auto", api_name="/ask")
        assert after["domain"] == "medicine" and any("ultramarine" in p["text"] for p in after["passages"])
        rows = client.predict(token, api_name="/admin_domains")
        assert {row["domain"] for row in rows} >= {"medicine", "finance", "law"}
    finally:  # the demo domain is shared with other tests: put the original corpus back
        restore = client.predict(token, "medicine", str(DEMO_CORPORA_DIR / "medicine"), False, api_name="/admin_reindex")
        assert _wait_for_job(client, token, restore)["status"] == "done"


def test_hot_loading_through_the_api_serves_the_next_answer(client, token, running_app, base_model, tmp_path):
    drop = running_app.pipeline.settings.data_dir / "uploads" / tmp_path.name  # inside the adapter roots
    folder = write_lora_adapter(base_model, drop / "candidate", "medicine", seed=11)
    message = client.predict(token, str(folder), api_name="/admin_load_adapter")
    name = message.split()[0]
    try:
        assert name.startswith("medicine-v") and "now serves medicine" in message
        answer = client.predict("What reverses the effect of warfarin?", "auto", api_name="/ask")
        assert answer["adapter"] == name
        listed = {row["name"]: row for row in client.predict(token, api_name="/admin_adapters")}
        assert listed[name]["active"] and listed[name]["loaded"]
        client.predict(token, name, api_name="/admin_unload")
        assert client.predict(token, name, api_name="/admin_load_adapter") == message  # by its registered name
        broken = drop / "broken"
        broken.mkdir()
        (broken / "adapter_model.bin").write_bytes(b"pickle")
        with pytest.raises(Exception, match="pickled weights are refused"):
            client.predict(token, str(broken), api_name="/admin_load_adapter")
        assert client.predict("What reverses the effect of warfarin?", "auto", api_name="/ask")["adapter"] == name
    finally:
        client.predict(token, name, api_name="/admin_unload")
        AdapterRegistry(running_app.pipeline.settings.adapters_dir).remove(name)
        (running_app.pipeline.settings.adapters_dir / "active.json").unlink(missing_ok=True)
        shutil.rmtree(drop, ignore_errors=True)


def test_an_answer_that_fails_while_it_is_written_says_so():
    from assistant.answering.pipeline import Answer
    from assistant.web.presenter import answer_header

    failed = Answer(text="Vitamin K\n\nSorry, the answer could not be written: RuntimeError: out of memory.",
                    domain="medicine", confidence=0.9, error="generation failed: RuntimeError: out of memory")
    header = answer_header(failed)
    assert header.startswith("⚠️ **The answer failed** while it was being written (RuntimeError\\: out of memory)")
    assert "what is shown is incomplete" in header and "**Domain:** medicine" in header
    crashed = Answer(text="Sorry, something went wrong while answering. The error has been logged.",
                     error="internal error (KeyError; the server log has the details)")
    assert answer_header(crashed).startswith("⚠️ **The answer failed:** something went wrong on the server")
    for fine in (Answer(text="Vitamin K reverses warfarin.", domain="medicine"),
                 Answer(text="The assistant is busy right now; please try again in a moment.", error="busy: full")):
        assert "failed" not in answer_header(fine)


def test_a_stream_that_fails_mid_answer_shows_the_failure_in_the_chat(client, monkeypatch):
    """The serving engine's decode step breaks once the first token has been streamed to the page."""
    from assistant.serving.decoding import DecodeBatch
    from assistant.web.presenter import message_text

    steps = []

    def failing_step(self, model):
        steps.append(model)
        raise RuntimeError("the accelerator fell over")

    monkeypatch.setattr(DecodeBatch, "step", failing_step)
    job = client.submit("Tell me about warfarin.", [], "auto", api_name="/chat")
    history, _, header, _, _ = job.result()
    assert steps  # the model was writing the answer when it failed
    shown = message_text(history[-1]["content"])
    streamed = [message_text(update[0][-1]["content"]) for update in job.outputs()[:-1]]
    assert any(streamed) and shown.startswith(max(streamed, key=len))  # part came before the failure, and stays
    assert "Sorry, the answer could not be written: RuntimeError: the accelerator fell over" in shown
    assert header.startswith("⚠️ **The answer failed** while it was being written") and "accelerator fell over" in header


def test_concurrent_chats_all_get_answers_during_a_reindex(client, token, running_app):
    job_id = client.predict(token, "law", str(DEMO_CORPORA_DIR / "law"), False, api_name="/admin_reindex")
    questions = ["Which president appointed Earl Warren?", "What does metformin treat?",
                 "Which law created the Federal Reserve System?", "What did Miranda v. Arizona decide?"]
    results: dict[int, dict] = {}
    errors: list[BaseException] = []

    def ask(index: int, question: str) -> None:
        try:
            results[index] = Client(running_app.url, verbose=False).predict(question, "auto", api_name="/ask")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i, q)) for i, q in enumerate(questions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors and len(results) == len(questions)
    assert all(r["text"] and not r["error"] for r in results.values()), json.dumps(results)[:2000]
    assert _wait_for_job(client, token, job_id)["status"] == "done"


def test_uploads_are_untrusted(running_app, base_model, tmp_path):
    import zipfile

    from assistant.admin.service import AdminError, AdminService

    admin = running_app.admin
    session = admin.login("admin", ADMIN_PASSWORD)
    good = write_lora_adapter(base_model, tmp_path / "good", "finance", seed=21)

    def bundle(name: str, entries: dict[str, bytes]):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as archive:
            for entry, data in entries.items():
                archive.writestr(entry, data)
        return path

    files = {p.name: p.read_bytes() for p in good.iterdir()}
    for name, entries, message in (
            ("escape.zip", {**files, "../../etc/cron.d/evil": b"x"}, "absolute path or '..'"),
            ("absolute.zip", {**files, "/etc/passwd": b"x"}, "absolute path or '..'"),
            ("pickle.zip", {**files, "adapter_model.bin": b"x"}, "not an adapter file"),
    ):
        with pytest.raises(AdminError, match=message):
            admin.upload_adapter(session, [bundle(name, entries)])
    (tmp_path / "broken.zip").write_bytes(b"PK not really")
    with pytest.raises(AdminError, match="not a valid zip"):
        admin.upload_adapter(session, [tmp_path / "broken.zip"])
    assert running_app.pipeline.engine.pool.adapter_for("finance") is None
    loaded = admin.upload_adapter(session, [bundle("good.zip", files)])
    name = loaded.split()[0]
    try:
        assert name.startswith("finance-v") and running_app.pipeline.engine.pool.adapter_for("finance") == name
    finally:
        admin.unload(session, name)
        AdapterRegistry(running_app.pipeline.settings.adapters_dir).remove(name)
        (running_app.pipeline.settings.adapters_dir / "active.json").unlink(missing_ok=True)
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(AdminError, match="unsupported file type"):
        admin.upload_corpus(session, "medicine", [script])
    small = AdminService(running_app.pipeline.settings.model_copy(update={"max_upload_bytes": 10}),
                         running_app.pipeline, None)
    document = tmp_path / "note.md"
    document.write_text("# Note\nA document longer than ten bytes.\n")
    with pytest.raises(AdminError, match="larger than 10 bytes"):
        small.upload_corpus(small.login("admin", ADMIN_PASSWORD), "medicine", [document])
    assert not list((running_app.pipeline.settings.data_dir / "uploads").glob("upload-*"))  # nothing half-written
