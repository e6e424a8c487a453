"""The OpenAI-compatible API (/v1) through the official ``openai`` package, on a real app over
the indexed demo domains: models, routed and forced answers with their evidence, streaming,
keys, errors, busy refusals, raw generation, and the remote generation backend against a second
instance's /v1 (no vLLM can run on this machine)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import httpx
import openai
import pytest
from pydantic import SecretStr

from adapters.registry import AdapterRegistry
from assistant.answering.sentences import citations_in
from assistant.serving.adapter_pool import AdapterLoadError
from assistant.settings import load_settings
from assistant.web.openai_raw import StopFilter
from conftest import served_app, write_lora_adapter

KEY = "test-key-0123456789"
QUESTION = "What reverses the effect of warfarin?"
YES_NO = "Does Nasdaq have a physical trading floor?"


def _settings(demo_env, root, **overrides):
    """Settings over the session's demo indexes and graph, with adapters of their own."""
    data = root / "data"
    data.mkdir(parents=True)
    (data / "domains").symlink_to(demo_env.settings.domains_dir)
    (data / "models").symlink_to(demo_env.settings.models_dir)
    return load_settings(data_dir=data, _env_file=None, neo4j_uri=demo_env.settings.neo4j_uri,
                         neo4j_password=demo_env.settings.neo4j_password, max_new_tokens=24,
                         graph_retry_after_s=0.0, api_keys=SecretStr(KEY), api_max_concurrent=2, **overrides)


@pytest.fixture(scope="module")
def api_app(demo_env, embedder, tmp_path_factory):
    settings = _settings(demo_env, tmp_path_factory.mktemp("api"))
    with served_app(settings, demo_env.graph, embedder) as running:
        yield running


def _client(running, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=running.url.rstrip("/") + "/v1", api_key=key, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def client(api_app) -> openai.OpenAI:
    return _client(api_app)


@contextmanager
def engine_paused(engine):
    """The serving engine's thread held inside a command (commands run between decode steps), so
    nothing is admitted or decoded until the block ends."""
    inside, release = threading.Event(), threading.Event()
    engine.call_later(lambda: (inside.set(), release.wait(60)))
    assert inside.wait(30)
    try:
        yield
    finally:
        release.set()


def _ask(client, question=QUESTION, model="auto", **options):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}], **options)


def test_models_lists_auto_base_and_every_domain(client):
    assert [model.id for model in client.models.list()] == ["base", "auto", "finance", "law", "medicine"]


def test_a_routed_answer_cites_its_evidence(client):
    reply = _ask(client)
    text, evidence = reply.choices[0].message.content, reply.evidence
    assert evidence["domain"] == "medicine" and evidence["text"] == text
    assert "vitamin k" in text.lower()
    numbered = len(evidence["facts"]) + len(evidence["passages"])
    assert citations_in(text) and all(1 <= n <= numbered for n in citations_in(text))
    assert " ".join(s["text"] for s in evidence["sentences"]) == text
    assert all(s["supported"] for s in evidence["sentences"])  # strict grounding
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens > 50 and reply.usage.completion_tokens > 3
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


@pytest.mark.parametrize("question", [QUESTION, YES_NO, "Which law created the Federal Reserve System and when?"])
def test_streamed_pieces_join_into_the_final_answer(client, api_app, question):
    whole = _ask(client, question).choices[0].message.content
    assert whole == api_app.pipeline.respond(question).text  # sentence by sentence = the whole draft at once
    pieces, last, usage = [], None, None
    for chunk in _ask(client, question, stream=True, stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            if chunk.choices[0].finish_reason:
                last = chunk
    assert "".join(pieces) == whole == last.evidence["text"]
    assert last.choices[0].finish_reason in ("stop", "length") and usage.completion_tokens > 0


def test_system_messages_and_history(client):
    reply = client.chat.completions.create(model="auto", messages=[
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Tell me about warfarin."}, {"role": "assistant", "content": "It thins blood."},
        {"role": "user", "content": [{"type": "text", "text": QUESTION}]}])
    assert reply.evidence["domain"] == "medicine" and "vitamin k" in reply.choices[0].message.content.lower()
    with pytest.raises(openai.BadRequestError, match="last message"):
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": QUESTION},
                                                               {"role": "assistant", "content": "Vitamin K."}])


def test_an_explicit_domain_and_an_explicit_adapter(client, api_app, base_model, tmp_path):
    forced = _ask(client, QUESTION, model="law")
    assert forced.evidence["domain"] == "law" and forced.evidence["route_scores"] == {"law": 1.0}
    engine = api_app.pipeline.engine
    adapter = engine.load_adapter(write_lora_adapter(base_model, tmp_path / "candidate", "medicine", seed=5))
    try:
        assert adapter.name in [model.id for model in client.models.list()]
        by_name = _ask(client, QUESTION, model=adapter.name)
        assert by_name.evidence["adapter"] == adapter.name and by_name.evidence["domain"] == "medicine"
        by_domain = _ask(client, QUESTION, model="medicine")  # the domain's active adapter: the new one
        assert by_domain.evidence["adapter"] == adapter.name
        base = _ask(client, QUESTION, model="base")
        assert base.evidence["adapter"] is None and base.evidence["domain"] == "medicine"
    finally:
        engine.unload_adapter(adapter.name)
        AdapterRegistry(api_app.pipeline.settings.adapters_dir).remove(adapter.name)


def test_keys_are_checked(api_app, running_app):
    with pytest.raises(openai.AuthenticationError) as wrong:
        _client(api_app, key="not-the-key").models.list()
    assert wrong.value.status_code == 401 and wrong.value.body["code"] == "invalid_api_key"
    url = api_app.url.rstrip("/") + "/v1/chat/completions"
    for headers in ({}, {"Authorization": KEY}, {"Authorization": "Bearer"}, {"Authorization": f"Basic {KEY}"}):
        refused = httpx.post(url, json={"model": "auto", "messages": [{"role": "user", "content": QUESTION}]},
                             headers=headers)
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "invalid_request_error"
    # No api_keys setting (the shared app): the API is not there at all, rather than open.
    assert httpx.get(running_app.url.rstrip("/") + "/v1/models").status_code == 404


def test_bad_requests_get_the_protocols_errors(client, api_app):
    with pytest.raises(openai.NotFoundError) as unknown:
        _ask(client, model="gpt-4o")
    assert unknown.value.body["code"] == "model_not_found" and unknown.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model="auto", messages=[])
    with pytest.raises(openai.BadRequestError, match="temperature"):
        _ask(client, temperature=5)
    with pytest.raises(openai.BadRequestError, match="too long"):
        _ask(client, "word " * 3000)
    not_json = httpx.post(api_app.url.rstrip("/") + "/v1/chat/completions", content=b"{nope",
                          headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]["message"]


def test_a_full_engine_queue_is_503_and_too_many_requests_429(client, api_app):
    engine = api_app.pipeline.engine
    waiting = []
    with engine_paused(engine):
        for _ in range(engine.settings.engine_max_waiting):  # fill the engine's waiting queue directly
            waiting.append(engine.submit([{"role": "user", "content": "hi"}], max_new_tokens=1))
        for raw in (False, True):
            with pytest.raises(openai.InternalServerError) as busy:
                _ask(client, model="medicine", extra_body={"raw": raw})
            assert busy.value.status_code == 503 and busy.value.body["code"] == "server_busy"
            assert busy.value.response.headers["Retry-After"]
        for handle in waiting:
            handle.cancel()
    # api_max_concurrent (2) streams held open, then one more request: 429 at once.
    streams = [_ask(client, model="base", stream=True, max_tokens=200, extra_body={"raw": True}) for _ in range(2)]
    try:
        for stream in streams:
            next(iter(stream))  # the role chunk: the request holds its place
        with engine_paused(engine):
            with pytest.raises(openai.RateLimitError) as limited:
                _ask(client)
            assert limited.value.status_code == 429 and limited.value.body["code"] == "rate_limit_exceeded"
    finally:
        for stream in streams:
            stream.close()
    # Closing the streams gives their places back (the server sees the disconnect, then lets go).
    deadline = time.monotonic() + 60
    while True:
        try:
            assert _ask(client).choices[0].message.content
            break
        except openai.RateLimitError:
            assert time.monotonic() < deadline, "the closed streams never gave their places back"
            time.sleep(0.5)


def test_raw_generation_continues_the_final_message_and_stops(client):
    def raw(**options):
        reply = client.chat.completions.create(model="base", extra_body={"raw": True, **options.pop("extra", {})},
                                               **options)
        return reply.choices[0]

    asked = [{"role": "user", "content": "List the planets of the solar system."}]
    free = raw(messages=asked, max_tokens=30)
    assert free.finish_reason == "length" and len(free.message.content) > 20
    assert raw(messages=asked, max_tokens=30).message.content == free.message.content  # greedy
    stop = free.message.content[10:14]
    stopped = raw(messages=asked, max_tokens=30, stop=[stop])
    assert stopped.message.content == free.message.content[:free.message.content.find(stop)]
    assert stopped.finish_reason == "stop"
    head = " ".join(free.message.content.split(" ")[:3])  # at a word's end, so the tokens are the same
    continued = raw(messages=asked + [{"role": "assistant", "content": head}], max_tokens=10,
                    extra={"continue_final_message": True, "add_generation_prompt": False})
    assert (head + continued.message.content).startswith(free.message.content[:len(head) + 5])
    sampled = raw(messages=asked, max_tokens=30, temperature=1.5)
    assert sampled.message.content and sampled.finish_reason in ("length", "stop")
    streamed = client.chat.completions.create(model="base", messages=asked, max_tokens=30, stream=True,
                                              extra_body={"raw": True})
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == free.message.content
    with pytest.raises(openai.BadRequestError, match="max_tokens 1"):
        raw(messages=asked, max_tokens=5, extra={"allowed_token_ids": [1, 2]})
    with pytest.raises(openai.BadRequestError, match="raw generation needs"):
        client.chat.completions.create(model="auto", messages=asked, extra_body={"raw": True})


def test_the_stop_filter_holds_back_what_may_begin_a_stop_string():
    stops = StopFilter(("END", "\n\n"))
    released = [stops.add(piece) for piece in ["Hello E", "N", "ough. E", "ND more"]]
    assert "".join(released) == "Hello ENough. " and stops.hit
    plain = StopFilter(())
    assert [plain.add(p) for p in ["a", "b"]] + [plain.flush()] == ["a", "b", ""]


def _same_sentences(here, there) -> bool:
    """The same sentences, citations and support, scores equal to 1e-6: each app embeds the
    evidence through its own cache of sentence vectors, batched differently, which moves a score
    by ~1e-8."""
    def read(s):
        return s.text, s.citations, s.supported, s.claim, s.contradiction, s.draft_citations, sorted(s.support)

    return len(here) == len(there) and all(
        read(a) == read(b) and a.score == pytest.approx(b.score, abs=1e-6)
        and all(a.support[n] == pytest.approx(b.support[n], abs=1e-6) for n in a.support)
        for a, b in zip(here, there))


def test_the_remote_backend_answers_like_the_local_engine(api_app, demo_env, embedder, base_model, tmp_path):
    """App A generates on B's /v1 (B: the local engine, as vLLM would be); A's answers are B's."""
    remote = _settings(demo_env, tmp_path / "a", generation_backend="openai",
                       generation_base_url=api_app.url.rstrip("/") + "/v1", generation_api_key=SecretStr(KEY))
    local = api_app.pipeline
    with served_app(remote, demo_env.graph, embedder) as app_a:
        assert type(app_a.pipeline.engine).__name__ == "RemoteEngine"
        for question in (QUESTION, YES_NO, "Which Secretary of State refused to hand over William Marbury's commission?"):
            here, there = app_a.pipeline.respond(question), local.respond(question)
            assert here.error is None and here.text == there.text and here.stopped == there.stopped
            assert _same_sentences(here.sentences, there.sentences), (here.sentences, there.sentences)
        # A's own /v1 works the same on top of the remote backend.
        streamed = "".join(c.choices[0].delta.content or "" for c in _ask(_client(app_a), stream=True) if c.choices)
        assert streamed == local.respond(QUESTION).text
        # An adapter: B must serve it for A to hot-load it; then A's answers use it on B.
        folder = write_lora_adapter(base_model, tmp_path / "candidate", "medicine", seed=9)
        with pytest.raises(AdapterLoadError, match="generation server refused"):
            app_a.pipeline.engine.load_adapter(folder)  # B does not have it
        assert app_a.pipeline.engine.pool.active() == {}
        assert app_a.pipeline.engine.pool.registry.list() == []  # the refused load took its copy with it
        served = api_app.pipeline.engine.load_adapter(folder)
        try:
            # Loaded again once B serves it, the folder is installed in A's registry under B's name.
            assert app_a.pipeline.engine.load_adapter(folder).name == served.name
            here, there = app_a.pipeline.respond(QUESTION), local.respond(QUESTION)
            assert here.adapter == there.adapter == served.name and here.text == there.text
        finally:
            api_app.pipeline.engine.unload_adapter(served.name)
            AdapterRegistry(api_app.pipeline.settings.adapters_dir).remove(served.name)
        # B gone: A answers with a clear error and keeps serving.
        dead = _settings(demo_env, tmp_path / "dead", generation_backend="openai",
                         generation_base_url="http://127.0.0.1:9/v1", generation_base_model="base")
    with served_app(dead, demo_env.graph, embedder) as app_dead:
        answer = app_dead.pipeline.respond(QUESTION)
        assert answer.error.startswith("generation failed") and "generation server cannot be reached" in answer.text
        assert "127.0.0.1:9" not in answer.text  # the address is in the log only
        with pytest.raises(openai.InternalServerError) as failed:
            _ask(_client(app_dead))
        assert failed.value.status_code == 503 and failed.value.body["code"] == "generation_failed"
        assert app_dead.pipeline.respond(QUESTION).error.startswith("generation failed")  # still serving
