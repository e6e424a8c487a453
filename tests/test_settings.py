"""The typed settings object: defaults, environment overrides, validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from assistant.settings import load_settings


def test_environment_overrides_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("ASSISTANT_CHUNK_TOKENS", "120")
    monkeypatch.setenv("NEO4J_URI", "bolt://graph.example:7687")
    monkeypatch.setenv("NEO4J_PASSWORD", "s3cret")
    monkeypatch.setenv("NEO4J_DATABASE", "kb")
    settings = load_settings(_env_file=None)
    assert settings.data_dir == tmp_path / "elsewhere"
    assert settings.domains_dir == tmp_path / "elsewhere" / "domains"
    assert settings.chunk_tokens == 120
    assert settings.neo4j_uri == "bolt://graph.example:7687" and not settings.uses_embedded_graph
    assert settings.neo4j_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.neo4j_database == "kb"


def test_defaults_use_the_embedded_graph(monkeypatch):
    monkeypatch.delenv("NEO4J_URI", raising=False)
    settings = load_settings(_env_file=None)
    assert settings.uses_embedded_graph and settings.data_dir.name == "data"


@pytest.mark.parametrize("uri, bolt", [("bolt://graph.example:7687", True), ("neo4j+s://graph.example", True),
                                       ("unix:///run/falkordb/graph.sock", False), ("redis://graph.example:6379", False)])
def test_the_graph_uri_scheme_picks_the_transport(uri, bolt):
    settings = load_settings(_env_file=None, neo4j_uri=uri)
    assert settings.graph_over_bolt is bolt and not settings.uses_embedded_graph


def test_an_unknown_graph_uri_scheme_is_refused_with_the_known_ones():
    with pytest.raises(ValidationError, match="NEO4J_URI must start with one of bolt://.*unix://"):
        load_settings(_env_file=None, neo4j_uri="http://graph.example:7474")


def test_the_connection_never_shows_a_password_in_its_uri(tmp_path):
    from indexing.graph_connection import GraphConnection

    settings = load_settings(_env_file=None, data_dir=tmp_path, neo4j_uri="redis://user:hunter2@graph.example:6379/0")
    assert GraphConnection(settings.graph_params).uri == "redis://graph.example:6379/0"


def test_dotenv_file_is_read(monkeypatch, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("ASSISTANT_CHUNK_OVERLAP_TOKENS=7\n")
    assert load_settings(_env_file=env_file).chunk_overlap_tokens == 7


def test_overlap_must_be_smaller_than_chunk(monkeypatch):
    with pytest.raises(ValidationError, match="chunk_overlap_tokens"):
        load_settings(chunk_tokens=50, chunk_overlap_tokens=50, _env_file=None)
