"""Shared fixtures: one real graph server for the whole session, one loaded embedder, and
settings pointing every test at its own temporary data dir."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from assistant.settings import DEMO_CORPORA_DIR, Settings, load_settings
from indexing.embedding import Embedder, get_embedder
from indexing.graph_connection import GraphConnection
from indexing.graph_server import EmbeddedGraphServer
from indexing.graph_store import GraphStore

DEMO_DOMAINS = ("medicine", "finance", "law")


@pytest.fixture(scope="session")
def graph_server(tmp_path_factory) -> EmbeddedGraphServer:
    """A real FalkorDB server on a free port in a temp dir, for the whole test session."""
    server = EmbeddedGraphServer(tmp_path_factory.mktemp("graph")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def graph_connection(graph_server, tmp_path_factory) -> GraphConnection:
    """One long-lived connection for the session: FalkorDB makes the first handshake after a
    client disconnects wait for a timeout (see indexing/graph_server.py), so tests share one."""
    settings = load_settings(data_dir=tmp_path_factory.mktemp("shared") / "data", _env_file=None)
    connection = GraphConnection(settings, graph_server)
    yield connection
    connection.close(stop_server=False)


@pytest.fixture
def store(graph_connection, settings) -> GraphStore:
    """A GraphStore over the shared connection and the test's own data dir; the graph is left
    empty for the next test. (Separate databases per test cannot work over one connection:
    FalkorDB keeps a connection on the graph it first used.)"""
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
    return resolve_base_model(settings)


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
