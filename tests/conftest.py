"""Shared fixtures: one real graph server for the whole session, one loaded embedder, and
settings pointing every test at its own temporary data dir."""

from __future__ import annotations

import os
import shutil
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from assistant.settings import DEMO_CORPORA_DIR, Settings, load_settings
from indexing.embedding import Embedder, get_embedder
from indexing.graph_connection import GraphConnection
from indexing.graph_server import EmbeddedGraphServer, free_bolt_port
from indexing.graph_store import GraphStore

DEMO_DOMAINS = ("medicine", "finance", "law")
# Debian's chromium for the browser tests (never a Playwright browser download).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def skip_without_chromium() -> None:
    """Skip the calling test module when chromium is missing, unless REQUIRE_BROWSER=1 (.ci/run),
    where a missing browser is an error."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("REQUIRE_BROWSER") == "1":
            raise RuntimeError("REQUIRE_BROWSER=1 but no chromium: apt-get install -y chromium")
        pytest.skip("no chromium on this machine (apt-get install -y chromium); the browser test is skipped",
                    allow_module_level=True)


@pytest.fixture(scope="session")
def graph_server(tmp_path_factory) -> EmbeddedGraphServer:
    """A real embedded FalkorDB server (its private Unix socket) in a temp dir, for the whole session."""
    server = EmbeddedGraphServer(tmp_path_factory.mktemp("graph")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def bolt_graph_server(tmp_path_factory) -> EmbeddedGraphServer:
    """A FalkorDB that also listens for Bolt on a loopback port, for the Bolt-transport tests only
    (the app never opens that listener: it binds every interface and lets in clients without a password)."""
    server = EmbeddedGraphServer(tmp_path_factory.mktemp("bolt-graph"), bolt_port=free_bolt_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def graph_connection(graph_server, tmp_path_factory) -> GraphConnection:
    """One long-lived connection (a pool of socket connections) shared by the session's tests."""
    settings = load_settings(data_dir=tmp_path_factory.mktemp("shared") / "data", _env_file=None)
    connection = GraphConnection(settings.graph_params, graph_server)
    yield connection
    connection.close(stop_server=False)


@pytest.fixture
def store(graph_connection, settings) -> GraphStore:
    """A GraphStore over the shared connection and the test's own data dir; the graph is left
    empty for the next test."""
    graph = GraphStore(graph_connection, settings.domains_dir)
    graph.ensure_indexes()
    yield graph
    for domain in graph.domains():
        graph.delete_domain(domain)


@pytest.fixture(scope="session")
def base_model(tmp_path_factory):
    """The default base model, converted once for the session (about half a minute)."""
    from adapters.base_model import resolve_base_model

    settings = load_settings(data_dir=tmp_path_factory.mktemp("base") / "data", _env_file=None)
    return resolve_base_model(settings.base_model, settings.models_dir)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return get_embedder()


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    """Settings isolated from the developer's environment and ./data."""
    for name in ("NEO4J_URI", "NEO4J_USER", "NEO4J_PASSWORD", "NEO4J_DATABASE"):
        monkeypatch.delenv(name, raising=False)
    return load_settings(data_dir=tmp_path / "data", _env_file=None)


@pytest.fixture
def demo_copy(tmp_path) -> Path:
    """A writable copy of the demo corpora (tests edit, add and delete files in it)."""
    target = tmp_path / "corpora"
    shutil.copytree(DEMO_CORPORA_DIR, target)
    return target


@dataclass
class DemoEnvironment:
    settings: Settings
    server: EmbeddedGraphServer
    connection: GraphConnection
    graph: GraphStore


@pytest.fixture(scope="session")
def demo_env(tmp_path_factory, embedder, base_model) -> DemoEnvironment:
    """The three demo domains indexed (FAISS, BM25 and graph) once for the session, on a graph
    server of their own reached like an external one (NEO4J_URI=unix://… with its password), so a
    test can stop it without the app restarting it, and so no other test's clean-up touches these domains."""
    from indexing.pipeline import index_source

    root = tmp_path_factory.mktemp("demo")
    server = EmbeddedGraphServer(root / "graph").start()
    data = root / "data"
    (data / "models").mkdir(parents=True)
    (data / "models" / base_model.path.name).symlink_to(base_model.path)
    settings = load_settings(data_dir=data, _env_file=None, neo4j_uri=server.uri, neo4j_password=server.secret,
                             max_new_tokens=24,
                             graph_retry_after_s=0.0)
    try:
        connection = GraphConnection.open(settings.graph_params)
        graph = GraphStore(connection, settings.domains_dir)
        graph.ensure_indexes()
        for domain in DEMO_DOMAINS:
            report = index_source(settings.indexing_params, DEMO_CORPORA_DIR / domain, domain, progress=False, graph=graph,
                                  embedder=embedder)
            assert report.ok, report.format()
    except BaseException:
        server.stop()  # a failed setup has no teardown: do not leave the server behind
        raise
    yield DemoEnvironment(settings, server, connection, graph)
    connection.close(stop_server=False)
    server.stop()


ADMIN_PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served_app(settings: Settings, graph: GraphStore | None, embedder: Embedder):
    """The Gradio app with its own serving engine (local, or remote when the settings say so) on a
    free loopback port, closed afterwards."""
    from assistant.serving.remote_engine import serving_engine
    from assistant.web.server import serve

    engine = serving_engine(settings, load_registered=False)
    try:
        running = serve(settings, graph, host="127.0.0.1", port=free_port(), engine=engine, embedder=embedder)
        try:
            yield running
        finally:
            running.close()
    finally:
        engine.close()


@pytest.fixture(scope="session")
def running_app(demo_env, embedder):
    """The Gradio app served once for the session on a free loopback port, over ``demo_env``,
    with admin password ADMIN_PASSWORD; shared by the UI, browser and reliability tests (each
    launch costs seconds). Tests that change what it serves put it back."""
    from pydantic import SecretStr

    # Many tests probe the login with wrong passwords; the backoff itself is tested on an app of its own.
    settings = demo_env.settings.model_copy(update={"admin_password": SecretStr(ADMIN_PASSWORD),
                                                    "admin_login_failures_allowed": 1000})
    with served_app(settings, demo_env.graph, embedder) as running:
        yield running


def write_lora_adapter(base_model, folder: Path, domain: str, *, seed: int, scale: float = 0.3,
                       poison: bool = False) -> Path:
    """A real LoRA adapter made by peft on the real base, with random (not trained) weights so
    that it visibly changes the base's output; ``poison`` fills it with NaN."""
    import json

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from adapters.registry import adapter_manifest

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_model.path))
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.fill_(float("nan")) if poison else parameter.mul_(scale)
    peft_model.save_pretrained(str(folder))
    (folder / "README.md").unlink(missing_ok=True)
    (folder / "manifest.json").write_text(json.dumps(adapter_manifest(domain, base_model, metrics={"seed": seed})))
    return folder
