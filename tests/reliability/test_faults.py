"""Faults survived: each test breaks something for real (SIGKILL, damaged files, a full disk)
and checks that answers keep coming, that what served keeps serving, that the damage is named,
and that the next run repairs it. Real graph servers (their own, so killing them disturbs no
other test), real FAISS files, the real embedder and base model."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters import registry as registry_module
from adapters.registry import AdapterRegistry
from assistant.admin.service import AdminService
from assistant.answering.pipeline import ChatPipeline
from assistant.bootstrap import bootstrap
from assistant.cli.main import main as cli_main
from assistant.serving.adapter_pool import AdapterLoadError
from assistant.serving.engine import Engine
from assistant.settings import DEMO_CORPORA_DIR, PROJECT_ROOT, Settings, load_settings
from indexing import vector_store
from indexing.domain_summary import summarise_domains
from indexing.graph_connection import GraphConnection
from indexing.graph_server import STATE_FILE, pid_alive
from indexing.graph_store import GraphStore
from indexing.graph_transport import FalkorDBTransport
from indexing.pipeline import index_source
from indexing.spacy_extractor import SpacyExtractor
from indexing.vector_store import VectorStore
from indexing.versions import BUILDING_PREFIX, DomainVersions, read_manifest

# A few medicine documents whose graph holds "vitamin K reverses the effect of warfarin": small
# enough to index with the graph in seconds.
MEDICINE_DOCS = ("warfarin.md", "aspirin.md", "metformin.md", "insulin.md")
MORE_MEDICINE_DOCS = ("statins.md", "penicillin.md", "ibuprofen.md")
LAW_DOCS = ("marbury-v-madison.md", "gdpr.md", "magna-carta.md", "gideon-v-wainwright.md", "miranda-v-arizona.md",
            "brown-v-board-of-education.md")
FINANCE_DOCS = ("federal-reserve.md", "paul-volcker.md", "s-and-p-500.md", "glass-steagall-act.md", "dodd-frank-act.md",
                "bank-of-england.md")
WARFARIN = "What reverses the effect of warfarin?"
FINANCE_QUESTION = "Which law created the Federal Reserve System?"
LAW_QUESTION = "Which case established judicial review?"


@pytest.fixture(autouse=True)
def no_external_graph(monkeypatch):
    """Every test here runs the embedded graph server of its own data dir (or none)."""
    for name in ("NEO4J_URI", "NEO4J_USER", "NEO4J_PASSWORD", "NEO4J_DATABASE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def extractor() -> SpacyExtractor:
    return SpacyExtractor()  # spaCy loads once for the module


@pytest.fixture(scope="module")
def engine(base_model, tmp_path_factory) -> Engine:
    """One serving engine for the module's chat pipelines (adapters are loaded per test)."""
    engine = Engine(_settings(tmp_path_factory.mktemp("pool"), base_model), load_registered=False)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def lora_adapter(base_model, tmp_path_factory) -> Path:
    """A real (untrained) LoRA adapter for the medicine domain; tests copy it."""
    from conftest import write_lora_adapter

    return write_lora_adapter(base_model, tmp_path_factory.mktemp("lora") / "adapter", "medicine", seed=1)


def _settings(root: Path, base_model=None, **overrides) -> Settings:
    data = root / "data"
    (data / "models").mkdir(parents=True, exist_ok=True)
    if base_model is not None and not (data / "models" / base_model.path.name).exists():
        (data / "models" / base_model.path.name).symlink_to(base_model.path)
    # Short prompts and answers: these tests are about faults, not about answer quality.
    defaults = {"max_new_tokens": 4, "context_tokens": 384, "history_tokens": 64, "graph_retry_after_s": 0.0,
                "demo_corpora_dir": root / "no-demo", "admin_password": "fault-tests-password"}
    return load_settings(data_dir=data, _env_file=None, **{**defaults, **overrides})


def _corpus(target: Path, names: tuple[str, ...], domain: str = "medicine") -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(DEMO_CORPORA_DIR / domain / name, target / name)
    return target


def _warfarin_facts(graph: GraphStore) -> list:
    keys = [link.key for link in graph.link_entities("medicine", "warfarin vitamin K")]
    return [f for f in graph.facts("medicine", keys) if "warfarin" in f.tail.lower() and "vitamin k" in f.head.lower()]


# --- 1. the graph server is SIGKILLed during a conversation ------------------------------------

def test_killed_graph_server_restarts_by_itself_with_the_last_reindex(tmp_path, embedder, extractor, engine, caplog,
                                                                       monkeypatch):
    settings = _settings(tmp_path)
    source = _corpus(tmp_path / "medicine", MEDICINE_DOCS)
    connection = GraphConnection.open(settings.graph_params)  # the embedded server, as the app runs it
    server = connection.server
    try:
        graph = GraphStore(connection, settings.domains_dir)
        graph.ensure_indexes()
        report = index_source(settings.indexing_params, source, "medicine", progress=False, graph=graph, embedder=embedder,
                              extractor=extractor)
        assert report.ok, report.format()
        written = read_manifest(DomainVersions(settings.domains_dir, "medicine").current_path())["graph"]
        # At once, before the server's own once-a-second snapshot: the re-index must have saved it.
        server.kill()
        caplog.set_level(logging.INFO, logger="indexing.graph_server")

        chat = ChatPipeline.create(settings, graph, embedder=embedder, engine=engine)
        first = chat.respond(WARFARIN)
        assert first.error is None and first.text and not first.degraded, first.notes
        assert server.restarts == 1 and server.is_running()  # nobody called ensure_running
        assert "graph server died" in caplog.text and "restarting" in caplog.text
        stats = graph.stats("medicine")
        assert (stats["documents"], stats["entities"], stats["relations"]) == (
            len(MEDICINE_DOCS), written["entities"], written["relations"])
        assert _warfarin_facts(graph) and first.facts

        # Killed again between two turns of the conversation: the follow-up is answered, with facts.
        history = [{"role": "user", "content": WARFARIN}, {"role": "assistant", "content": first.text}]
        server.kill()
        follow_up = chat.respond("And what does warfarin prevent?", history)
        assert follow_up.error is None and follow_up.text and follow_up.domain == "medicine"
        assert not follow_up.degraded and server.restarts == 2

        # Killed while its data folder is unavailable, so it cannot come back: answers continue from
        # passages, saying so, without waiting on a dead port; when the folder is back, the next
        # question restarts the server and the facts return.
        server.kill()
        aside = settings.graph_dir.with_name("graph-unmounted")
        settings.graph_dir.rename(aside)
        settings.graph_dir.write_text("not a folder")
        try:
            restarts_tried, sent = [], []
            with monkeypatch.context() as patched:
                ensure_running, run = server.ensure_running, FalkorDBTransport.run
                patched.setattr(server, "ensure_running", lambda: restarts_tried.append("restart") or ensure_running())
                patched.setattr(FalkorDBTransport, "run", lambda self, *a, **k: sent.append(a[0]) or run(self, *a, **k))
                degraded = chat.respond(WARFARIN)
            # One restart tried, then given up: no query sent to the dead socket, no retry loop.
            assert restarts_tried == ["restart"] and sent == []
            assert degraded.error is None and degraded.text and degraded.degraded
            assert not degraded.facts and degraded.passages
            assert "knowledge graph unavailable, answered from passages only" in degraded.notes, degraded.notes
            assert "could not be restarted" in caplog.text  # the cause is in the log, not in the answer
        finally:
            settings.graph_dir.unlink()
            aside.rename(settings.graph_dir)
        recovered = chat.respond(WARFARIN)
        assert recovered.facts and not recovered.degraded and server.restarts == 3
        assert graph.stats("medicine")["relations"] == written["relations"]

        # Killed half-way through a re-index's graph writes: it restarts from its last snapshot,
        # without the batches written since, so that re-index fails instead of switching to an
        # incomplete graph version, and the previous version keeps answering.
        _corpus(source, MORE_MEDICINE_DOCS[:1])
        real_query, writes = connection.query, []

        def crash_on_second_write(statement, params=None, *, what, read=False):
            if what.startswith("writing graph"):
                writes.append(what)
                if len(writes) == 2:
                    server.kill()
            return real_query(statement, params, what=what, read=read)

        monkeypatch.setattr(connection, "query", crash_on_second_write)
        failed = index_source(settings.indexing_params, source, "medicine", progress=False, graph=graph, embedder=embedder,
                              extractor=extractor)
        monkeypatch.undo()
        assert "restarted during the write" in failed.domains[0].error and server.restarts == 4
        assert DomainVersions(settings.domains_dir, "medicine").current() == "v000001"
        assert graph.stats("medicine")["relations"] == written["relations"] and chat.respond(WARFARIN).facts
    finally:
        connection.close()


# --- 2. the app is SIGKILLed in the middle of a re-index -----------------------------------------

def test_app_killed_mid_reindex_keeps_the_old_version_and_cleans_up_on_restart(tmp_path, embedder, extractor):
    settings = _settings(tmp_path)
    source = _corpus(tmp_path / "medicine", MEDICINE_DOCS)
    with GraphConnection.open(settings.graph_params) as connection:
        graph = GraphStore(connection, settings.domains_dir)
        graph.ensure_indexes()
        first = index_source(settings.indexing_params, source, "medicine", progress=False, graph=graph, embedder=embedder,
                             extractor=extractor)
        assert first.ok and first.domains[0].version == "v000001"
    # The app (here `assistant index`) starts the graph server itself and is killed once the new
    # version's build folder appears, i.e. half-way: embedded, not yet extracted, written or switched.
    _corpus(source, MORE_MEDICINE_DOCS)
    versions = DomainVersions(settings.domains_dir, "medicine")
    app = subprocess.Popen([sys.executable, "-m", "assistant.cli", "index", "--source", str(source), "--domain",
                            "medicine", "--quiet"], env=_clean_env(settings), cwd=PROJECT_ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        try:
            build = _wait_for(lambda: next(versions.versions_dir.glob(f"{BUILDING_PREFIX}*"), None), app, 300)
        finally:
            app.send_signal(signal.SIGKILL)
            app.wait(timeout=30)
        assert build.exists() and versions.current() == "v000001"

        restarted = bootstrap(settings, progress=False)  # what launch.py does at start-up
        try:
            _check_restart_after_killed_reindex(settings, restarted, embedder, extractor, source)
        finally:
            restarted.connection.close()
    finally:
        _stop_orphaned_graph_server(settings.graph_dir)  # when the test failed before adopting it


@pytest.mark.parametrize("when", ["its graph server is starting", "its re-index is under way"])
def test_a_command_stopped_with_sigterm_stops_the_graph_server_it_started(tmp_path, when):
    """`timeout 120 assistant index ...` used to leave its graph server running as an orphan."""
    import psutil

    settings = _settings(tmp_path)
    source = _corpus(tmp_path / "medicine", MEDICINE_DOCS)
    state = settings.graph_dir / STATE_FILE
    versions = DomainVersions(settings.domains_dir, "medicine")
    command = subprocess.Popen([sys.executable, "-m", "assistant.cli", "index", "--source", str(source), "--domain",
                                "medicine", "--quiet"], env=_clean_env(settings), cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def graph_server():  # the redis-server child, from the moment it exists
        children = psutil.Process(command.pid).children(recursive=True)
        return next((child for child in children if "redis-server" in child.name()), None)

    server = None
    try:
        server = _wait_for(graph_server, command, 300)
        if when == "its re-index is under way":
            _wait_for(lambda: next(versions.versions_dir.glob(f"{BUILDING_PREFIX}*"), None), command, 300)
        command.send_signal(signal.SIGTERM)
        output, _ = command.communicate(timeout=120)
    finally:
        if command.poll() is None:
            command.kill()
        orphan = server is not None and pid_alive(server.pid)
        _stop_orphaned_graph_server(settings.graph_dir)  # when the test failed with it still up
        if orphan:
            server.kill()
    assert command.returncode == 128 + signal.SIGTERM and "stopped (SIGTERM)" in output, output
    assert not orphan and not state.exists()


def _check_restart_after_killed_reindex(settings: Settings, restarted, embedder, extractor, source: Path) -> None:
    graph, versions = restarted.graph, DomainVersions(settings.domains_dir, "medicine")
    assert restarted.connection.server.owned  # the killed app's server was adopted, not duplicated
    leftovers = [p.name for p in versions.versions_dir.iterdir() if p.name.startswith(BUILDING_PREFIX)]
    assert leftovers == [] and versions.all_versions() == ["v000001"]
    assert graph.versions("medicine") == ["v000001"]  # any half-written graph version is gone
    serving = VectorStore(settings.domains_dir).get("medicine")
    assert serving.version == "v000001" and len({row.doc_id for row in serving.rows}) == len(MEDICINE_DOCS)
    assert _warfarin_facts(graph)

    again = index_source(settings.indexing_params, source, "medicine", progress=False, graph=graph, embedder=embedder,
                         extractor=extractor).domains[0]
    assert again.error is None and again.switched and again.version == "v000002"
    assert again.documents_added == len(MORE_MEDICINE_DOCS) and again.chunks_embedded < again.chunks_total
    assert graph.versions("medicine") == ["v000001", "v000002"] and _warfarin_facts(graph)
    assert graph.stats("medicine")["documents"] == len(MEDICINE_DOCS) + len(MORE_MEDICINE_DOCS)


def _clean_env(settings: Settings) -> dict[str, str]:
    """The environment for a child process: this test's data dir, none of the developer's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSISTANT_", "NEO4J_"))}
    return {**env, "ASSISTANT_DATA_DIR": str(settings.data_dir)}


def _stop_orphaned_graph_server(graph_dir: Path) -> None:
    try:
        pid = json.loads((graph_dir / STATE_FILE).read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)


# --- 3. half-written adapter folders -------------------------------------------------------------

def test_half_written_adapters_are_never_listed_as_valid_and_the_listing_says_why(tmp_path, base_model, lora_adapter,
                                                                                  monkeypatch, capsys):
    settings = _settings(tmp_path)
    registry = AdapterRegistry(settings.adapters_dir)
    good = lora_adapter
    registry.install(good, "medicine-v1", base_model)  # complete, installed the normal way
    root = registry.root

    def copy_as(name: str) -> Path:
        return Path(shutil.copytree(good, root / name))

    copy_as("medicine-v2").joinpath("adapter_model.safetensors").unlink()  # manifest without weights
    weights = copy_as("medicine-v3").joinpath("adapter_model.safetensors")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated mid-tensor
    copy_as("medicine-v4").joinpath("adapter_config.json").write_text('{"peft_type": "LO')  # cut mid-write
    (root / "medicine-v5").mkdir()  # the folder exists, nothing in it yet
    (root / ".incoming-1a2b3c4d").mkdir()  # an install killed before its rename
    shutil.copy(good / "manifest.json", root / ".incoming-1a2b3c4d" / "manifest.json")

    assert [info.name for info in registry.list()] == ["medicine-v1"]
    problems = {bad.name: bad.problem for bad in registry.broken()}
    assert sorted(problems) == [".incoming-1a2b3c4d", "medicine-v2", "medicine-v3", "medicine-v4", "medicine-v5"]
    assert problems["medicine-v2"] == "missing adapter_model.safetensors"
    assert "adapter_model.safetensors is unreadable" in problems["medicine-v3"]
    assert "adapter_config.json is malformed" in problems["medicine-v4"]
    assert problems["medicine-v5"] == "missing adapter_model.safetensors, adapter_config.json, manifest.json"
    assert "unfinished install" in problems[".incoming-1a2b3c4d"]

    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(settings.data_dir))
    assert cli_main(["adapters", "list"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("INVALID") == 5 and "medicine-v3" in listing and "unreadable" in listing
    assert "INVALID" not in next(line for line in listing.splitlines() if line.startswith("medicine-v1"))
    assert registry.next_name("medicine") == "medicine-v6"  # a broken folder's name is not reused


# Settings for a few fast training steps (the same in the killed process and in the resumed run,
# since they decide the run's identity and so its checkpoint folder).
TINY_TRAINING = {"train_batch_size": 4, "learning_rate": 3e-3, "warmup_steps": 1, "eval_every_steps": 100,
                 "checkpoint_every_steps": 2, "eval_max_examples": 2, "lora_rank": 4, "lora_alpha": 8,
                 "lora_target_modules": ["q_proj", "v_proj"]}
TRAIN_IN_A_PROCESS = """
import json, sys
from pathlib import Path
from adapters.train import train_adapter
from assistant.settings import load_settings
settings = load_settings(data_dir=Path(sys.argv[1]), _env_file=None, **json.loads(sys.argv[2]))
train_adapter(settings.training_params, "medicine", max_steps=int(sys.argv[3]), progress=False, evaluate=False, name="killed")
"""


@pytest.mark.slow  # two loads of the 4-bit base and four training steps
def test_training_killed_with_sigkill_resumes_from_its_last_checkpoint(tmp_path, base_model):
    from adapters import prompts
    from adapters.dataset import DatasetReport, Example, write_dataset
    from adapters.train import train_adapter

    settings = _settings(tmp_path, base_model, **TINY_TRAINING)
    pairs = [("What does warfarin prevent?", "blood clots"), ("What reverses warfarin?", "vitamin K"),
             ("What does insulin lower?", "blood glucose"), ("Who discovered penicillin?", "Alexander Fleming"),
             ("What does aspirin inhibit?", "COX enzymes"), ("What is a statin?", "a cholesterol-lowering drug")]
    write_dataset(DatasetReport("medicine", settings.datasets_dir / "medicine"),
                  [Example(f"e{i}", "fact", f"g{i}", prompts.chat_messages("medicine", q, answer=a), a, "span",
                           split="validation" if i >= 4 else "train") for i, (q, a) in enumerate(pairs)])
    app = subprocess.Popen([sys.executable, "-c", TRAIN_IN_A_PROCESS, str(settings.data_dir), json.dumps(TINY_TRAINING),
                            "4"], env=_clean_env(settings), cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        state = _wait_for(lambda: next(settings.training_dir.glob("*/checkpoint/state.json"), None), app, 600)
    finally:
        app.send_signal(signal.SIGKILL)
        app.wait(timeout=30)
    checkpointed = json.loads(state.read_text())["step"]  # the last complete checkpoint before the kill
    assert checkpointed >= 2 and not (settings.adapters_dir / "killed").exists()

    resumed = train_adapter(settings.training_params, "medicine", max_steps=4, progress=False, evaluate=False, name="killed")
    assert resumed.resumed_from_step == checkpointed and resumed.steps == 4 and len(resumed.losses) == 4
    assert [info.name for info in AdapterRegistry(settings.adapters_dir).list()] == ["killed"]
    assert not any(settings.training_dir.iterdir())  # the finished run's checkpoints are gone


def _wait_for(find, app: subprocess.Popen, timeout_s: float):
    """Poll ``find`` until it returns something; fail if the process ends first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        if app.poll() is not None:
            pytest.fail(f"the process ended (rc {app.returncode}) before the fault point:\n{app.stdout.read()}")
        time.sleep(0.02)
    pytest.fail(f"the fault point was not reached within {timeout_s} s")


# --- 4. corrupted index files --------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_domains(tmp_path_factory, embedder) -> Path:
    """law and finance indexed once (FAISS + BM25, no graph); each test damages its own copy."""
    root = tmp_path_factory.mktemp("two-domains")
    settings = _settings(root)
    for domain, names in (("law", LAW_DOCS), ("finance", FINANCE_DOCS)):
        source = _corpus(root / "corpora" / domain, names, domain)
        assert index_source(settings.indexing_params, source, domain, progress=False, embedder=embedder).ok
    return root


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage,file,expected", [
    (_truncate, "index.faiss", "index.faiss is corrupted"),
    (_flip_byte, "chunks.jsonl", "chunks.jsonl is corrupted"),
    (_flip_byte, "manifest.json", "manifest.json is corrupted"),
])
def test_corrupted_index_file_is_named_other_domains_serve_and_reindex_repairs(
        two_domains, tmp_path, embedder, engine, monkeypatch, capsys, caplog, damage, file, expected):
    shutil.copytree(two_domains / "data", tmp_path / "data")
    settings = _settings(tmp_path)
    damage(DomainVersions(settings.domains_dir, "law").current_path() / file)

    chat = ChatPipeline.create(settings, None, embedder=embedder, engine=engine)
    with caplog.at_level(logging.WARNING, logger="assistant.answering.router"):
        assert chat.router.domains() == ["finance"]
    assert "not routing to law" in caplog.text and expected in caplog.text
    answer = chat.respond(FINANCE_QUESTION)
    assert answer.error is None and answer.domain == "finance" and answer.passages and answer.text
    assert chat.router.route(LAW_QUESTION).domain != "law"

    health = {row.domain: row for row in summarise_domains(settings.domains_dir)}
    assert not health["law"].healthy and expected in health["law"].problem and health["finance"].healthy
    admin = AdminService(settings, chat, None)
    try:
        table = {row["domain"]: row["health"] for row in admin.domains(admin.login("admin", "fault-tests-password"))}
    finally:
        admin.jobs.shutdown()
    assert table["finance"] == "ok" and expected in table["law"]
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(settings.data_dir))
    assert cli_main(["status"]) == 1
    status = capsys.readouterr().out
    law_line = next(line for line in status.splitlines() if line.startswith("law"))
    assert "UNHEALTHY" in law_line and expected in law_line

    repaired = index_source(settings.indexing_params, two_domains / "corpora" / "law", "law", progress=False,
                            embedder=embedder).domains[0]
    assert repaired.error is None and repaired.switched and repaired.chunks_embedded == repaired.chunks_total
    assert all(row.healthy for row in summarise_domains(settings.domains_dir))
    assert chat.router.domains() == ["finance", "law"] and chat.router.route(LAW_QUESTION).domain == "law"


# --- 5. a full disk or a refused write while saving an index or an adapter -------------------------

def _fail_version_writes(monkeypatch, versions: DomainVersions, problem: str) -> None:
    """The new version cannot be written. A full disk for real: its FAISS file is a link to
    /dev/full, so the kernel answers ENOSPC. A refused write: the versions folder made read-only
    where that stops us; root writes anywhere, so there the build folder's creation fails as the
    kernel would fail it (EACCES)."""
    if problem == "disk full":
        real_new_build_dir = DomainVersions.new_build_dir

        def build_dir_on_a_full_disk(self):
            path = real_new_build_dir(self)
            (path / vector_store.INDEX_FILE).symlink_to("/dev/full")
            return path

        monkeypatch.setattr(DomainVersions, "new_build_dir", build_dir_on_a_full_disk)
    elif os.geteuid() != 0:
        versions.versions_dir.chmod(0o555)
    else:
        def refused(self):
            path = self.versions_dir / f"{BUILDING_PREFIX}refused"
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

        monkeypatch.setattr(DomainVersions, "new_build_dir", refused)


@pytest.mark.timeout(300)  # a write to /dev/full that "succeeded" would then be checksummed forever
@pytest.mark.parametrize("problem,message", [("disk full", "No space left on device"),
                                             ("read-only", "Permission denied")])
def test_failed_index_write_says_why_and_the_old_version_keeps_serving(tmp_path, embedder, monkeypatch, problem,
                                                                       message):
    settings = _settings(tmp_path)
    law = _corpus(tmp_path / "law", LAW_DOCS[:3], "law")
    assert index_source(settings.indexing_params, law, "law", progress=False, embedder=embedder).ok
    shutil.copy(DEMO_CORPORA_DIR / "law" / "gideon-v-wainwright.md", law)
    versions = DomainVersions(settings.domains_dir, "law")
    _fail_version_writes(monkeypatch, versions, problem)
    try:
        failed = index_source(settings.indexing_params, law, "law", progress=False, embedder=embedder)
    finally:
        versions.versions_dir.chmod(0o755)
        monkeypatch.undo()
    error = failed.domains[0].error
    assert not failed.ok and message in error and "could not write the new version" in error, error
    assert "v000001 keeps serving" in failed.format()
    store = VectorStore(settings.domains_dir)
    hit = store.search("law", embedder.encode_query("judicial review"), k=1)[0]
    assert hit.version == "v000001" and hit.doc_id == "marbury-v-madison.md"

    again = index_source(settings.indexing_params, law, "law", progress=False, embedder=embedder).domains[0]
    assert again.switched and again.version == "v000002" and again.documents_added == 1
    assert not [p for p in versions.versions_dir.iterdir() if p.name.startswith(BUILDING_PREFIX)]


def test_failed_adapter_install_says_why_and_the_old_adapter_keeps_serving(tmp_path, lora_adapter, engine, monkeypatch):
    pool = engine.pool
    serving = engine.load_adapter(shutil.copytree(lora_adapter, tmp_path / "old"))
    candidate = shutil.copytree(lora_adapter, tmp_path / "new")
    real_copytree = shutil.copytree

    def copy_until_the_disk_is_full(source, target, **kwargs):
        def copy_one(src, dst, **kw):
            if Path(src).name == "adapter_model.safetensors":
                Path(dst).write_bytes(Path(src).read_bytes()[:1000])  # what fitted
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), dst)
            return shutil.copy2(src, dst, **kw)
        return real_copytree(source, target, copy_function=copy_one, **kwargs)

    monkeypatch.setattr(registry_module.shutil, "copytree", copy_until_the_disk_is_full)
    try:
        with pytest.raises(AdapterLoadError) as failure:
            engine.load_adapter(candidate)
        message = str(failure.value)
        assert "installing adapter 'medicine-v2'" in message and "No space left on device" in message, message
        assert "[(" not in message  # the cause, not copytree's list of per-file errors
        assert pool.adapter_for("medicine") == serving.name
        assert [info.name for info in pool.registry.list()] == [serving.name]
        assert pool.registry.broken() == []  # the half-copied staging folder was removed
        text = engine.submit([{"role": "user", "content": "What is aspirin?"}], adapter=serving.name,
                             max_new_tokens=4).text()
        assert text.strip()
    finally:
        monkeypatch.undo()
        engine.unload_adapter(serving.name)
