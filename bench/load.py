"""Load: N concurrent chat sessions against the launched app; latency, throughput, errors and the
server's memory. Prints a table; asserts nothing.

Run from the repository root (``make bench`` does)::

    .venv/bin/python bench/load.py [--sessions 1,4,8,16] [--requests 500] [--max-new-tokens 64]
                                   [--endpoint ask|chat|openai] [--concurrency C] [--queue-max-size M]
                                   [--rss-every K] [--data-dir DIR] [--compare-with REF]

The app is started the way ``make run`` starts it: ``launch.py --no-demo-adapters`` in a
subprocess on a free loopback port, with ``ASSISTANT_DATA_DIR`` a temporary folder (./data is
never touched), so its bootstrap indexes the three demo domains with their knowledge graph into
an embedded FalkorDB server and converts the base model there (about a minute; ``--data-dir``
reuses a folder from an earlier run and skips that). ``ASSISTANT_MAX_NEW_TOKENS`` bounds the
answers (default 64 tokens); ``--concurrency``
and ``--queue-max-size`` override the app's ``ui_concurrency`` / ``ui_queue_max_size`` settings
(default: the app's own). The app and its graph server are stopped at the end.

For each N in ``--sessions``, N threads each open their own ``gradio_client.Client`` (one
session each) and send demo questions (``assistant/demo/eval``, all domains, routing on
"auto") to ``/ask`` (or the streaming ``/chat``, each request a new conversation) one after
another: every level sends about ``--requests / len(--sessions)`` requests in all, split evenly
over its sessions. First, one untimed request from each of the largest level's sessions warms
the app (model, caches, Gradio's threads, the memory of that many requests at once), and the
app's RSS is read then.

The table shows, per N: requests completed, errors (exceptions, a "queue full" refusal
included, or an answer carrying an error; expected 0), p50/p95 latency of one request as its
client waits for it (queueing included), p50/p95 time to first token (``/ask``: the answer's own
``first_token`` timing, from the moment the app started on the request; ``/chat``: as the
client sees the first streamed piece), requests/s over the level's wall time, and the resident
memory (VmRSS) of the app process after the level. Then how each level's engine time splits
per request (``/ask`` only, from the answer's timings): waiting for a place in the batch, its
prompt's prefill (compute-bound on a CPU, one prompt at a time) and the decode steps it took
part in (shared with the other rows); and the CPU a request costs by stage (``/ask`` only, from
the answer's ``cpu``: its own thread's CPU seconds in routing, retrieval, the prompt, the opening,
the stream and the finish) beside the whole app's CPU seconds per request (all its threads and
the graph server, read from the process before and after the level). The headline is
requests/s at each N over N=1, measured in the same run. Below: the app's RSS after the warm-up and after all the requests, the growth in
total, per level and every ``--rss-every`` requests (a leak keeps climbing).

``--endpoint openai`` measures the OpenAI-compatible ``/v1/chat/completions`` (each session an
``openai`` client, streaming, first token as the client sees the first piece; the app gets a
random ``api_keys``) and then ``/ask`` at the same levels on the same app, in the same run, with
the same questions in the same order (default levels 1,8); the headline is ``/v1``'s requests/s
over ``/ask``'s at each N.

``--requests`` sets the total (``make bench`` passes 150).

Memory: the app's RSS after the first ``--rss-every`` requests and after all of them, and their
ratio (a leak keeps climbing; a working set that settles stays near 1x). ``--compare-with REF``
measures the code of git revision REF first (its files from ``git archive``, launched the same
way on a data dir of its own), then this working tree, in the same run, and prints them side by
side: requests/s at each N and the RSS figures, each as this code over REF's. For issue 33's
memory check: ``--sessions 8 --requests 500 --rss-every 50 --compare-with <ref>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import argparse  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from itertools import cycle  # noqa: E402
from typing import Iterator  # noqa: E402

import numpy as np  # noqa: E402

from bench.chat_latency import demo_questions, spread_over_domains  # noqa: E402
from bench.results import print_table  # noqa: E402
from bench.results import record  # noqa: E402
from indexing.process_memory import resident_mb  # noqa: E402

DEFAULT_SESSIONS = "1,4,8,16"
OPENAI_SESSIONS = "1,8"
PATHS = {"ask": "/ask", "chat": "/chat", "openai": "/v1/chat/completions"}
CLIENTS = {"ask": "gradio_client", "chat": "gradio_client", "openai": "openai client"}
API_KEY = secrets.token_urlsafe(24)  # the app's api_keys for --endpoint openai, this run only
DEFAULT_REQUESTS = 500
DEFAULT_MAX_NEW_TOKENS = 64
DEFAULT_RSS_EVERY = 50
START_TIMEOUT_S = 900  # first start: index 3 domains and convert the base model on a busy machine
STOP_TIMEOUT_S = 60
GROWTH_BOUND_MB = 50  # beyond this after the warm-up, the app keeps something per request
SETTLED_BOUND = 1.3  # RSS after all requests over RSS after the first --rss-every (issue 33)


# --- the launched app ---------------------------------------------------------------------------

@dataclass
class LaunchedApp:
    process: subprocess.Popen
    url: str
    output: list[str] = field(default_factory=list)  # launch.py's lines, shown if it fails

    def rss_mb(self) -> float:
        return resident_mb(self.process.pid)

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the app and its children (the graph server) have used so far."""
        import psutil

        try:
            app = psutil.Process(self.process.pid)
            processes = [app] + app.children(recursive=True)
        except psutil.Error:
            return float("nan")
        total = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.Error:  # a child that ended meanwhile
                continue
        return total


@dataclass
class RssTrace:
    """The app's RSS after every ``every`` requests (of any session): a leak keeps climbing, an
    allocator settling into its working set levels off."""
    app: LaunchedApp
    every: int
    samples: list[tuple[int, float]] = field(default_factory=list)
    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def request_done(self) -> None:
        with self.lock:
            self.count += 1
            if self.count % self.every == 0:
                self.samples.append((self.count, self.app.rss_mb()))

    @property
    def settled(self) -> tuple[float, float] | None:
        """RSS after the first ``every`` requests and after the last sample (None: too few)."""
        return (self.samples[1][1], self.samples[-1][1]) if len(self.samples) > 2 else None


@dataclass
class Run:
    """One endpoint measured on one app: its levels, its RSS after the warm-up, its RSS trace."""
    levels: list[Level]
    rss_before: float
    trace: RssTrace


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def app_environment(data_dir: Path, args: argparse.Namespace) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("NEO4J_")}  # embedded graph
    env.update(ASSISTANT_DATA_DIR=str(data_dir), ASSISTANT_MAX_NEW_TOKENS=str(args.max_new_tokens),
               PYTHONUNBUFFERED="1")
    if args.concurrency:
        env["ASSISTANT_UI_CONCURRENCY"] = str(args.concurrency)
    if args.queue_max_size:
        env["ASSISTANT_UI_QUEUE_MAX_SIZE"] = str(args.queue_max_size)
    if args.endpoint == "openai":
        env["ASSISTANT_API_KEYS"] = API_KEY
    return env


@contextmanager
def launched_app(data_dir: Path, args: argparse.Namespace, code: Path = REPO) -> Iterator[LaunchedApp]:
    """``code``'s launch.py in a subprocess, until it prints its URL; stopped with Ctrl-C (SIGINT)
    afterwards. Its own packages come first on the path (before the editable install's)."""
    port = free_port()
    env = app_environment(data_dir, args)
    env["PYTHONPATH"] = str(code)
    process = subprocess.Popen([sys.executable, str(code / "launch.py"), "--host", "127.0.0.1", "--port", str(port),
                                "--no-demo-adapters"], cwd=code, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    app = LaunchedApp(process, f"http://127.0.0.1:{port}/")
    ready = threading.Event()
    threading.Thread(target=read_output, args=(app, ready), daemon=True).start()
    try:
        if not ready.wait(START_TIMEOUT_S) or process.poll() is not None:
            raise RuntimeError("launch.py did not start:\n" + "\n".join(app.output[-40:]))
        yield app
    finally:
        stop(process)


def read_output(app: LaunchedApp, ready: threading.Event) -> None:
    for line in app.process.stdout:
        app.output.append(line.rstrip())
        if line.startswith("Chat:"):
            ready.set()
    ready.set()  # it ended: the caller sees process.poll()


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # launch.py stops the UI and saves and stops the graph server
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def code_at(ref: str) -> Iterator[Path]:
    """The files of git revision ``ref`` in a temporary folder (``git archive``: the repository and
    its working tree are not touched), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-load-code-") as folder:
        archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=REPO, capture_output=True)
        if archive.returncode != 0:
            raise SystemExit(f"--compare-with {ref}: {archive.stderr.decode(errors='replace').strip()}")
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(folder, filter="data")
        yield Path(folder)


# --- sessions ---------------------------------------------------------------------------------------

@dataclass
class Outcome:
    latency_s: float
    error: str = ""
    first_token_s: float | None = None
    timings: dict = field(default_factory=dict)  # the answer's own (/ask): queue, prefill, decode, ...
    cpu: dict = field(default_factory=dict)  # the answer's own (/ask): its thread's CPU seconds per stage


@dataclass
class Level:
    sessions: int
    outcomes: list[Outcome]
    wall_s: float
    rss_mb: float
    app_cpu_s: float = float("nan")  # CPU seconds the app (all its threads and the graph server) used in the level

    @property
    def completed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.error]

    @property
    def errors(self) -> list[str]:
        return [o.error for o in self.outcomes if o.error]


def ask_once(client, question: str, endpoint: str) -> Outcome:
    started = time.perf_counter()
    first_token, timings, cpu = None, {}, {}
    try:
        if endpoint == "openai":
            error, first_token, timings = _openai_once(client, question, started)
        elif endpoint == "ask":
            answer = client.predict(question, "auto", api_name="/ask")
            error = answer.get("error") or ("empty answer" if not answer.get("text") else "")
            timings, cpu = answer.get("timings", {}), answer.get("cpu", {})
            first_token = timings.get("first_token")
        else:
            history = None
            for output in client.submit(question, [], "auto", api_name="/chat"):
                history = output[0]
                if first_token is None and history and history[-1].get("content"):
                    first_token = time.perf_counter() - started
            error = "" if history and history[-1].get("content") else "empty answer"
    except Exception as exc:  # counted and shown, the other requests go on
        error = f"{type(exc).__name__}: {exc}"
    return Outcome(time.perf_counter() - started, error, first_token, timings, cpu)


def _openai_once(client, question: str, started: float) -> tuple[str, float | None, dict]:
    """One streamed /v1/chat/completions request: (error, first token as seen, the answer's timings)."""
    first_token, text, evidence = None, "", {}
    for chunk in client.chat.completions.create(model="auto", messages=[{"role": "user", "content": question}],
                                                stream=True):
        if not chunk.choices:
            continue
        piece = chunk.choices[0].delta.content or ""
        if piece and first_token is None:
            first_token = time.perf_counter() - started
        text += piece
        if chunk.choices[0].finish_reason:
            evidence = getattr(chunk, "evidence", None) or {}
    error = evidence.get("error") or ("empty answer" if not text else "")
    return error, first_token, evidence.get("timings", {})


def _client(url: str, endpoint: str):
    if endpoint == "openai":
        import openai

        return openai.OpenAI(base_url=url.rstrip("/") + "/v1", api_key=API_KEY, max_retries=0, timeout=600)
    from gradio_client import Client

    return Client(url, verbose=False)


def session(url: str, questions: list[str], endpoint: str, trace: RssTrace | None) -> list[Outcome]:
    try:
        client = _client(url, endpoint)
    except Exception as exc:
        return [Outcome(0.0, f"connect: {type(exc).__name__}: {exc}") for _ in questions]
    outcomes = []
    for question in questions:
        outcomes.append(ask_once(client, question, endpoint))
        if trace is not None:
            trace.request_done()
    return outcomes


def run_level(app: LaunchedApp, sessions: int, per_session: int, questions: Iterator[str], endpoint: str,
              trace: RssTrace | None = None) -> Level:
    plans = [[next(questions) for _ in range(per_session)] for _ in range(sessions)]
    started, cpu_before = time.perf_counter(), app.cpu_s()
    with ThreadPoolExecutor(sessions) as pool:
        results = list(pool.map(lambda plan: session(app.url, plan, endpoint, trace), plans))
    wall_s = time.perf_counter() - started
    return Level(sessions, [o for outcomes in results for o in outcomes], wall_s, app.rss_mb(),
                 app.cpu_s() - cpu_before)


# --- output ------------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def level_row(level: Level) -> list[str]:
    latencies = [o.latency_s for o in level.completed]
    first = [o.first_token_s for o in level.completed if o.first_token_s is not None]
    return [str(level.sessions), f"{len(level.completed)}/{len(level.outcomes)}", str(len(level.errors)),
            f"{percentile(latencies, 50):.2f}", f"{percentile(latencies, 95):.2f}",
            f"{percentile(first, 50):.2f}", f"{percentile(first, 95):.2f}",
            f"{requests_per_s(level):.3f}", f"{level.wall_s:.0f}", f"{level.rss_mb:.0f}"]


def requests_per_s(level: Level) -> float:
    return len(level.completed) / level.wall_s


def split_row(level: Level) -> list[str] | None:
    """Mean seconds per request waiting for the batch, in its prefill and in decode steps."""
    timed = [o.timings for o in level.completed if "prefill" in o.timings]
    if not timed:
        return None
    mean = {key: float(np.mean([t.get(key, 0.0) for t in timed])) for key in ("queue", "prefill", "decode", "generate")}
    engine = mean["prefill"] + mean["decode"]
    return [str(level.sessions), f"{mean['queue']:.2f}", f"{mean['prefill']:.2f}", f"{mean['decode']:.2f}",
            f"{100 * mean['prefill'] / engine:.0f}%" if engine else "-", f"{mean['generate']:.2f}"]


CPU_STAGES = ("route", "retrieve", "prompt", "opening", "stream", "finish")


def cpu_row(level: Level) -> list[str] | None:
    """Mean CPU seconds per request: each stage on the request's own thread, then the whole app's."""
    timed = [o.cpu for o in level.completed if o.cpu]
    if not timed:
        return None
    stages = [float(np.mean([t.get(stage, 0.0) for t in timed])) for stage in CPU_STAGES]
    app = level.app_cpu_s / max(len(level.completed), 1)
    return [str(level.sessions)] + [f"{value:.3f}" for value in stages] + [f"{sum(stages):.2f}", f"{app:.2f}",
                                                                          f"{level.app_cpu_s / level.wall_s:.2f}"]


def print_results(levels: list[Level], rss_before: float, trace: RssTrace, args: argparse.Namespace,
                  settings_note: str, endpoint: str, code: str = "this code") -> None:
    total = sum(len(level.outcomes) for level in levels)
    growth = levels[-1].rss_mb - rss_before
    notes = [f"app RSS after the warm-up {rss_before:.0f} MB, after {total} more requests {levels[-1].rss_mb:.0f} MB: "
             f"growth {growth:+.0f} MB ({100 * growth / rss_before:+.1f}%; "
             f"{'within' if growth <= GROWTH_BOUND_MB else 'ABOVE'} the {GROWTH_BOUND_MB} MB bound)"]
    steps, previous = [], rss_before
    for level in levels:
        steps.append(f"N={level.sessions} {level.rss_mb - previous:+.0f} MB over {len(level.outcomes)} requests")
        previous = level.rss_mb
    notes.append("growth per level: " + ", ".join(steps))
    notes.append(f"app RSS every {trace.every} requests: " + ", ".join(f"{n}: {mb:.0f}" for n, mb in trace.samples))
    if trace.settled:
        early, late = trace.settled
        notes.append(f"app RSS after the first {trace.every} requests {early:.0f} MB, after {trace.samples[-1][0]}: "
                     f"{late:.0f} MB, {late / early:.2f}x ({'within' if late <= SETTLED_BOUND * early else 'ABOVE'} "
                     f"the {SETTLED_BOUND}x bound)")
    errors = [e for level in levels for e in level.errors]
    if errors:
        notes.append(f"{len(errors)} errors, e.g.: " + "; ".join(sorted(set(errors))[:3]))
    first = levels[0]
    notes.insert(0, "requests/s vs N=" + str(first.sessions) + ": " + ", ".join(
        f"N={level.sessions} {requests_per_s(level) / requests_per_s(first):.2f}x" for level in levels[1:]))
    print_table(f"Load ({code}): N concurrent {CLIENTS[endpoint]} sessions on {PATHS[endpoint]}, max_new_tokens={args.max_new_tokens}, "
                f"{settings_note}, {os.cpu_count()} cores (clients and app on the same machine)",
                ["N sessions", "completed", "errors", "p50 s", "p95 s", "first token p50 s", "first token p95 s",
                 "requests/s", "wall s", "app RSS MB"],
                [level_row(level) for level in levels], notes)
    splits = [row for level in levels if (row := split_row(level))]
    if splits:
        print_table(f"Where a request's generation time goes ({code}; mean seconds per request, from the answers' timings)",
                    ["N sessions", "waiting for the batch", "prefill (its prompt)", "decode steps (shared)",
                     "prefill share", "generate (submit to last token)"], splits,
                    ["prefill is one prompt's forward pass: compute-bound on a CPU and run one prompt at a time, "
                     "while the decode steps of all rows run as one batch"])
    cpu_rows = [row for level in levels if (row := cpu_row(level))]
    if cpu_rows:
        print_table(f"CPU per request by stage ({code}; mean CPU seconds; /ask's own per-stage accounting)",
                    ["N sessions", *CPU_STAGES, "request thread", "whole app", "app cores busy"], cpu_rows,
                    ["each stage: the CPU time of the request's own thread (the answer's cpu field); the model's "
                     "prefill and decode run on the engine's thread and count only in the whole app's",
                     "whole app: the app process's and its graph server's CPU seconds over the level / requests; "
                     "app cores busy: those CPU seconds / the level's wall seconds"])


def record_results(levels: list[Level], rss_before: float, endpoint: str) -> None:
    group = f"load ({PATHS[endpoint]}, concurrent sessions)"
    first = levels[0].sessions
    for level in levels:
        baseline = None if level.sessions == first else first
        latencies = [o.latency_s for o in level.completed]
        record(group, f"requests/s, N={level.sessions}", len(level.completed) / level.wall_s, "requests/s",
               baseline=None if baseline is None else f"requests/s, N={baseline}", better="higher")
        record(group, f"p50 latency, N={level.sessions}", percentile(latencies, 50), "s",
               baseline=None if baseline is None else f"p50 latency, N={baseline}", better="lower")
        first = [o.first_token_s for o in level.completed if o.first_token_s is not None]
        if first:
            record(group, f"p50 time to first token, N={level.sessions}", percentile(first, 50), "s",
                   baseline=None if baseline is None else f"p50 time to first token, N={baseline}", better="lower")
    total = sum(len(level.outcomes) for level in levels)
    record(group, f"errors over {total} requests", sum(len(level.errors) for level in levels), "requests",
           better="lower")
    record(group, f"app RSS growth over {total} requests", levels[-1].rss_mb - rss_before, "MB", better="lower")


def record_comparison(runs: dict[str, list[Level]]) -> None:
    """/v1's requests/s beside /ask's at each N, measured on the same app in the same run."""
    group = "load, /v1/chat/completions vs /ask (same run)"
    for api, ask in zip(runs["openai"], runs["ask"]):
        n = api.sessions
        record(group, f"requests/s, N={n}, /ask", requests_per_s(ask), "requests/s", better="higher")
        record(group, f"requests/s, N={n}, /v1", requests_per_s(api), "requests/s",
               baseline=f"requests/s, N={n}, /ask", better="higher")


def app_settings_note(args: argparse.Namespace) -> str:
    from assistant.settings import Settings

    defaults = Settings.model_fields
    concurrency = args.concurrency or defaults["ui_concurrency"].default
    max_size = args.queue_max_size or defaults["ui_queue_max_size"].default
    return (f"queue concurrency {concurrency}, max size {max_size}, engine batch "
            f"{defaults['engine_max_batch'].default}")


# --- main ----------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", help=f"concurrent sessions per level (default {DEFAULT_SESSIONS}; "
                                           f"{OPENAI_SESSIONS} with --endpoint openai)")
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS,
                        help=f"requests over all levels, for the memory check (default {DEFAULT_REQUESTS})")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS,
                        help=f"the app's max_new_tokens (default {DEFAULT_MAX_NEW_TOKENS})")
    parser.add_argument("--endpoint", choices=tuple(PATHS), default="ask",
                        help="openai: /v1/chat/completions, then /ask at the same levels in the same run")
    parser.add_argument("--concurrency", type=int, help="the app's ui_concurrency (default: its setting)")
    parser.add_argument("--queue-max-size", type=int, help="the app's ui_queue_max_size (default: its setting)")
    parser.add_argument("--rss-every", type=int, default=DEFAULT_RSS_EVERY,
                        help=f"read the app's RSS after every this many requests (default {DEFAULT_RSS_EVERY})")
    parser.add_argument("--data-dir", type=Path, help="the app's data dir, kept (default: a temporary one)")
    parser.add_argument("--compare-with", metavar="REF",
                        help="also measure git revision REF's code first, in the same run, and compare")
    args = parser.parse_args(argv)
    args.sessions = args.sessions or (OPENAI_SESSIONS if args.endpoint == "openai" else DEFAULT_SESSIONS)
    try:
        args.levels = [int(n) for n in args.sessions.split(",")]
    except ValueError:
        parser.error("--sessions takes numbers separated by commas, e.g. 1,4,16")
    if min(args.levels) < 1 or min(args.requests, args.max_new_tokens, args.rss_every) < 1:
        parser.error("--sessions, --requests, --max-new-tokens and --rss-every must be >= 1")
    return args


def question_sequence() -> Iterator[str]:
    """The demo questions, domains interleaved, repeated as long as a run needs them."""
    return cycle(q["question"] for q in spread_over_domains(demo_questions(), 10_000))


def measure(code: Path, data_dir: Path, args: argparse.Namespace, label: str) -> dict[str, Run]:
    """Every endpoint at every level on one app launched from ``code``, each after its warm-up."""
    per_level = -(-args.requests // len(args.levels))
    endpoints = ["openai", "ask"] if args.endpoint == "openai" else [args.endpoint]
    runs: dict[str, Run] = {}
    started = time.perf_counter()
    with launched_app(data_dir, args, code) as app:
        print(f"  {label}: app up at {app.url} after {time.perf_counter() - started:.0f}s (data dir {data_dir})",
              flush=True)
        for endpoint in endpoints:
            questions = question_sequence()  # both endpoints (and both codes) get the same questions in order
            run_level(app, max(args.levels), 1, questions, endpoint)  # warm-up
            rss_before = app.rss_mb()
            run = runs[endpoint] = Run([], rss_before, RssTrace(app, args.rss_every, [(0, rss_before)]))
            for sessions in args.levels:
                run.levels.append(run_level(app, sessions, -(-per_level // sessions), questions, endpoint, run.trace))
                row = level_row(run.levels[-1])
                print(f"  {label} {PATHS[endpoint]} N={sessions}: {row[1]} completed, {row[2]} errors, p50 {row[3]} s, "
                      f"first token p50 {row[5]} s, {row[7]} requests/s, app RSS {row[9]} MB", flush=True)
    return runs


def print_comparison(ours: dict[str, Run], theirs: dict[str, Run], ref: str) -> None:
    """This code beside REF's, measured in the same run: requests/s per level, and memory."""
    rows = []
    for endpoint, run in ours.items():
        other = theirs[endpoint]
        for mine, old in zip(run.levels, other.levels):
            rows.append([PATHS[endpoint], f"requests/s, N={mine.sessions}", f"{requests_per_s(old):.3f}",
                         f"{requests_per_s(mine):.3f}", f"{requests_per_s(mine) / requests_per_s(old):.2f}x"])
        memory = [("app RSS after the warm-up, MB", other.rss_before, run.rss_before),
                  ("app RSS at the end, MB", other.levels[-1].rss_mb, run.levels[-1].rss_mb)]
        if run.trace.settled and other.trace.settled:
            memory.append((f"RSS at the end / after the first {run.trace.every} requests",
                           other.trace.settled[1] / other.trace.settled[0], run.trace.settled[1] / run.trace.settled[0]))
        for name, old_value, value in memory:
            rows.append([PATHS[endpoint], name, f"{old_value:.2f}", f"{value:.2f}", f"{value / old_value:.2f}x"])
            record(f"load vs {ref} ({PATHS[endpoint]}, same run)", name, value, "MB" if "MB" in name else "x",
                   better="lower")
    print_table(f"This code vs {ref}, same machine, same run, same questions in the same order",
                ["endpoint", "measurement", ref, "this code", "this / " + ref], rows)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    per_level = -(-args.requests // len(args.levels))
    settings_note = app_settings_note(args)
    print(f"load: sessions {args.levels}, ~{per_level} requests per level, /{args.endpoint}, "
          f"max_new_tokens {args.max_new_tokens}, {settings_note}", flush=True)
    started = time.perf_counter()
    baseline: dict[str, Run] = {}
    with tempfile.TemporaryDirectory(prefix="bench-load-") as scratch:
        if args.compare_with:
            with code_at(args.compare_with) as old_code:
                baseline = measure(old_code, Path(scratch) / "baseline-data", args, args.compare_with)
        data_dir = (args.data_dir or Path(scratch) / "data").resolve()
        runs = measure(REPO, data_dir, args, "this code")
    for endpoint, run in baseline.items():
        print_results(run.levels, run.rss_before, run.trace, args, settings_note, endpoint, args.compare_with)
    for endpoint, run in runs.items():
        print_results(run.levels, run.rss_before, run.trace, args, settings_note, endpoint)
        record_results(run.levels, run.rss_before, endpoint)
    if len(runs) == 2:
        ratios = ", ".join(f"N={api.sessions} {requests_per_s(api) / requests_per_s(ask):.2f}x"
                           for api, ask in zip(runs["openai"].levels, runs["ask"].levels))
        print(f"\n/v1/chat/completions requests/s over /ask's, same app, same run: {ratios}")
        record_comparison({endpoint: run.levels for endpoint, run in runs.items()})
    if baseline:
        print_comparison(runs, baseline, args.compare_with)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
