"""Graph write throughput (batched UNWIND vs one statement per row) and read latency of the
knowledge graph, through both graph transports against one real embedded FalkorDB server: its
private Unix socket (FalkorDB's Redis protocol, what the app uses) and Bolt on loopback (what the
app used before, and what ``NEO4J_URI=bolt://...`` uses). Prints tables; asserts nothing.

Run from the repository root (``make bench`` does)::

    .venv/bin/python bench/graph_write.py [--entities N] [--relations N] [--per-row N] [--caps 2,5,10,500]
                                          [--relations-big N] [--entities-big N] [--queries N]

Everything runs on a fresh ``EmbeddedGraphServer`` in a temporary directory (its Bolt listener
opened for this comparison only), through the app's own ``GraphConnection`` and ``GraphStore``;
each transport writes into a graph of its own; ./data is never touched, and the server is stopped
at the end. Every row is recorded with its transport in its name; the socket transport's rows
are compared with the same row over Bolt.

* Table 0 times a trivial statement (``RETURN 1``) per ``GraphConnection.query`` call: the fixed
  cost of one statement.
* Table 1 writes a synthetic ``DomainGraph`` (canonical keys "entity 123", relation types from a
  small set, power-law-ish degrees) with ``cypher.WRITE_ONE_FACT`` (one statement per relation)
  and with ``cypher.WRITE_FACTS`` (``UNWIND $rows``) at several row caps, each into its own version
  of the domain, counted and deleted afterwards. Over Bolt, FalkorDB inlines parameters into a
  ~4 KB query buffer (bigger calls abort the server), so the transport refuses calls over
  ``FALKORDB_BOLT_MAX_INLINE_BYTES`` and batches are packed below it, as ``GraphStore.write_version``
  does: whatever the cap, a batch holds only a dozen or so fact rows. The socket has no limit.
* Table 2a builds a bigger graph (100,000 relations by default) with ``GraphStore.write_version``
  on each transport and publishes it as the serving version (manifest + CURRENT); table 2b times
  ``GraphStore.facts`` at 1 and 2 hops for random keys and for the biggest hubs, and
  ``GraphStore.link_entities`` (first call and cached), alone and followed by ``facts(hops=2)``.
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

import numpy as np  # noqa: E402

from dataclasses import dataclass  # noqa: E402

from bench.results import print_table, record  # noqa: E402
from indexing.graph_connection import GraphConnection  # noqa: E402
from indexing.graph_transport import FALKORDB_BOLT_MAX_INLINE_BYTES  # noqa: E402

# Defaults keep the whole script well under 5 minutes on 2 CPU cores.
DEFAULT_ENTITIES = 5_000
DEFAULT_RELATIONS = 20_000
DEFAULT_PER_ROW = 2_000
DEFAULT_RELATIONS_BIG = 100_000
DEFAULT_ENTITIES_BIG = 20_000
DEFAULT_QUERIES = 100
BATCH_CAPS = (2, 5, 10, 500)  # rows per statement at most; 500 = GraphStore.WRITE_BATCH
PING_CALLS = 200
QUESTIONS = 20
HUBS = 10
RELATION_TYPES = ("inhibit", "treat", "cause", "regulate", "create")
ENTITY_TYPES = ("CHEMICAL", "DISEASE", "GENE", "ORGANISM", "CONCEPT")
DEGREE_EXPONENT = 0.8  # endpoint weight ~ 1 / rank^0.8: a few hubs with thousands of relations
NEO4J_BATCHING_SPEEDUP = 59  # Neo4j's published figure for UNWIND batching over per-row statements


# --- output -----------------------------------------------------------------------------------


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
    from indexing.entity_keys import canonical_key
    from indexing.entity_resolution import DomainGraph, EntityRecord, FactRecord

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
    batches, batch = [], []
    for row in rows:
        if batch and (len(batch) >= cap or not connection.fits(statement, {**scope, "rows": batch + [row]})):
            batches.append(batch)
            batch = []
        batch.append(row)
    if batch:
        batches.append(batch)
    return batches


# --- the server and its two transports ---------------------------------------------------------------

@dataclass
class Transport:
    """One way of reaching the bench's server, with the app's connection and store over it."""

    label: str  # "socket transport", "Bolt transport": the prefix of every recorded row
    connection: GraphConnection
    store: object  # GraphStore


class Graph:
    """A fresh embedded FalkorDB in a temp dir, reached over its Unix socket (what the app does) and
    over Bolt on loopback (what the app did before, and what NEO4J_URI=bolt://... still does); each
    transport writes into a graph of its own on that one server, so they never see each other's rows."""

    def __init__(self) -> None:
        from assistant.settings import load_settings
        from indexing.graph_server import EmbeddedGraphServer, free_bolt_port
        from indexing.graph_store import GraphStore

        self.work = Path(tempfile.mkdtemp(prefix="bench-graph-"))
        self.server_dir = self.work / "graph"
        self.server = None
        self.transports: list[Transport] = []
        try:
            t = time.perf_counter()
            # The Bolt listener is opened for this comparison only; the app never opens it.
            self.server = EmbeddedGraphServer(self.server_dir, bolt_port=free_bolt_port()).start()
            # neo4j_uri=None: always the embedded server, whatever NEO4J_URI the environment has
            socket_settings = load_settings(data_dir=self.work / "data", neo4j_uri=None, _env_file=None,
                                            neo4j_database="bench_socket")
            user, password = self.server.bolt_auth
            bolt_settings = load_settings(data_dir=self.work / "data", _env_file=None, neo4j_uri=self.server.bolt_uri,
                                          neo4j_server="falkordb", neo4j_user=user, neo4j_password=password,
                                          neo4j_database="bench_bolt")
            self.settings = socket_settings
            for label, connection in (("socket transport", GraphConnection(socket_settings.graph_params, self.server)),
                                      ("Bolt transport", GraphConnection(bolt_settings.graph_params))):
                self.transports.append(Transport(label, connection, GraphStore(connection, socket_settings.domains_dir)))
                connection.query("RETURN 1 AS ok", what="ping")
                self.transports[-1].store.ensure_indexes()
            self.start_s = time.perf_counter() - t
        except BaseException:
            self.close()
            raise

    def background_saves(self) -> int:
        try:
            text = (self.server_dir / "server.log").read_text(errors="replace")
        except OSError:
            return -1
        return text.count("Background saving started")

    def close(self) -> None:
        try:
            for transport in self.transports:
                transport.connection.close(stop_server=False)
            if self.server is not None:
                self.server.stop()
        finally:
            shutil.rmtree(self.work, ignore_errors=True)


def baseline_for(label: str, name: str) -> str | None:
    """The socket transport's rows are compared with the same row over Bolt."""
    return f"Bolt transport, {name}" if label == "socket transport" else None


# --- table 0: the cost of one statement -----------------------------------------------------------

def bench_ping(graph_db: Graph, calls: int) -> None:
    rows = []
    for transport in graph_db.transports:
        connection = transport.connection
        for read in (False, True):
            connection.query("RETURN 1 AS ok", what="warm-up", read=read)
            lat, _ = time_calls(lambda r=read: connection.query("RETURN 1 AS ok", what="ping", read=r), [()] * calls)
            rows.append([f"{transport.label}, GraphConnection.query(read={read})", *latency_cells(lat)])
            name = f"RETURN 1 p50, read={read}"
            record("graph statement", f"{transport.label}, {name}", float(np.percentile(lat, 50)), "ms",
                   baseline_for(transport.label, name), "lower")
    print_table(
        f"Table 0: one trivial statement (RETURN 1) per GraphConnection.query call - one embedded FalkorDB, "
        f"{os.cpu_count()} cores; {calls} calls each",
        ["call", "calls", "mean ms", "p50 ms", "p95 ms", "max ms"], rows,
        ["socket: GRAPH.QUERY / GRAPH.RO_QUERY through the falkordb client on the server's Unix socket.",
         "Bolt: a session on the pooled neo4j driver running one transaction function (BEGIN answered first,",
         "then RUN+PULL, then COMMIT); driver.execute_query, which pipelines BEGIN and RUN, costs ~44 ms per",
         "statement on FalkorDB 4.16 (the RUN is answered ~40 ms late), so the Bolt transport does not use it."])


# --- table 1: batched vs per-row writes ------------------------------------------------------------

def bench_writes(graph_db: Graph, n_entities: int, n_relations: int, n_per_row: int, caps: list[int]) -> None:
    t = time.perf_counter()
    graph, degree = synthetic_graph(n_entities, max(n_relations, n_per_row), seed=11)
    ents = entity_rows(graph)
    facts_all = fact_rows(graph.facts)
    print(f"  generated {len(ents)} entities, {len(facts_all)} relations in {time.perf_counter() - t:.1f}s "
          f"(max degree {max(degree.values())})", flush=True)
    table, notes = [], []
    for transport in graph_db.transports:
        rows, note = write_runs(transport, ents, facts_all, n_relations, n_per_row, caps)
        table += rows
        notes += note
    title = (f"Table 1: graph writes, batched UNWIND vs one statement per row, per transport (published Neo4j "
             f"figure for batching: ~{NEO4J_BATCHING_SPEEDUP}x) - one embedded FalkorDB, {os.cpu_count()} cores; "
             f"{len(ents):,} entities per version; {min(n_relations, len(facts_all)):,} relations batched, "
             f"{min(n_per_row, len(facts_all)):,} one per statement")
    notes = [
        "x per-row = relations/s over the per-row rate of the same transport, measured in this run. All through",
        "GraphConnection.query. Each run writes into a fresh version of the domain (entities first, untimed), is",
        "counted with store.stats and deleted with store.delete_version.",
        f"rows/stmt: over Bolt the transport refuses calls over {FALKORDB_BOLT_MAX_INLINE_BYTES} bytes (query text +",
        "parameters as FalkorDB's Bolt layer inlines them; it aborts at ~4 KB), so batches are packed below that",
        "as write_version does and caps above a dozen rows all come out the same. The socket has no such limit.",
        *notes,
    ]
    print_table(title, ["method", "relations", "statements", "rows/stmt", "max rows", "seconds", "relations/s",
                        "ms/stmt", "x per-row"], table, notes)


def write_runs(transport: Transport, ents: list[dict], facts_all: list[dict], n_relations: int, n_per_row: int,
               caps: list[int]) -> tuple[list[list[str]], list[str]]:
    """Table 1's runs on one transport: per-row, then UNWIND at each cap; rows of the table and notes."""
    from indexing import cypher

    connection, store, label = transport.connection, transport.store, transport.label
    domain = "bench-write"
    runs = [(facts_all[:n_per_row], None), *[(facts_all[:n_relations], cap) for cap in caps]]  # cap None: per row
    results, notes = [], []
    for n, (rows, cap) in enumerate(runs, start=1):
        version = f"v{n:06d}"
        scope = {"domain": domain, "version": version}
        for batch in packed_batches(connection, cypher.WRITE_ENTITIES, scope, ents, 500):  # setup, untimed
            connection.query(cypher.WRITE_ENTITIES, {**scope, "rows": batch}, what="writing entities")
        if cap is None:
            t = time.perf_counter()
            for row in rows:
                connection.query(cypher.WRITE_ONE_FACT, {**scope, **row}, what="writing one fact")
            seconds, statements, largest = time.perf_counter() - t, len(rows), 1
        else:
            batches = packed_batches(connection, cypher.WRITE_FACTS, scope, rows, cap)  # not timed
            t = time.perf_counter()
            for batch in batches:
                connection.query(cypher.WRITE_FACTS, {**scope, "rows": batch}, what="writing facts")
            seconds, statements, largest = time.perf_counter() - t, len(batches), max(map(len, batches))
        stats = store.stats(domain, version)
        if stats["relations"] != len(rows) or stats["entities"] != len(ents):
            notes.append(f"{label} run {n}: the server holds {stats['entities']} entities / {stats['relations']} "
                         f"relations after writing {len(ents)} / {len(rows)}")
        store.delete_version(domain, version)
        method = "one statement per row" if cap is None else f"UNWIND, cap {cap} rows"
        results.append((method, cap, len(rows), statements, largest, seconds))
        per_row = f"{label}, one statement per row"
        record("graph writes", f"{label}, {method}", len(rows) / seconds, "relations/s",
               None if cap is None else per_row, "higher")
        print(f"  {label}, {method}: {len(rows):,} rel in {seconds:.2f}s ({len(rows) / seconds:,.0f} rel/s, "
              f"{len(rows) / statements:.1f} rows/statement)", flush=True)

    per_row_rate = next(count / seconds for _, cap, count, _, _, seconds in results if cap is None)
    table = []
    for method, cap, count, statements, largest, seconds in results:
        rate = count / seconds
        table.append([f"{label}, {method}", f"{count:,}", f"{statements:,}", f"{count / statements:.1f}",
                      str(largest), f"{seconds:.2f}", f"{rate:,.0f}", f"{seconds / statements * 1000:.2f}",
                      f"{rate / per_row_rate:.1f}x"])
    return table, notes


# --- table 2: build and read latency of a big graph -----------------------------------------------

def publish(graph_db: Graph, domain: str, version: str) -> None:
    from indexing.versions import DomainVersions, write_manifest

    versions = DomainVersions(graph_db.settings.domains_dir, domain)
    path = versions.path(version)
    path.mkdir(parents=True, exist_ok=True)
    write_manifest(path, {"version": version})
    versions.switch(version)


def bench_reads(graph_db: Graph, n_entities: int, n_relations: int, n_queries: int) -> None:
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
    publish(graph_db, domain, version)  # both graphs serve v000001 of the domain once written
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
    # Each transport reads right after its own build, so both first reads follow a fresh write
    # (FalkorDB applies pending writes to its matrices on the next read).
    build_rows, build_notes, stats, rows, notes = [], [], {}, [], []
    for transport in graph_db.transports:
        table, note, stats = build(graph_db, transport, domain, version, documents, chunks, graph)
        build_rows += table
        build_notes.append(note)
        rows += read_latencies(transport, domain, questions, random_keys, hubs, notes)
    degrees = sorted(degree.values(), reverse=True)
    print_table(
        f"Table 2a: build of the big graph with GraphStore.write_version, per transport - one embedded FalkorDB, "
        f"{os.cpu_count()} cores; {len(graph.entities):,} entities, {len(graph.facts):,} relations",
        ["step", "rows", "statements", "rows/stmt", "seconds", "rows/s"], build_rows,
        [f"degrees (in+out): max {degrees[0]:,}, 10th {degrees[min(9, len(degrees) - 1)]:,}, "
         f"median {int(np.median(degrees))}; entities without relations {len(graph.entities) - len(degrees):,}",
         f"server stats after each write: {stats}", *build_notes])
    print_table(
        f"Table 2b: facts() and link_entities() latency on the serving version ({len(graph.entities):,} entities, "
        f"{stats['relations']:,} relations, power-law degrees), per transport - one embedded FalkorDB, "
        f"{os.cpu_count()} cores",
        ["call", "calls", "mean ms", "p50 ms", "p95 ms", "max ms", "results", "stmts/call"], rows,
        ["stmts/call: Cypher statements per call (facts runs FACTS_FROM and FACTS_TO per hop; hop 2 starts from",
         "the up to 2 x limit keys found at hop 1, more statements if they do not fit one call).",
         "results = mean facts (or links) returned.", *notes])


def build(graph_db: Graph, transport: Transport, domain: str, version: str, documents, chunks, graph):
    """write_version of the big graph on one transport: table 2a's rows, a note, the server's counts."""
    sizes = [len(documents), len(chunks), len(graph.entities), len(graph.mentions), len(graph.facts)]
    bounds = [int(b) for b in np.cumsum(sizes)]
    marks: dict[int, float] = {}
    progress = {"rows": 0, "statements": [0] * len(sizes)}

    def on_progress(n: int) -> None:  # write_version reports progress per statement
        step = next(i for i, b in enumerate(bounds) if progress["rows"] < b)
        progress["statements"][step] += 1
        progress["rows"] += n
        marks[progress["rows"]] = time.perf_counter()

    saves_before = graph_db.background_saves()
    started = time.perf_counter()
    transport.store.write_version(domain, version, documents, chunks, graph, on_progress=on_progress)
    build_s = time.perf_counter() - started
    saves = graph_db.background_saves() - saves_before
    step_s, previous = [], started
    for bound in bounds:
        at = marks.get(bound, previous)
        step_s.append(at - previous)
        previous = at
    stats = transport.store.stats(domain)
    print(f"  {transport.label}: wrote in {build_s:.1f}s: {stats}", flush=True)
    rows = []
    for i, step in enumerate(("documents", "chunks", "entities", "mentions", "relations")):
        if sizes[i]:
            rows.append([f"{transport.label}, {step}", f"{sizes[i]:,}", f"{progress['statements'][i]:,}",
                         f"{sizes[i] / max(1, progress['statements'][i]):.1f}", f"{step_s[i]:.2f}",
                         f"{sizes[i] / step_s[i]:,.0f}" if step_s[i] else "-"])
    total_statements = sum(progress["statements"])
    rows.append([f"{transport.label}, write_version total", f"{sum(sizes):,}", f"{total_statements:,}",
                 f"{sum(sizes) / max(1, total_statements):.1f}", f"{build_s:.2f}", f"{sum(sizes) / build_s:,.0f}"])
    if step_s[4]:
        name = "write_version, relations"
        record("graph writes", f"{transport.label}, {name}", sizes[4] / step_s[4], "relations/s",
               baseline_for(transport.label, name), "higher")
    name = "write_version, all rows"
    record("graph writes", f"{transport.label}, {name}", sum(sizes) / build_s, "rows/s",
           baseline_for(transport.label, name), "higher")
    return rows, f"{transport.label}: RDB background saves during the write (--save 1 1): {saves}", stats


def read_latencies(transport: Transport, domain: str, questions: list[str], random_keys: list[str],
                   hubs: list[str], notes: list[str]) -> list[list[str]]:
    store, label = transport.store, transport.label
    rows = []
    # link_entities: the first call loads the domain's entity catalog (one query + Python);
    # later calls use the cached catalog and run no query.
    t = time.perf_counter()
    first_links = store.link_entities(domain, questions[0])
    catalog_ms = (time.perf_counter() - t) * 1000.0
    lat, results = time_calls(lambda q: store.link_entities(domain, q), [(q,) for q in questions])
    rows.append([f"{label}, link_entities, first call (loads the catalog)", "1", f"{catalog_ms:.2f}", "-", "-", "-",
                 str(len(first_links)), "1"])
    rows.append([f"{label}, link_entities (cached catalog), {QUESTIONS} questions", *latency_cells(lat),
                 f"{np.mean([len(r) for r in results]):.1f}", "0"])
    if label == "socket transport":
        notes.append(f"example: {questions[0]!r} -> {[link.key for link in first_links]}")

    store.facts(domain, [random_keys[0]], hops=1, limit=20)  # warm-up
    for sample_label, sample in ((f"{len(random_keys)} random keys", random_keys), (f"top-{HUBS} hubs", hubs)):
        for hops in (1, 2):
            lat, results = time_calls(lambda k, h=hops: store.facts(domain, [k], hops=h, limit=20),
                                      [(k,) for k in sample])
            rows.append([f"{label}, facts(hops={hops}, limit=20), {sample_label}", *latency_cells(lat),
                         f"{np.mean([len(r) for r in results]):.1f}", str(2 * hops)])
            name = f"facts() p50, {hops} hop{'s' * (hops > 1)}, {sample_label}"
            record("graph reads", f"{label}, {name}", float(np.percentile(lat, 50)), "ms",
                   baseline_for(label, name), "lower")

    def lookup(q: str):
        found = [link.key for link in store.link_entities(domain, q)]
        return store.facts(domain, found, hops=2, limit=20) if found else []

    lat, results = time_calls(lookup, [(q,) for q in questions])
    rows.append([f"{label}, link_entities + facts(hops=2), {QUESTIONS} questions", *latency_cells(lat),
                 f"{np.mean([len(r) for r in results]):.1f}", "4"])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=DEFAULT_ENTITIES,
                        help=f"entities per version in table 1 (default {DEFAULT_ENTITIES})")
    parser.add_argument("--relations", type=int, default=DEFAULT_RELATIONS,
                        help=f"relations written batched in table 1, per cap (default {DEFAULT_RELATIONS})")
    parser.add_argument("--per-row", type=int, default=DEFAULT_PER_ROW,
                        help=f"relations written one per statement in table 1 (default {DEFAULT_PER_ROW})")
    parser.add_argument("--caps", default=",".join(map(str, BATCH_CAPS)),
                        help=f"rows-per-statement caps of the batched writes (default {','.join(map(str, BATCH_CAPS))})")
    parser.add_argument("--relations-big", type=int, default=DEFAULT_RELATIONS_BIG,
                        help=f"relations of the table 2 graph (default {DEFAULT_RELATIONS_BIG})")
    parser.add_argument("--entities-big", type=int, default=None,
                        help=f"entities of the table 2 graph (default {DEFAULT_ENTITIES_BIG}, "
                             "or relations-big / 5 if that is smaller)")
    parser.add_argument("--queries", type=int, default=DEFAULT_QUERIES,
                        help=f"random entity keys timed in table 2b (default {DEFAULT_QUERIES})")
    args = parser.parse_args(argv)
    try:
        caps = sorted({int(c) for c in args.caps.split(",") if c.strip()})
    except ValueError:
        parser.error("--caps takes comma-separated integers")
    if not caps or min(caps) < 1:
        parser.error("--caps must be >= 1")
    if min(args.relations, args.per_row, args.relations_big, args.queries) < 1 or args.entities < 2:
        parser.error("sizes must be >= 1 (--entities >= 2)")
    if args.entities_big is not None and args.entities_big < 2:
        parser.error("--entities-big must be >= 2")
    entities_big = args.entities_big or max(100, min(DEFAULT_ENTITIES_BIG, args.relations_big // 5))

    started = time.perf_counter()
    print(f"graph_write: {os.cpu_count()} CPUs, --entities {args.entities}, --relations {args.relations}, "
          f"--per-row {args.per_row}, --caps {','.join(map(str, caps))}, "
          f"--relations-big {args.relations_big} (entities {entities_big}), --queries {args.queries}", flush=True)
    graph_db = Graph()
    try:
        print(f"  embedded FalkorDB started at {graph_db.server.uri} (and, for this comparison, "
              f"{graph_db.server.bolt_uri}) in {graph_db.start_s:.1f}s", flush=True)
        bench_ping(graph_db, PING_CALLS)
        bench_writes(graph_db, args.entities, args.relations, args.per_row, caps)
        bench_reads(graph_db, entities_big, args.relations_big, args.queries)
    finally:
        graph_db.close()
    print(f"\ntotal wall time {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
