"""The commands a newcomer runs: `assistant index`, `assistant status`, `python launch.py`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from assistant.bootstrap import bootstrap
from assistant.settings import DEMO_CORPORA_DIR, load_settings

ROOT = Path(__file__).resolve().parent.parent


def run(args, env_extra, timeout=300):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEO4J_", "ASSISTANT_"))}
    env.update(env_extra)
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_cli_index_dry_run_then_index_then_status(tmp_path):
    env = {"ASSISTANT_DATA_DIR": str(tmp_path / "data")}
    cli = [sys.executable, "-m", "assistant.cli"]
    source = DEMO_CORPORA_DIR / "law"
    dry = run(cli + ["index", "--source", str(source), "--dry-run", "--quiet"], env)
    assert dry.returncode == 0, dry.stderr
    assert "+28 added" in dry.stdout and "dry run: nothing written" in dry.stdout
    assert "no domains indexed yet" in run(cli + ["status"], env).stdout

    done = run(cli + ["index", "--source", str(source), "--quiet"], env)
    assert done.returncode == 0, done.stderr
    assert "switched (none) -> v000001" in done.stdout
    status = run(cli + ["status"], env)
    assert status.returncode == 0
    line = next(line for line in status.stdout.splitlines() if line.startswith("law"))
    assert line.split()[:3] == ["law", "v000001", "28"] and line.endswith("ok")


def test_cli_reports_a_missing_source_clearly(tmp_path):
    result = run([sys.executable, "-m", "assistant.cli", "index", "--source", str(tmp_path / "missing")],
                 {"ASSISTANT_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_bootstrap_indexes_demo_domains_once(tmp_path, monkeypatch):
    demo = tmp_path / "demo"
    demo.mkdir()
    for domain in ("law", "finance"):
        target = demo / domain
        target.mkdir()
        for path in sorted((DEMO_CORPORA_DIR / domain).iterdir())[:4]:
            shutil.copy(path, target / path.name)
    for name in ("NEO4J_URI", "NEO4J_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(data_dir=tmp_path / "data", demo_corpora_dir=demo, _env_file=None)

    first = bootstrap(settings, progress=False)
    try:
        assert sorted(r.domains[0].domain for r in first.indexed) == ["finance", "law"]
        assert first.connection.ping()
    finally:
        first.connection.close()
    second = bootstrap(settings, progress=False)
    try:
        assert second.indexed == [] and sorted(second.up_to_date) == ["finance", "law"]
    finally:
        second.connection.close()
    (demo / "law" / "added.md").write_text("# Added\n\nA new statute on river navigation was passed.\n")
    third = bootstrap(settings, progress=False)
    try:
        assert [r.domains[0].domain for r in third.indexed] == ["law"] and third.up_to_date == ["finance"]
    finally:
        third.connection.close()
    assert (settings.graph_dir / "graph.rdb").exists()  # saved on clean shutdown


def test_launch_bootstrap_only_prints_where_things_are(tmp_path):
    demo = tmp_path / "demo" / "law"
    demo.mkdir(parents=True)
    for path in sorted((DEMO_CORPORA_DIR / "law").iterdir())[:3]:
        shutil.copy(path, demo / path.name)
    env = {"ASSISTANT_DATA_DIR": str(tmp_path / "data"), "ASSISTANT_DEMO_CORPORA_DIR": str(tmp_path / "demo")}
    result = run([sys.executable, "launch.py", "--bootstrap-only"], env)
    assert result.returncode == 0, result.stderr
    assert f"Graph server:  unix://{tmp_path / 'data' / 'graph' / 'graph.sock'}" in result.stdout
    assert "Domain law" in result.stdout and "3 documents" in result.stdout
    assert not (tmp_path / "data" / "graph" / "server.json").exists()  # server stopped on exit


def _check_nothing_listens_beyond_loopback(app_pid: int) -> None:
    """The app and every process it started (the graph server among them) have no TCP listener
    or bound UDP socket beyond loopback, and the graph server has no network socket at all."""
    import psutil

    app = psutil.Process(app_pid)
    processes = [app, *app.children(recursive=True)]
    servers = [p for p in processes if "redis-server" in p.name() or "redis-server" in " ".join(p.cmdline())]
    assert len(servers) == 1, [p.cmdline() for p in processes]
    assert servers[0].net_connections(kind="inet") == []
    for process in processes:
        for connection in process.net_connections(kind="inet"):
            bound = connection.status == psutil.CONN_LISTEN or connection.type == socket.SOCK_DGRAM
            if bound and connection.laddr:
                assert connection.laddr.ip in ("127.0.0.1", "::1"), (process.cmdline(), connection)


def test_launch_serves_the_chat_ui_and_stops_cleanly_on_ctrl_c(tmp_path, base_model):
    import signal
    import socket
    import stat

    import httpx

    demo = tmp_path / "demo" / "law"
    demo.mkdir(parents=True)
    for path in sorted((DEMO_CORPORA_DIR / "law").iterdir())[:3]:
        shutil.copy(path, demo / path.name)
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True)
    (models / base_model.path.name).symlink_to(base_model.path)  # skip converting the base again
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEO4J_", "ASSISTANT_"))}
    env.update({"ASSISTANT_DATA_DIR": str(tmp_path / "data"), "ASSISTANT_DEMO_CORPORA_DIR": str(tmp_path / "demo")})
    process = subprocess.Popen([sys.executable, "launch.py", "--port", str(port), "--no-demo-adapters"], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C stops"):
                break
        output = "".join(lines)
        assert f"Chat:          http://127.0.0.1:{port}/" in output, output
        password_file = tmp_path / "data" / "admin_password"
        assert f"password in {password_file} (mode 0600)" in output
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        assert password_file.read_text().strip() not in output  # never printed
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
        assert page.status_code == 200 and "gradio" in page.text.lower()
        _check_nothing_listens_beyond_loopback(process.pid)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            rest, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            rest, _ = process.communicate()
            raise AssertionError(f"launch.py did not stop within 60 s of Ctrl-C; its output:\n{rest}") from None
    assert process.returncode == 0 and "Stopped." in rest, rest
    assert not (tmp_path / "data" / "graph" / "server.json").exists()
