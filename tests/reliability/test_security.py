"""Security of the served app and the embedded graph server.

* Every admin action is refused without an admin session: every endpoint the app lists (through
  gradio_client), every event handler the page can trigger, hidden ones too (plain HTTP to
  ``/gradio_api/call/<name>``), and every AdminService method. The endpoints are found by listing
  the running app, so a new admin endpoint is checked without editing this file; only an
  allow-list of public ones (chat, ask, the examples loader) is skipped.
* The embedded graph server has no network port (no Bolt listener, no Redis TCP port); its Unix
  socket is private (mode 0700 in a 0700 folder) and refuses every command without its password.
* The graph secret and the admin password are files of mode 0600 and appear in no log, no
  error message, no process list, no page config, and cannot be fetched through Gradio's file route.
* The app listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import socket
import stat
from pathlib import Path

import httpx
import psutil
import pytest
from gradio_client import Client
from pydantic import SecretStr

from assistant.admin.service import AdminDenied, AdminService
from assistant.settings import Settings, load_settings
from indexing import cypher
from indexing.graph_connection import GraphConnection, GraphError
from indexing.graph_server import STATE_FILE, EmbeddedGraphServer

FORGED = "forged-session-token"
REFUSALS = ("admin login required", "wrong admin username or password", "too many failed logins")
# What anyone may call: the chat (button and Enter), the JSON question API, Gradio's examples loader.
PUBLIC_FUNCTIONS = {"chat", "ask", "load_example"}
# Called by the app itself (first-run demo adapters, the upload guard), never wired to the UI or the API.
INTERNAL_METHODS = {"login", "check", "train_in_background", "upload_ticket_valid"}


# --- every admin action refused without a session -----------------------------------------------

def _value_for(parameter: dict, token: str):
    kind = parameter["type"].get("type")
    return {"boolean": False, "integer": 1, "number": 1}.get(kind, token)


def test_every_listed_api_endpoint_refuses_without_a_session(running_app):
    client = Client(running_app.url, verbose=False)
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    guarded = {name: info for name, info in endpoints.items() if name.strip("/") not in PUBLIC_FUNCTIONS}
    assert {"/admin_login", "/admin_logout", "/admin_domains", "/admin_reindex", "/admin_load_adapter",
            "/admin_train"} <= set(guarded)
    for name, info in guarded.items():
        arguments = [_value_for(p, FORGED) for p in info["parameters"]]
        with pytest.raises(Exception) as refused:
            client.predict(*arguments, api_name=name)
        assert any(reason in str(refused.value) for reason in REFUSALS), (name, refused.value)


def _component_value(component: dict, token: str):
    values = {"textbox": token, "api": token, "state": token, "file": None, "checkbox": False, "number": 1, "dropdown": "auto",
              "chatbot": [], "dataframe": None, "json": None, "markdown": "", "image": None}
    assert component["type"] in values, f"teach this test a value for a {component['type']} input"
    return values[component["type"]]


def _sse_events(stream: str) -> list[tuple[str, object]]:
    events, kind = [], None
    for line in stream.splitlines():
        if line.startswith("event:"):
            kind = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            events.append((kind, json.loads(line.split(":", 1)[1])))
    return events


def _refused(events: list[tuple[str, object]]) -> bool:
    """An error event with a refusal, or a completed event that says "Refused" or changes nothing."""
    if not events:
        return False
    kind, data = events[-1]
    text = json.dumps(data)
    if kind == "error":
        return any(reason in text for reason in REFUSALS)
    no_change = all(isinstance(item, dict) and set(item) <= {"__type__"} for item in data)
    return kind == "complete" and (any(reason in text for reason in REFUSALS) or no_change)


@pytest.mark.parametrize("token", [FORGED, ""], ids=["forged token", "empty token"])
def test_every_event_handler_refuses_without_a_session_over_http(running_app, token):
    """The page's own handlers (hidden from the API listing, but callable by name over HTTP, as
    the browser calls them) are found in the app's /config and called like a script would."""
    url = running_app.url
    config = httpx.get(f"{url}config", timeout=30).json()
    components = {c["id"]: c for c in config["components"]}
    handlers = [d for d in config["dependencies"] if d.get("backend_fn")]
    checked = []
    for handler in handlers:
        function = running_app.app.fns[handler["id"]].name
        if function in PUBLIC_FUNCTIONS:
            continue
        data = [_component_value(components[i], token) for i in handler["inputs"]]
        name = handler["api_name"]
        call = httpx.post(f"{url}gradio_api/call/{name}", json={"data": data}, timeout=30)
        assert call.status_code == 200, (name, call.text)
        stream = httpx.get(f"{url}gradio_api/call/{name}/{call.json()['event_id']}", timeout=60).text
        assert _refused(_sse_events(stream)), (name, function, stream[:500])
        assert "medicine" not in stream, (name, stream[:500])  # no admin data (the domains table) leaked
        checked.append(function)
    # the admin tab's own handlers were among them: login, the status refresh, the buttons
    assert {"do_login", "do_logout", "refresh", "domains", "reindex", "load_adapter"} <= set(checked), checked


def test_every_admin_service_method_checks_the_session(running_app):
    admin = running_app.admin
    methods = {name: fn for name, fn in inspect.getmembers(AdminService, inspect.isfunction)
               if not name.startswith("_") and name not in INTERNAL_METHODS}
    assert {"domains", "reindex", "upload_corpus", "upload_adapter", "load_adapter", "rollback", "unload", "train",
            "status", "job", "adapters", "logout", "upload_ticket", "overview"} <= set(methods)
    for name, method in methods.items():
        parameters = list(inspect.signature(method).parameters)[1:]
        assert parameters[0] == "token", f"AdminService.{name} must take the session token first"
        for token in (FORGED, "", None):
            with pytest.raises(AdminDenied, match="admin login required"):
                method(admin, token, *["medicine"] * (len(parameters) - 1))


# --- the embedded graph server ---------------------------------------------------------------

def _server_pid(server: EmbeddedGraphServer) -> int:
    return json.loads((server.directory / STATE_FILE).read_text())["pid"]


def _socket_replies(server: EmbeddedGraphServer, *commands: bytes) -> list[bytes]:
    """Raw RESP commands on the server's Unix socket, as any local process could send them."""
    replies = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(5)
        connection.connect(str(server.socket_path))
        for command in commands:
            connection.sendall(command + b"\r\n")
            replies.append(connection.recv(200))
    return replies


def test_the_graph_server_refuses_every_command_without_its_password(graph_server):
    ping, wrong, empty, query, save = _socket_replies(
        graph_server, b"PING", b"AUTH not-the-secret", b'AUTH ""', b'GRAPH.QUERY knowledge "MATCH (n) RETURN count(n)"',
        b"CONFIG SET dir /tmp")
    assert ping.startswith(b"-NOAUTH") and query.startswith(b"-NOAUTH") and save.startswith(b"-NOAUTH")
    assert wrong.startswith(b"-WRONGPASS") and empty.startswith(b"-WRONGPASS")


def test_the_graph_server_has_no_network_port_and_a_private_socket(graph_server):
    process = psutil.Process(_server_pid(graph_server))
    assert process.net_connections(kind="inet") == []  # no TCP or UDP socket: no Bolt, no Redis port
    assert stat.S_IMODE(graph_server.socket_path.stat().st_mode) == 0o700
    assert stat.S_IMODE(graph_server.socket_path.parent.stat().st_mode) == 0o700


def test_the_app_and_its_graph_server_listen_on_nothing_beyond_loopback(running_app, demo_env):
    listening = [c.laddr for c in psutil.Process().net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening and all(address.ip in ("127.0.0.1", "::1") for address in listening), listening
    assert psutil.Process(_server_pid(demo_env.server)).net_connections(kind="inet") == []


# --- secrets: private files, never printed ---------------------------------------------------

def _file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_graph_secret_is_private_and_never_printed_or_listed(tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)  # client libraries log at debug level too
    server = EmbeddedGraphServer(tmp_path / "graph").start()
    try:
        secret = server.secret
        assert _file_mode(server.directory / "secret") == 0o600
        pid = json.loads((server.directory / STATE_FILE).read_text())["pid"]
        # the password reaches redis-server on its standard input (tests/test_graph_server.py watches
        # every process's arguments through start and restart)
        assert secret not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        wrong = load_settings(data_dir=tmp_path / "data", _env_file=None, neo4j_uri=server.uri,
                              neo4j_password=SecretStr("wrong-password-123"))
        with pytest.raises(GraphError) as failed:
            GraphConnection.open(wrong.graph_params)
        assert repr(wrong).count("wrong-password") == 0  # settings print the password as '**********'
        right = GraphConnection(load_settings(data_dir=tmp_path / "data", _env_file=None).graph_params, server)
        assert right.query(cypher.PING, what="checking with the secret") == [{"ok": 1}]
        right.close(stop_server=False)
    finally:
        server.stop()
    printed = capfd.readouterr()
    for text in (str(failed.value), repr(failed.value), caplog.text, printed.out, printed.err,
                 (server.directory / "server.log").read_text()):
        assert secret not in text and "wrong-password-" not in text


def test_admin_password_file_is_private_and_never_printed(running_app, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    settings = load_settings(data_dir=tmp_path / "data", _env_file=None)
    admin = AdminService(settings, running_app.pipeline, None)
    try:
        password = (tmp_path / "data" / "admin_password").read_text().strip()
        assert admin.password_file == tmp_path / "data" / "admin_password" and len(password) >= 16
        assert _file_mode(admin.password_file) == 0o600
        with pytest.raises(AdminDenied) as refused:
            admin.login("admin", password[:-1])
        assert admin.login("admin", password)
    finally:
        admin.jobs.shutdown()
    printed = capfd.readouterr()
    for text in (str(refused.value), caplog.text, printed.out, printed.err):
        assert password not in text


def test_the_page_and_the_file_route_give_no_secret_away(running_app, demo_env, tmp_path):
    url = running_app.url
    secrets = {"admin password": running_app.pipeline.settings.admin_password.get_secret_value(),
               "graph secret": demo_env.server.secret}
    pages = {path: httpx.get(f"{url}{path}", timeout=30).text for path in ("", "config", "gradio_api/info")}
    for path, text in pages.items():
        assert not [name for name, value in secrets.items() if value in text], path
    secret_file = demo_env.server.directory / "secret"
    relative = os.path.relpath(secret_file, Path.cwd())
    for target in (str(secret_file), relative, "../" * 12 + str(secret_file).lstrip("/")):
        response = httpx.get(f"{url}gradio_api/file={target}", timeout=30)
        assert response.status_code in (400, 403, 404), (target, response.status_code)
        assert demo_env.server.secret not in response.text


# --- where the app listens ---------------------------------------------------------------------

def _listening_addresses(port: int) -> list[str]:
    return [c.laddr.ip for c in psutil.Process().net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port]


def test_the_app_listens_on_loopback_unless_told_otherwise(running_app, embedder, monkeypatch):
    from assistant.web.server import serve
    from conftest import free_port

    monkeypatch.delenv("ASSISTANT_UI_HOST", raising=False)
    assert Settings.model_fields["ui_host"].default == "127.0.0.1"
    settings = running_app.pipeline.settings.model_copy(update={"ui_port": free_port()})
    assert settings.ui_host == "127.0.0.1"
    app = serve(settings, None, engine=running_app.pipeline.engine, embedder=embedder)  # no host given: the default
    try:
        assert app.url.startswith("http://127.0.0.1:")
        assert _listening_addresses(settings.ui_port) == ["127.0.0.1"]
    finally:
        app.close()
    assert _listening_addresses(int(running_app.url.rstrip("/").rsplit(":", 1)[1])) == ["127.0.0.1"]
