"""Graph write throughput (batched UNWIND vs one statement per row) and read latency of the
knowledge graph, against a real embedded FalkorDB server over loopback Bolt. Prints tables;
asserts nothing.

Run from the repository root (``make bench`` does)::

    .venv/bin/python bench/graph_write.py [--entities N] [--relations N] [--per-row N] [--app-rows N]
                                          [--relations-big N] [--queries N] [--caps 2,5,10,500]

Everything runs on a fresh ``EmbeddedGraphServer`` in a temporary directory, with the app's own
``GraphConnection`` and ``GraphStore``; ./data is never touched, and the server is stopped at the end.

Two transports are measured, because they differ by ~40 ms per statement on FalkorDB 4.16:

* app: ``GraphConnection.query`` as the app runs it (the driver's ``execute_query``, which sends
  BEGIN+RUN+PULL in one go; FalkorDB answers the RUN only ~40 ms later).
* session: the same statements, parameters, size check and batching through
  ``session.execute_write`` (BEGIN is sent and answered first), via :class:`SessionConnection`,
  a ``GraphConnection`` whose ``query`` does only that.

Table 0 times a trivial statement through both. Table 1 writes a synthetic ``DomainGraph``
(canonical keys "entity 123", relation types from a small set, power-law-ish degrees) with
``cypher.WRITE_FACTS`` (``UNWIND $rows``) at several row caps and with ``cypher.WRITE_ONE_FACT``
(one statement per relation), each into its own version of the domain, deleted afterwards.
FalkorDB inlines parameters into a ~4 KB query buffer (bigger calls abort the server), so the
connection refuses calls over ``dialect.max_inline_bytes`` and batches are packed below it, as
``GraphStore.write_version`` does. Table 2 builds a bigger graph with ``GraphStore.write_version``
(session transport, to keep the run short), publishes it as the serving version (manifest +
CURRENT), and times ``GraphStore.facts`` at 1 and 2 hops for random keys and for the biggest hubs,
and ``GraphStore.link_entities``, through both transports.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from indexing.graph_connection import GraphConnection, GraphError  # noqa: E402

# Defaults keep the whole script at roughly 3 minutes on 2 CPU cores; the app transport costs
# ~44 ms per statement there, so its rows are fewer (--app-rows).
DEFAULT_ENTITIES = 5_000
DEFAULT_RELATIONS = 20_000
DEFAULT_PER_ROW = 2_000
DEFAULT_APP_ROWS = 500
DEFAULT_RELATIONS_BIG = 100_000
DEFAULT_ENTITIES_BIG = 20_000
DEFAULT_QUERIES = 100
BATCH_CAPS = (2, 5, 10, 500)  # rows per statement at most; 500 = GraphStore.WRITE_BATCH
PING_CALLS = 100
QUESTIONS = 20
HUBS = 10
RELATION_TYPES = ("inhibit", "treat", "cause", "regulate", "create")
ENTITY_TYPES = ("CHEMICAL", "DISEASE", "GENE", "ORGANISM", "CONCEPT")
DEGREE_EXPONENT = 0.8  # endpoint weight ~ 1 / rank^0.8: a few hubs with thousands of relations
NEO4J_BATCHING_SPEEDUP = 59  # Neo4j's published figure for UNWIND batching over per-row statements


# --- output -----------------------------------------------------------------------------------

def print_table(title: str, headers: list[str], rows: list[list[str]], notes: list[str] = ()) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        # first column left-aligned (labels), the rest right-aligned (numbers)
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    print()
    print(f"### {title}")
    print()
    print(line(headers))
    print("|" + "|".join(("-" * (w + 1) + ":") if i else (":" + "-" * (w + 1)) for i, w in enumerate(widths)) + "|")
    for row in rows:
        print(line(row))
    for note in notes:
        print(f"  {note}")
    sys.stdout.flush()


def latency_cells(latencies_ms: list[float]) -> list[str]:
    a = np.asarray(latencies_ms)
    return [str(len(a)), f"{a.mean():.2f}", f"{np.percentile(a, 50):.2f}", f"{np.percentile(a, 95):.2f}",
            f"{a.max():.2f}"]


def time_calls(fn, args_list) -> tuple[list[float], list]:
    latencies, results = [], []
    for args in args_list:
        t = time.perf_counter()
        results.append(fn(*args))
        latencies.append((time.perf_counter() - t) * 1000.0)
    return latencies, results


# --- synthetic graph ----------------------------------------------------------------------------

def synthetic_graph(n_entities: int, n_relations: int, seed: int):
    """A DomainGraph with ``n_entities`` entities ("Entity 17", key "entity 17") and
    ``n_relations`` distinct (head, relation, tail) facts whose endpoints are drawn with
    power-law weights, so a few entities are hubs. Returns (graph, degree Counter)."""
    from indexing.fusion import DomainGraph, EntityRecord, FactRecord

    try:
        from indexing.entity_keys import canonical_key
    except ImportError:  # older layout
        from indexing.fusion import canonical_key

    rng = random.Random(seed)
    graph = DomainGraph()
    keys = []
    for i in range(n_entities):
        name = f"Entity {i}"
        key = canonical_key(name)
        aliases = [f"E{i}"] if rng.random() < 0.2 else []
        graph.entities[key] = EntityRecord(key=key, name=name, type=rng.choice(ENTITY_TYPES), aliases=aliases,
                                           mentions=rng.randint(1, 50))
        keys.append(key)
    ranked = keys[:]
    rng.shuffle(ranked)  # hubs are scattered over the id range
    cumulative, total = [], 0.0
    for rank in range(len(ranked)):
        total += 1.0 / (rank + 1) ** DEGREE_EXPONENT
        cumulative.append(total)
    seen: set[tuple[str, str, str]] = set()
    degree: Counter = Counter()
    n_relations = min(n_relations, n_entities * (n_entities - 1) * len(RELATION_TYPES))
    while len(graph.facts) < n_relations:
        head, tail = rng.choices(ranked, cum_weights=cumulative, k=2)
        relation = rng.choice(RELATION_TYPES)
        if head == tail or (head, relation, tail) in seen:
            continue
        seen.add((head, relation, tail))
        degree[head] += 1
        degree[tail] += 1
        chunk_ids = [f"doc-{rng.randrange(max(1, n_entities // 5)):06d}#{rng.getrandbits(64):016x}"
                     for _ in range(rng.randint(1, 3))]
        graph.facts.append(FactRecord(
            head=head, relation=relation, tail=tail, confidence=round(rng.uniform(0.3, 1.0), 3),
            count=rng.randint(1, 8), chunk_ids=chunk_ids, doc_ids=sorted({c.split("#")[0] for c in chunk_ids}),
            curated=rng.random() < 0.05, patterns=[]))
    return graph, degree


def entity_rows(graph) -> list[dict]:
    # the row shape of GraphStore.write_version
    return [{"key": e.key, "name": e.name, "type": e.type, "aliases": e.aliases, "mentions": e.mentions}
            for e in graph.entities.values()]


def fact_rows(facts) -> list[dict]:
    return [{"head": f.head, "tail": f.tail, "type": f.relation, "confidence": f.confidence, "count": f.count,
             "chunk_ids": f.chunk_ids, "doc_ids": f.doc_ids, "curated": f.curated} for f in facts]


def packed_batches(connection: GraphConnection, statement: str, scope: dict, rows: list, cap: int) -> list[list]:
    """Rows in statements of at most ``cap`` rows, smaller where the server limits the size of one
    call (``GraphConnection.fits``), the way ``GraphStore.write_version`` batches."""
    fits = getattr(connection, "fits", None)
    batches, batch = [], []
    for row in rows:
        if batch and (len(batch) >= cap or (fits is not None and not fits(statement, {**scope, "rows": batch + [row]}))):
            batches.append(batch)
            batch = []
        batch.append(row)
    if batch:
        batches.append(batch)
    return batches


# --- the server and the two transports -------------------------------------------------------------

class SessionConnection(GraphConnection):
    """A GraphConnection whose ``query`` runs each statement with ``session.execute_write`` on the
    driver of ``base`` instead of ``driver.execute_query``. Same dialect encoding and size limit;
    no error wrapping or server recovery (a benchmark does not need them)."""

    def __init__(self, base: GraphConnection):
        super().__init__(base.settings, base.server)
        self._base = base

    def _get_driver(self):
        return self._base._get_driver()

    def query(self, statement: str, params: dict[str, Any] | None = None, *, what: str) -> list[dict[str, Any]]:
        params = params or {}
        if hasattr(self, "fits") and not self.fits(statement, params):
            raise GraphError(f"{what}: the query's parameters are too large for the {self.dialect.name} server")
        encoded = self.dialect.encode_params(params)
        with self._get_driver().session(database=self.database) as session:
            return session.execute_write(lambda tx: tx.run(statement, encoded).data())

    def close(self, stop_server: bool = True) -> None:
        pass  # the driver and the server belong to ``base``


class Graph:
    """A fresh embedded FalkorDB in a temp dir, with the app's connection and store, and the
    same store over the session transport."""

    def __init__(self) -> None:
        from assistant.settings import load_settings
        from indexing.graph_server import EmbeddedGraphServer
        from indexing.graph_store import GraphStore

        self.work = Path(tempfile.mkdtemp(prefix="bench-graph-"))
        # neo4j_uri=None: always the embedded server, whatever NEO4J_URI the environment has
        self.settings = load_settings(data_dir=self.work / "data", neo4j_uri=None, _env_file=None)
        self.server_dir = self.work / "graph"
        self.connection = None
        try:
            t = time.perf_counter()
            self.server = EmbeddedGraphServer(self.server_dir).start()
            self.connection = GraphConnection(self.settings, self.server)
            self.connection.query("RETURN 1 AS ok", what="ping")
            self.store = GraphStore(self.connection, self.settings.domains_dir)
            self.store.ensure_indexes()
            self.start_s = time.perf_counter() - t
            self.session_connection = SessionConnection(self.connection)
            self.session_store = GraphStore(self.session_connection, self.settings.domains_dir)
        except BaseException:
            self.close()
            raise

    def transports(self) -> list[tuple[str, GraphConnection]]:
        return [("app", self.connection), ("session", self.session_connection)]

    def background_saves(self) -> int:
        try:
            text = (self.server_dir / "server.log").read_text(errors="replace")
        except OSError:
            return -1
        return text.count("Background saving started")

    def close(self) -> None:
        try:
            if self.connection is not None:
                self.connection.close()  # also stops the server (with a final RDB save)
        finally:
            shutil.rmtree(self.work, ignore_errors=True)


# --- table 0: the cost of one statement -----------------------------------------------------------

def bench_ping(graph_db: Graph, calls: int) -> dict[str, float]:
    rows, means = [], {}
    for name, connection in graph_db.transports():
        connection.query("RETURN 1 AS ok", what="warm-up")
        lat, _ = time_calls(lambda c=connection: c.query("RETURN 1 AS ok", what="ping"), [()] * calls)
        means[name] = float(np.mean(lat))
        how = ("GraphConnection.query (driver.execute_query)" if name == "app"
               else "session.execute_write (SessionConnection)")
        rows.append([f"{name}: {how}", *latency_cells(lat)])
    print_table(
        f"Table 0: one trivial statement (RETURN 1) per transport - embedded FalkorDB over loopback Bolt, "
        f"{os.cpu_count()} cores; {calls} calls each",
        ["transport", "calls", "mean ms", "p50 ms", "p95 ms", "max ms"], rows,
        ["execute_query sends BEGIN, RUN and PULL in one write; FalkorDB 4.16 answers BEGIN at once and the RUN",
         "~40 ms later (seen in the driver's debug log; the signature of Nagle + delayed ACK). execute_write sends",
         "BEGIN alone, waits for its answer, then RUN+PULL, and sees no such stall."])
    return means


# --- table 1: batched vs per-row writes ------------------------------------------------------------

def bench_writes(graph_db: Graph, n_entities: int, n_relations: int, n_per_row: int, n_app: int,
                 caps: list[int]) -> dict[str, float]:
    from indexing import cypher

    domain = "bench-write"
    t = time.perf_counter()
    graph, degree = synthetic_graph(n_entities, max(n_relations, n_per_row, n_app), seed=11)
    ents = entity_rows(graph)
    facts_all = fact_rows(graph.facts)
    print(f"  generated {len(ents)} entities, {len(facts_all)} relations in {time.perf_counter() - t:.1f}s "
          f"(max degree {max(degree.values())})", flush=True)

    app, session = graph_db.connection, graph_db.session_connection
    big = max(caps)
    runs = [  # (transport name, connection, rows, cap: None = one statement per row)
        ("app", app, facts_all[:n_app], None),
        ("app", app, facts_all[:n_app], big),
        ("session", session, facts_all[:n_per_row], None),
        *[("session", session, facts_all[:n_relations], cap) for cap in caps],
    ]

    results, notes = [], []
    for n, (transport, connection, rows, cap) in enumerate(runs, start=1):
        version = f"v{n:06d}"
        scope = {"domain": domain, "version": version}
        # setup (untimed, session transport): the version's entities
        for batch in packed_batches(session, cypher.WRITE_ENTITIES, scope, ents, 500):
            session.query(cypher.WRITE_ENTITIES, {**scope, "rows": batch}, what="writing entities")
        if cap is None:
            t = time.perf_counter()
            for row in rows:
                connection.query(cypher.WRITE_ONE_FACT, {**scope, **row}, what="writing one fact")
            seconds, statements = time.perf_counter() - t, len(rows)
        else:
            batches = packed_batches(connection, cypher.WRITE_FACTS, scope, rows, cap)  # not timed
            t = time.perf_counter()
            for batch in batches:
                connection.query(cypher.WRITE_FACTS, {**scope, "rows": batch}, what="writing facts")
            seconds, statements = time.perf_counter() - t, len(batches)
        stats = graph_db.session_store.stats(domain, version)
        if stats["relations"] != len(rows) or stats["entities"] != len(ents):
            notes.append(f"run {n}: the server holds {stats['entities']} entities / {stats['relations']} relations "
                         f"after writing {len(ents)} / {len(rows)}")
        graph_db.session_store.delete_version(domain, version)
        method = "one statement per row (WRITE_ONE_FACT)" if cap is None else f"UNWIND cap {cap} rows (WRITE_FACTS)"
        results.append((transport, method, cap, len(rows), statements, seconds))
        print(f"  {transport}, {method}: {len(rows):,} rel in {seconds:.2f}s ({len(rows) / seconds:,.0f} rel/s, "
              f"{len(rows) / statements:.1f} rows/statement)", flush=True)

    per_row_rate = {tr: count / seconds for tr, _, cap, count, _, seconds in results if cap is None}
    app_baseline = per_row_rate["app"]
    table, rates = [], {}
    for transport, method, cap, count, statements, seconds in results:
        rate = count / seconds
        rates[f"{transport} {cap}"] = rate
        table.append([f"{transport}: {method}", f"{count:,}", f"{statements:,}", f"{count / statements:.1f}",
                      f"{seconds:.2f}", f"{rate:,.0f}", f"{seconds / statements * 1000:.2f}",
                      f"{rate / per_row_rate[transport]:.1f}x", f"{rate / app_baseline:.1f}x"])
    dialect = app.dialect
    limit = getattr(dialect, "max_inline_bytes", None)
    sample = facts_all[:200]
    row_bytes = (round(dialect.inline_size("", dialect.encode_params({"rows": sample})) / len(sample))
                 if hasattr(dialect, "inline_size") else "?")
    title = (f"Table 1: graph writes, batched UNWIND vs one statement per row (published Neo4j figure for "
             f"batching: ~{NEO4J_BATCHING_SPEEDUP}x) - embedded FalkorDB over loopback Bolt, {os.cpu_count()} cores; "
             f"{len(ents):,} entities per version; session transport: {min(n_relations, len(facts_all)):,} relations "
             f"batched, {n_per_row:,} per row; app transport: {n_app:,} relations each way "
             f"(--app-rows; it costs ~44 ms a statement)")
    notes = [
        "x per-row = relations/s over the per-row rate of the same transport; x app per-row = over the app's per-row",
        "rate (GraphConnection.query, one statement per relation). Each run writes into a fresh version of the",
        "domain (entities first, untimed), is counted with store.stats and deleted with store.delete_version.",
        *([] if limit is None else [
            f"rows/stmt: the connection refuses calls over {limit} bytes (query text + JSON of the parameters;",
            f"FalkorDB aborts at ~4 KB), so batches are packed below that as write_version does: a fact row is",
            f"~{row_bytes} bytes, WRITE_FACTS itself {len(cypher.WRITE_FACTS)}; caps of 100/500/2000 rows (the usual",
            "Neo4j batch sizes) all come out at the same ~14 rows, so only one of them is a row here.",
        ]),
        *notes,
    ]
    print_table(title, ["transport: method", "relations", "statements", "rows/stmt", "seconds", "relations/s",
                        "ms/stmt", "x per-row", "x app per-row"], table, notes)
    return rates


# --- table 2: build and read latency of a big graph -----------------------------------------------

def publish(graph_db: Graph, domain: str, version: str) -> None:
    from indexing.versions import DomainVersions, write_manifest

    versions = DomainVersions(graph_db.settings.domains_dir, domain)
    path = versions.path(version)
    path.mkdir(parents=True, exist_ok=True)
    write_manifest(path, {"version": version})
    versions.switch(version)


def bench_reads(graph_db: Graph, n_entities: int, n_relations: int, n_queries: int, ping_ms: dict[str, float]) -> None:
    from indexing.chunking import Chunk

    domain = "bench-read"
    version = "v000001"
    t = time.perf_counter()
    graph, degree = synthetic_graph(n_entities, n_relations, seed=23)
    doc_ids = sorted({d for f in graph.facts for d in f.doc_ids})
    documents = [{"doc_id": d, "title": f"Document {d}", "source": "bench"} for d in doc_ids]
    chunks, seen_chunks = [], set()
    for f in graph.facts:
        for chunk_id in f.chunk_ids:
            if len(chunks) < 2 * len(documents) and chunk_id not in seen_chunks:
                seen_chunks.add(chunk_id)
                chunks.append(Chunk(id=chunk_id, doc_id=chunk_id.split("#")[0], domain=domain, title="",
                                    ordinal=len(chunks), text="", tokens=0))
    print(f"  generated {len(graph.entities)} entities, {len(graph.facts)} relations, {len(documents)} documents, "
          f"{len(chunks)} chunks in {time.perf_counter() - t:.1f}s; writing with GraphStore.write_version ...",
          flush=True)

    # write_version reports progress per statement; count statements and time each step
    sizes = [len(documents), len(chunks), len(graph.entities), len(graph.mentions), len(graph.facts)]
    bounds = [int(b) for b in np.cumsum(sizes)]
    marks: dict[int, float] = {}
    progress = {"rows": 0, "statements": [0] * len(sizes)}

    def on_progress(n: int) -> None:
        step = next(i for i, b in enumerate(bounds) if progress["rows"] < b)
        progress["statements"][step] += 1
        progress["rows"] += n
        marks[progress["rows"]] = time.perf_counter()

    saves_before = graph_db.background_saves()
    started = time.perf_counter()
    graph_db.session_store.write_version(domain, version, documents, chunks, graph, on_progress=on_progress)
    build_s = time.perf_counter() - started
    saves = graph_db.background_saves() - saves_before
    step_s, previous = [], started
    for bound in bounds:
        at = marks.get(bound, previous)
        step_s.append(at - previous)
        previous = at
    publish(graph_db, domain, version)
    stats = graph_db.store.stats(domain)
    print(f"  wrote in {build_s:.1f}s: {stats}", flush=True)

    overhead_ms = ping_ms["app"] - ping_ms["session"]
    build_rows = []
    labels = ("documents", "chunks", "entities", "mentions", "relations")
    for i, label in enumerate(labels):
        if sizes[i]:
            build_rows.append([label, f"{sizes[i]:,}", f"{progress['statements'][i]:,}", f"{step_s[i]:.2f}",
                               f"{sizes[i] / step_s[i]:,.0f}" if step_s[i] else "-"])
    total_statements = sum(progress["statements"])
    build_rows.append(["write_version total", f"{sum(sizes):,}", f"{total_statements:,}", f"{build_s:.2f}",
                       f"{sum(sizes) / build_s:,.0f}"])
    degrees = sorted(degree.values(), reverse=True)
    print_table(
        f"Table 2a: build of the big graph (GraphStore.write_version over the session transport, batches packed "
        f"below the size limit) - embedded FalkorDB over loopback Bolt, {os.cpu_count()} cores; "
        f"{len(graph.entities):,} entities, {len(graph.facts):,} relations",
        ["step", "rows", "statements", "seconds", "rows/s"], build_rows,
        [f"through the app transport (GraphConnection.query) the same {total_statements:,} statements would take about "
         f"{total_statements * overhead_ms / 1000:,.0f}s more ({overhead_ms:.1f} ms each, table 0): an estimate, not run",
         f"degrees (in+out): max {degrees[0]:,}, 10th {degrees[min(9, len(degrees) - 1)]:,}, "
         f"median {int(np.median(degrees))}; entities without relations {len(graph.entities) - len(degrees):,}",
         f"server stats after the write: {stats}",
         f"RDB background saves during the write (the server runs with --save 1 1): {saves}"])

    rng = random.Random(5)
    keys = list(graph.entities)
    random_keys = [rng.choice(keys) for _ in range(n_queries)]
    hubs = [k for k, _ in degree.most_common(HUBS)]
    questions = []
    for _ in range(QUESTIONS):
        a, b = rng.sample(keys, 2)
        relation = rng.choice(RELATION_TYPES)
        name_a, name_b = graph.entities[a].name, graph.entities[b].name
        questions.append(rng.choice((
            f"Does {name_a} {relation} {name_b}?",
            f"What does {name_a} {relation}, and how is it related to {name_b} in the literature?",
            f"Which entities {relation} {name_a.lower()}?",
        )))

    rows, notes = [], []
    # link_entities: the first call loads the domain's entity catalog (one query + Python);
    # later calls use the cached catalog and run no query, so this does not depend on the transport.
    t = time.perf_counter()
    first_links = graph_db.store.link_entities(domain, questions[0])
    catalog_ms = (time.perf_counter() - t) * 1000.0
    lat, results = time_calls(lambda q: graph_db.store.link_entities(domain, q), [(q,) for q in questions])
    rows.append(["link_entities first call (loads the catalog; app)", "1", f"{catalog_ms:.2f}", "-", "-", "-",
                 str(len(first_links)), "1"])
    rows.append([f"link_entities (cached catalog), {QUESTIONS} questions", *latency_cells(lat),
                 f"{np.mean([len(r) for r in results]):.1f}", "0"])
    notes.append(f"example: {questions[0]!r} -> {[link.key for link in first_links]}")

    for transport, store in (("app", graph_db.store), ("session", graph_db.session_store)):
        store.facts(domain, [random_keys[0]], hops=1, limit=20)  # warm-up
        for label, sample in ((f"{len(random_keys)} random keys", random_keys), (f"top-{HUBS} hubs", hubs)):
            for hops in (1, 2):
                lat, results = time_calls(lambda k, s=store, h=hops: s.facts(domain, [k], hops=h, limit=20),
                                          [(k,) for k in sample])
                rows.append([f"{transport}: facts(hops={hops}, limit=20), {label}", *latency_cells(lat),
                             f"{np.mean([len(r) for r in results]):.1f}", str(2 * hops)])

        def lookup(q: str, s=store):
            found = [link.key for link in s.link_entities(domain, q)]
            return s.facts(domain, found, hops=2, limit=20) if found else []

        lat, results = time_calls(lookup, [(q,) for q in questions])
        rows.append([f"{transport}: link_entities + facts(hops=2), {QUESTIONS} questions", *latency_cells(lat),
                     f"{np.mean([len(r) for r in results]):.1f}", "4"])

    print_table(
        f"Table 2b: facts() and link_entities() latency on the serving version ({len(graph.entities):,} entities, "
        f"{stats['relations']:,} relations, power-law degrees) - embedded FalkorDB over loopback Bolt, "
        f"{os.cpu_count()} cores",
        ["call", "calls", "mean ms", "p50 ms", "p95 ms", "max ms", "results", "stmts/call"], rows,
        ["stmts/call: Cypher statements per call (facts runs FACTS_FROM and FACTS_TO per hop; hop 2 starts from",
         "the up to 2 x limit keys found at hop 1). results = mean facts (or links) returned. app = GraphStore over",
         "GraphConnection.query (what the app runs); session = the same GraphStore over SessionConnection.", *notes])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=DEFAULT_ENTITIES,
                        help=f"entities per version in table 1 (default {DEFAULT_ENTITIES})")
    parser.add_argument("--relations", type=int, default=DEFAULT_RELATIONS,
                        help=f"relations written batched (session transport) in table 1 (default {DEFAULT_RELATIONS})")
    parser.add_argument("--per-row", type=int, default=DEFAULT_PER_ROW,
                        help=f"relations written one per statement (session transport) (default {DEFAULT_PER_ROW})")
    parser.add_argument("--app-rows", type=int, default=DEFAULT_APP_ROWS,
                        help=f"relations written per row and batched through GraphConnection.query "
                             f"(default {DEFAULT_APP_ROWS})")
    parser.add_argument("--caps", default=",".join(map(str, BATCH_CAPS)),
                        help=f"rows-per-statement caps of the batched writes (default {','.join(map(str, BATCH_CAPS))})")
    parser.add_argument("--relations-big", type=int, default=DEFAULT_RELATIONS_BIG,
                        help=f"relations of the table 2 graph (default {DEFAULT_RELATIONS_BIG})")
    parser.add_argument("--entities-big", type=int, default=None,
                        help=f"entities of the table 2 graph (default {DEFAULT_ENTITIES_BIG}, "
                             "or relations-big / 5 if that is smaller)")
    parser.add_argument("--queries", type=int, default=DEFAULT_QUERIES,
                        help=f"random entity keys timed in table 2 (default {DEFAULT_QUERIES})")
    args = parser.parse_args(argv)
    try:
        caps = sorted({int(c) for c in args.caps.split(",") if c.strip()})
    except ValueError:
        parser.error("--caps takes comma-separated integers")
    if not caps or min(caps) < 1:
        parser.error("--caps must be >= 1")
    if min(args.relations, args.per_row, args.app_rows, args.relations_big, args.queries) < 1 or args.entities < 2:
        parser.error("sizes must be >= 1 (--entities >= 2)")
    entities_big = args.entities_big or max(100, min(DEFAULT_ENTITIES_BIG, args.relations_big // 5))

    started = time.perf_counter()
    print(f"graph_write: {os.cpu_count()} CPUs, --entities {args.entities}, --relations {args.relations}, "
          f"--per-row {args.per_row}, --app-rows {args.app_rows}, --caps {','.join(map(str, caps))}, "
          f"--relations-big {args.relations_big} (entities {entities_big}), --queries {args.queries}", flush=True)
    graph_db = Graph()
    try:
        print(f"  embedded FalkorDB started at {graph_db.server.bolt_uri} in {graph_db.start_s:.1f}s", flush=True)
        ping_ms = bench_ping(graph_db, PING_CALLS)
        bench_writes(graph_db, args.entities, args.relations, args.per_row, args.app_rows, caps)
        bench_reads(graph_db, entities_big, args.relations_big, args.queries, ping_ms)
    finally:
        graph_db.close()
    print(f"\ntotal wall time {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
