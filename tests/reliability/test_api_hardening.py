"""Careless and hostile clients of the OpenAI-compatible API (/v1, assistant/web/openai_api.py) on a
real app with the real serving engine: the key is checked before the body is read, bodies that
would crash the parser are 400s, fields this server does not implement are refused by name,
limits (max_tokens, the model's context, allowed_token_ids, stop strings) are 400s that never
reach the engine, a client that hangs up frees its place and its engine row, and a stream whose
generation fails mid-answer ends with the protocol's error, not a normal finish."""

from __future__ import annotations

import itertools
import json
import socket
import time
from contextlib import contextmanager
from urllib.parse import urlparse

import httpx
import openai
import pytest
from pydantic import SecretStr

from assistant.serving.decoding import DecodeBatch
from assistant.settings import load_settings
from assistant.web.openai_protocol import MAX_ALLOWED_TOKEN_IDS, MAX_JSON_DEPTH, MAX_STOP_CHARS, json_depth
from conftest import served_app

KEY = "hardening-key-0123456789"
QUESTION = "What reverses the effect of warfarin?"
YES_NO = "Does Nasdaq have a physical trading floor?"  # here: three supported sentences, then the model ends
MAX_TOKENS = 8192  # api_max_tokens here: as large as the model's context, so the context is what refuses
WAIT_S = 120  # bounds against a hang, not speed checks
ASKED = [{"role": "user", "content": "List the planets of the solar system."}]


@pytest.fixture(scope="module")
def app(demo_env, embedder, tmp_path_factory):
    """The app over the demo domains. Its answers are the model's own from the first token, up to
    8 sentences (no graph fact or quote written first, which often leaves one sentence for the
    model), so a streamed answer has sentences before its last token."""
    data = tmp_path_factory.mktemp("api-hardening") / "data"
    data.mkdir(parents=True)
    (data / "domains").symlink_to(demo_env.settings.domains_dir)
    (data / "models").symlink_to(demo_env.settings.models_dir)
    settings = load_settings(data_dir=data, _env_file=None, neo4j_uri=demo_env.settings.neo4j_uri,
                             neo4j_password=demo_env.settings.neo4j_password, max_new_tokens=24,
                             graph_retry_after_s=0.0, api_keys=SecretStr(KEY), api_max_concurrent=2,
                             api_max_tokens=MAX_TOKENS, answer_max_sentences=8, facts_first=False,
                             answer_quotes=False)
    with served_app(settings, demo_env.graph, embedder) as running:
        yield running


@pytest.fixture(scope="module")
def client(app) -> openai.OpenAI:
    return openai.OpenAI(base_url=app.url.rstrip("/") + "/v1", api_key=KEY, max_retries=0, timeout=WAIT_S)


@pytest.fixture(scope="module")
def context_tokens(base_model) -> int:
    return json.loads((base_model.path / "config.json").read_text())["max_position_embeddings"]


def _post(app, body: bytes, key: str | None = KEY) -> httpx.Response:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    return httpx.post(app.url.rstrip("/") + "/v1/chat/completions", content=body, headers=headers, timeout=WAIT_S)


def _raw(client, **options):
    extra = {"raw": True, **options.pop("extra", {})}
    return client.chat.completions.create(model="base", extra_body=extra, **{"messages": ASKED, **options})


def _until(condition, what: str):
    deadline = time.monotonic() + WAIT_S
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def _idle(engine) -> bool:
    occupancy = engine.occupancy()
    return occupancy["running"] == 0 and occupancy["waiting"] == 0


def _connect(app) -> socket.socket:
    address = urlparse(app.url)
    return socket.create_connection((address.hostname, address.port), timeout=WAIT_S)


def _request_head(app, length: int, key: str | None) -> bytes:
    lines = ["POST /v1/chat/completions HTTP/1.1", f"Host: {urlparse(app.url).netloc}",
             "Content-Type: application/json", f"Content-Length: {length}"]
    if key:
        lines.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _refused(response: httpx.Response, status: int, param: str | None = None, code: str | None = None) -> str:
    """The error's message, once the response is checked to be the protocol's error."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    return error["message"]


# --- the body -----------------------------------------------------------------------------------------
def test_the_key_is_checked_before_the_body_is_read(app):
    """The body is announced and never sent: the 401 comes without waiting for it."""
    with _connect(app) as connection:
        connection.sendall(_request_head(app, 100_000, key=None))
        assert connection.recv(4096).startswith(b"HTTP/1.1 401")


def test_json_nested_too_deep_is_a_400_not_a_crash(app):
    assert _post(app, b"[" * 100_000, key=None).status_code == 401  # no key: nothing is parsed
    message = _refused(_post(app, b"[" * 100_000), 400)
    assert "100000 levels" in message and str(MAX_JSON_DEPTH) in message
    deep = {"model": "auto", "messages": [{"role": "user", "content": QUESTION}], "metadata": 0}
    for _ in range(MAX_JSON_DEPTH):
        deep = {"metadata": deep}
    assert str(MAX_JSON_DEPTH) in _refused(_post(app, json.dumps(deep).encode()), 400)
    assert "not JSON" in _refused(_post(app, b'{"model": "auto", "messages": [}'), 400)
    assert "not JSON" in _refused(_post(app, b'\xff\xfe{"model"'), 400)
    assert _post(app, b"[" * 100_000).status_code == 400  # and the server goes on


def test_the_depth_scan_reads_strings_and_escapes_as_the_parser_does():
    assert json_depth(b'{"a": [1, {"b": "[[[[{{"}], "c": {}}') == 3
    assert json_depth(rb'["\"[[[", "\\", [["]]]"]]]') == 3
    assert json_depth(b"") == 0 and json_depth(b"[" * 5000) == 5000


# --- fields this server does not implement ---------------------------------------------------------------
TOOL = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}
UNSUPPORTED = {
    "tools": {"tools": [TOOL]},
    "tool_choice": {"tool_choice": "required"},
    "functions": {"functions": [TOOL["function"]]},
    "function_call": {"function_call": {"name": "weather"}},
    "response_format": {"response_format": {"type": "json_object"}},
    "logprobs": {"logprobs": True},
    "top_logprobs": {"top_logprobs": 3},
    "logit_bias": {"logit_bias": {"1234": -100}},
    "n": {"n": 2},
    "presence_penalty": {"presence_penalty": 0.5},
    "frequency_penalty": {"frequency_penalty": -0.5},
    "top_p": {"top_p": 0.5, "temperature": 0.8},
    "seed": {"seed": 7, "temperature": 0.8},
}


@pytest.mark.parametrize("field", sorted(UNSUPPORTED))
def test_a_field_that_would_change_the_answer_is_refused_by_name(client, app, field):
    requests = app.pipeline.engine.stats.requests
    with pytest.raises(openai.BadRequestError) as refused:
        _raw(client, max_tokens=4, **UNSUPPORTED[field])
    assert refused.value.body["code"] == "unsupported_parameter" and refused.value.body["param"] == field
    assert field in refused.value.body["message"]
    assert app.pipeline.engine.stats.requests == requests


def test_default_values_of_those_fields_change_nothing(client):
    """What clients send by default is accepted, and the answer is the same as without it."""
    plain = _raw(client, max_tokens=12).choices[0]
    defaults = _raw(client, max_tokens=12, tools=[], tool_choice="none", response_format={"type": "text"},
                    logprobs=False, top_logprobs=0, logit_bias={}, n=1, presence_penalty=0, frequency_penalty=0,
                    top_p=0.3, seed=7, user="someone", metadata={"team": "a"}).choices[0]  # greedy: no effect
    assert defaults.message.content == plain.message.content and defaults.finish_reason == plain.finish_reason
    assert plain.message.content


def test_stop_strings_are_bounded_in_number_and_length(client):
    with pytest.raises(openai.BadRequestError, match="at most 4 stop"):
        _raw(client, max_tokens=2, stop=["a", "b", "c", "d", "e"])
    with pytest.raises(openai.BadRequestError, match=f"at most {MAX_STOP_CHARS} characters"):
        _raw(client, max_tokens=2, stop=["x" * (MAX_STOP_CHARS + 1)])
    assert _raw(client, max_tokens=2, stop=["x" * MAX_STOP_CHARS]).choices[0].message.content


# --- limits ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_beyond_the_setting_is_a_400_naming_the_limit(app, field):
    requests = app.pipeline.engine.stats.requests
    for raw in (False, True):
        body = {"model": "base", "messages": ASKED, "raw": raw, field: MAX_TOKENS + 1}
        message = _refused(_post(app, json.dumps(body).encode()), 400, param=field)
        assert str(MAX_TOKENS) in message
    assert app.pipeline.engine.stats.requests == requests


def test_a_prompt_beyond_the_models_context_is_a_400_the_engine_never_runs(app, context_tokens):
    engine = app.pipeline.engine
    requests = engine.stats.requests
    huge = [{"role": "user", "content": "word " * (context_tokens + 2000)}]
    message = _refused(_post(app, json.dumps({"model": "base", "messages": huge, "raw": True,
                                              "max_tokens": 8}).encode()), 400, param="messages")
    assert str(context_tokens) in message
    # A grounded prompt fits by construction (context_tokens); max_tokens is what can overflow it.
    message = _refused(_post(app, json.dumps({"model": "medicine", "max_tokens": context_tokens - 10,
                                              "messages": [{"role": "user", "content": QUESTION}]}).encode()),
                       400, param="max_tokens")
    assert str(context_tokens) in message
    assert engine.stats.requests == requests and _idle(engine)


def test_allowed_token_ids_are_checked(app, client):
    engine = app.pipeline.engine
    requests = engine.stats.requests
    for ids, why in (([5, -1], "greater than or equal to 0"), (list(range(MAX_ALLOWED_TOKEN_IDS + 1)), "at most"),
                     ([5, 10**6], str(10**6))):
        with pytest.raises(openai.BadRequestError, match=why) as refused:
            _raw(client, max_tokens=1, extra={"allowed_token_ids": ids})
        assert refused.value.body["param"] == "allowed_token_ids"
    assert engine.stats.requests == requests
    labels = engine.token_ids(["Yes", "No"])
    one = _raw(client, max_tokens=1, extra={"allowed_token_ids": list(labels)})
    assert one.choices[0].message.content in {engine.tokenizer.decode([label]) for label in labels}


# --- clients that go away ----------------------------------------------------------------------------------
def test_a_client_that_hangs_up_frees_its_place_and_its_engine_row(app, client):
    """Non-streamed answers, long ones, both places of api_max_concurrent: each client hangs up
    once its request is decoding. The engine drops the rows (cancelled, not run to max_tokens) and
    the places are free for the next request."""
    engine = app.pipeline.engine
    cancelled = engine.stats.finished.get("cancelled", 0)
    counted = ", ".join(str(n) for n in range(1, 41)) + ","  # continued, the model counts on (hundreds of tokens)
    body = json.dumps({"model": "base", "raw": True, "max_tokens": 1500, "continue_final_message": True,
                       "add_generation_prompt": False, "messages": [
                           {"role": "user", "content": "Count from 1 to 2000, separated by commas."},
                           {"role": "assistant", "content": counted}]}).encode()
    connections = []
    for _ in range(app.pipeline.settings.api_max_concurrent):
        connection = _connect(app)
        connection.sendall(_request_head(app, len(body), KEY) + body)
        connections.append(connection)
    _until(lambda: engine.occupancy()["running"] == len(connections), "both requests to be decoding")
    for connection in connections:
        connection.close()
    _until(lambda: _idle(engine), "the engine to drop the rows")
    assert engine.stats.finished.get("cancelled", 0) - cancelled == len(connections)

    def answered() -> bool:  # the places come back once each request's worker has ended
        try:
            return bool(_raw(client, max_tokens=2).choices[0].message.content)
        except openai.RateLimitError:
            return False
    _until(answered, "a place for a new request")


# --- a generation that fails mid-answer ------------------------------------------------------------------------
@contextmanager
def decode_steps(fail_from: int | None = None):
    """Counts the serving engine's decode steps (one per token, with one request running); from
    step ``fail_from`` on, each raises as a failing GPU would."""
    original, counted = DecodeBatch.step, itertools.count()
    steps = []

    def step(batch, model):
        steps.append(next(counted))
        if fail_from is not None and steps[-1] >= fail_from:
            raise RuntimeError("injected decode failure")
        return original(batch, model)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DecodeBatch, "step", step)
        yield steps


def _events(app, body: dict) -> list:
    """The stream's events, parsed; "[DONE]" as itself."""
    events = []
    with httpx.stream("POST", app.url.rstrip("/") + "/v1/chat/completions", json={**body, "stream": True},
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=WAIT_S) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append("[DONE]" if line == "data: [DONE]" else json.loads(line[len("data: "):]))
    return events


def _content(events: list) -> str:
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events if isinstance(e, dict) and e.get("choices"))


def test_a_stream_that_fails_after_its_first_sentence_ends_with_an_error(app, client):
    """The same answer twice: whole, then with decoding failing just before its last token. The
    client gets the sentences released before that, then the protocol's error event; no finish
    chunk, and no text that was not streamed (the chat page's apology)."""
    body = {"model": "auto", "max_tokens": 100, "messages": [{"role": "user", "content": YES_NO}]}
    with decode_steps() as steps:
        whole = _events(app, body)
    finish = [e for e in whole if isinstance(e, dict) and e.get("choices") and e["choices"][0]["finish_reason"]]
    assert len(finish) == 1 and _content(whole) == finish[0]["evidence"]["text"]
    pieces = [e for e in whole if isinstance(e, dict) and e.get("choices") and e["choices"][0]["delta"].get("content")]
    assert len(pieces) >= 2 and len(steps) >= 2, "the answer must stream a sentence before its last token"
    with decode_steps(fail_from=len(steps) - 1):
        failed = _events(app, body)
    assert failed[-1] == "[DONE]" and "error" in failed[-2], failed[-2:]
    assert failed[-2]["error"]["code"] == "generation_failed" and failed[-2]["error"]["type"] == "server_error"
    assert not any(e["choices"][0]["finish_reason"] for e in failed[:-2])
    streamed = _content(failed)  # the sentences released before the failure
    assert streamed and _content(whole).startswith(streamed)
    assert "Sorry" not in streamed
    # The raw path, through the openai package: it raises at the error event.
    received = []
    with decode_steps(fail_from=5), pytest.raises(openai.APIError, match="injected decode failure"):
        for chunk in _raw(client, max_tokens=30, stream=True):
            received.append(chunk.choices[0].delta.content or "")
            assert not chunk.choices[0].finish_reason
    assert "".join(received)
    assert _raw(client, max_tokens=4).choices[0].message.content  # still serving
