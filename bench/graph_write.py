"""Graph write throughput (batched UNWIND vs one statement per row) and read latency of the
knowledge graph, against a real embedded FalkorDB server over loopback Bolt. Prints tables;
asserts nothing.

Run from the repository root (``make bench`` does)::

    .venv/bin/python bench/graph_write.py [--entities N] [--relations N] [--per-row N] [--caps 2,5,10,500]
                                          [--relations-big N] [--entities-big N] [--queries N]

Everything runs on a fresh ``EmbeddedGraphServer`` in a temporary directory, through the app's own
``GraphConnection`` and ``GraphStore`` (each statement in a ``session.execute_write`` /
``execute_read`` transaction function); ./data is never touched, and the server is stopped at the end.

* Table 0 times a trivial statement (``RETURN 1``) per ``GraphConnection.query`` call: the fixed
  cost of one statement.
* Table 1 writes a synthetic ``DomainGraph`` (canonical keys "entity 123", relation types from a
  small set, power-law-ish degrees) with ``cypher.WRITE_ONE_FACT`` (one statement per relation)
  and with ``cypher.WRITE_FACTS`` (``UNWIND $rows``) at several row caps, each into its own version
  of the domain, counted and deleted afterwards. FalkorDB inlines parameters into a ~4 KB query
  buffer (bigger calls abort the server), so the connection refuses calls over
  ``dialect.max_inline_bytes`` and batches are packed below it, as ``GraphStore.write_version``
  does: whatever the cap, a batch holds only a dozen or so fact rows.
* Table 2a builds a bigger graph (100,000 relations by default) with ``GraphStore.write_version``
  and publishes it as the serving version (manifest + CURRENT); table 2b times
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

from bench.results import record  # noqa: E402
from indexing.graph_connection import GraphConnection  # noqa: E402

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
    from indexing.entity_keys import canonical_key
    from indexing.fusion import DomainGraph, EntityRecord, FactRecord

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


# --- the server --------------------------------------------------------------------------------------

class Graph:
    """A fresh embedded FalkorDB in a temp dir, with the app's connection and store."""

    def __init__(self) -> None:
        from assistant.settings import load_settings
        from indexing.graph_server import EmbeddedGraphServer
        from indexing.graph_store import GraphStore

        self.work = Path(tempfile.mkdtemp(prefix="bench-graph-"))
        # neo4j_uri=None: always the embedded server, whatever NEO4J_URI the environment has
        self.settings = load_settings(data_dir=self.work / "data", neo4j_uri=None, _env_file=None)
        self.server_dir = self.work / "graph"
        self.server = None
        self.connection = None
        try:
            t = time.perf_counter()
            self.server = EmbeddedGraphServer(self.server_dir)
            self.server.start()
            self.connection = GraphConnection(self.settings, self.server)
            self.connection.query("RETURN 1 AS ok", what="ping")
            self.store = GraphStore(self.connection, self.settings.domains_dir)
            self.store.ensure_indexes()
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
            if self.connection is not None:
                self.connection.close()  # closes the driver and stops the server (with a final RDB save)
            elif self.server is not None:
                self.server.stop()
        finally:
            shutil.rmtree(self.work, ignore_errors=True)


# --- table 0: the cost of one statement -----------------------------------------------------------

def bench_ping(graph_db: Graph, calls: int) -> None:
    connection = graph_db.connection
    rows = []
    for read in (False, True):
        connection.query("RETURN 1 AS ok", what="warm-up", read=read)
        lat, _ = time_calls(lambda r=read: connection.query("RETURN 1 AS ok", what="ping", read=r), [()] * calls)
        how = "session.execute_read" if read else "session.execute_write"
        rows.append([f"GraphConnection.query(read={read}) -> {how}", *latency_cells(lat)])
    print_table(
        f"Table 0: one trivial statement (RETURN 1) per GraphConnection.query call - embedded FalkorDB over "
        f"loopback Bolt, {os.cpu_count()} cores; {calls} calls each",
        ["call", "calls", "mean ms", "p50 ms", "p95 ms", "max ms"], rows,
        ["Each call opens a session on the pooled driver and runs one transaction function (BEGIN answered",
         "first, then RUN+PULL, then COMMIT). driver.execute_query, which pipelines BEGIN and RUN, costs ~44 ms",
         "per statement on FalkorDB 4.16 (the RUN is answered ~40 ms late); the app no longer uses it."])


# --- table 1: batched vs per-row writes ------------------------------------------------------------

def bench_writes(graph_db: Graph, n_entities: int, n_relations: int, n_per_row: int, caps: list[int]) -> None:
    from indexing import cypher

    connection, store = graph_db.connection, graph_db.store
    domain = "bench-write"
    t = time.perf_counter()
    graph, degree = synthetic_graph(n_entities, max(n_relations, n_per_row), seed=11)
    ents = entity_rows(graph)
    facts_all = fact_rows(graph.facts)
    print(f"  generated {len(ents)} entities, {len(facts_all)} relations in {time.perf_counter() - t:.1f}s "
          f"(max degree {max(degree.values())})", flush=True)

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
            notes.append(f"run {n}: the server holds {stats['entities']} entities / {stats['relations']} relations "
                         f"after writing {len(ents)} / {len(rows)}")
        store.delete_version(domain, version)
        method = "one statement per row (WRITE_ONE_FACT)" if cap is None else f"UNWIND, cap {cap} rows (WRITE_FACTS)"
        results.append((method, cap, len(rows), statements, largest, seconds))
        record("graph writes", "one statement per row" if cap is None else f"UNWIND, cap {cap} rows",
               len(rows) / seconds, "relations/s", None if cap is None else "one statement per row", "higher")
        print(f"  {method}: {len(rows):,} rel in {seconds:.2f}s ({len(rows) / seconds:,.0f} rel/s, "
              f"{len(rows) / statements:.1f} rows/statement)", flush=True)

    per_row_rate = next(count / seconds for _, cap, count, _, _, seconds in results if cap is None)
    table = []
    for method, cap, count, statements, largest, seconds in results:
        rate = count / seconds
        table.append([method, f"{count:,}", f"{statements:,}", f"{count / statements:.1f}", str(largest),
                      f"{seconds:.2f}", f"{rate:,.0f}", f"{seconds / statements * 1000:.2f}",
                      f"{rate / per_row_rate:.1f}x"])

    dialect = connection.dialect
    limit = dialect.max_inline_bytes
    sample = facts_all[:200]
    row_bytes = round(dialect.inline_size("", dialect.encode_params({"rows": sample})) / len(sample))
    packed = [len(b) for b in packed_batches(connection, cypher.WRITE_FACTS, {"domain": domain, "version": "v000000"},
                                             facts_all[:2000], 10**9)]
    rows_fit, rows_max = round(float(np.mean(packed))), max(packed)
    limit_text = ("" if limit is None else
                  f"FalkorDB's ~4 KB inline limit caps a batch at ~{rows_fit} fact rows (at most {rows_max}); ")
    title = (f"Table 1: graph writes, batched UNWIND vs one statement per row ({limit_text}published Neo4j figure "
             f"for batching: ~{NEO4J_BATCHING_SPEEDUP}x) - embedded FalkorDB over loopback Bolt, {os.cpu_count()} "
             f"cores; {len(ents):,} entities per version; {min(n_relations, len(facts_all)):,} relations batched, "
             f"{min(n_per_row, len(facts_all)):,} one per statement")
    notes = [
        "x per-row = relations/s over the per-row rate measured in this run. All through GraphConnection.query.",
        "Each run writes into a fresh version of the domain (entities first, untimed), is counted with",
        "store.stats and deleted with store.delete_version.",
        *([] if limit is None else [
            f"rows/stmt: the connection refuses calls over {limit} bytes (query text + parameters as FalkorDB",
            "inlines them; it aborts at ~4 KB), so batches are packed below that as write_version does: a fact",
            f"row is estimated at ~{row_bytes} bytes, WRITE_FACTS itself at {len(cypher.WRITE_FACTS)}; caps above",
            f"~{rows_fit} rows (100, 500: the usual Neo4j batch sizes) all come out the same.",
        ]),
        *notes,
    ]
    print_table(title, ["method", "relations", "statements", "rows/stmt", "max rows", "seconds", "relations/s",
                        "ms/stmt", "x per-row"], table, notes)


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

    store = graph_db.store
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
    store.write_version(domain, version, documents, chunks, graph, on_progress=on_progress)
    build_s = time.perf_counter() - started
    saves = graph_db.background_saves() - saves_before
    step_s, previous = [], started
    for bound in bounds:
        at = marks.get(bound, previous)
        step_s.append(at - previous)
        previous = at
    publish(graph_db, domain, version)
    stats = store.stats(domain)
    print(f"  wrote in {build_s:.1f}s: {stats}", flush=True)

    build_rows = []
    labels = ("documents", "chunks", "entities", "mentions", "relations")
    for i, label in enumerate(labels):
        if sizes[i]:
            build_rows.append([label, f"{sizes[i]:,}", f"{progress['statements'][i]:,}",
                               f"{sizes[i] / max(1, progress['statements'][i]):.1f}", f"{step_s[i]:.2f}",
                               f"{sizes[i] / step_s[i]:,.0f}" if step_s[i] else "-"])
    total_statements = sum(progress["statements"])
    build_rows.append(["write_version total", f"{sum(sizes):,}", f"{total_statements:,}",
                       f"{sum(sizes) / max(1, total_statements):.1f}", f"{build_s:.2f}",
                       f"{sum(sizes) / build_s:,.0f}"])
    degrees = sorted(degree.values(), reverse=True)
    print_table(
        f"Table 2a: build of the big graph with GraphStore.write_version (batches packed below the size limit) - "
        f"embedded FalkorDB over loopback Bolt, {os.cpu_count()} cores; {len(graph.entities):,} entities, "
        f"{len(graph.facts):,} relations",
        ["step", "rows", "statements", "rows/stmt", "seconds", "rows/s"], build_rows,
        [f"degrees (in+out): max {degrees[0]:,}, 10th {degrees[min(9, len(degrees) - 1)]:,}, "
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
    # later calls use the cached catalog and run no query.
    t = time.perf_counter()
    first_links = store.link_entities(domain, questions[0])
    catalog_ms = (time.perf_counter() - t) * 1000.0
    lat, results = time_calls(lambda q: store.link_entities(domain, q), [(q,) for q in questions])
    rows.append(["link_entities, first call (loads the catalog)", "1", f"{catalog_ms:.2f}", "-", "-", "-",
                 str(len(first_links)), "1"])
    rows.append([f"link_entities (cached catalog), {QUESTIONS} questions", *latency_cells(lat),
                 f"{np.mean([len(r) for r in results]):.1f}", "0"])
    notes.append(f"example: {questions[0]!r} -> {[link.key for link in first_links]}")

    store.facts(domain, [random_keys[0]], hops=1, limit=20)  # warm-up
    for label, sample in ((f"{len(random_keys)} random keys", random_keys), (f"top-{HUBS} hubs", hubs)):
        for hops in (1, 2):
            lat, results = time_calls(lambda k, h=hops: store.facts(domain, [k], hops=h, limit=20),
                                      [(k,) for k in sample])
            rows.append([f"facts(hops={hops}, limit=20), {label}", *latency_cells(lat),
                         f"{np.mean([len(r) for r in results]):.1f}", str(2 * hops)])
            record("graph reads", f"facts() p50, {hops} hop{'s' * (hops > 1)}, {label}", float(np.percentile(lat, 50)),
                   "ms", None if hops == 1 else f"facts() p50, 1 hop, {label}", "lower")

    def lookup(q: str):
        found = [link.key for link in store.link_entities(domain, q)]
        return store.facts(domain, found, hops=2, limit=20) if found else []

    lat, results = time_calls(lookup, [(q,) for q in questions])
    rows.append([f"link_entities + facts(hops=2), {QUESTIONS} questions", *latency_cells(lat),
                 f"{np.mean([len(r) for r in results]):.1f}", "4"])

    print_table(
        f"Table 2b: facts() and link_entities() latency on the serving version ({len(graph.entities):,} entities, "
        f"{stats['relations']:,} relations, power-law degrees) - embedded FalkorDB over loopback Bolt, "
        f"{os.cpu_count()} cores",
        ["call", "calls", "mean ms", "p50 ms", "p95 ms", "max ms", "results", "stmts/call"], rows,
        ["stmts/call: Cypher statements per call (facts runs FACTS_FROM and FACTS_TO per hop; hop 2 starts from",
         "the up to 2 x limit keys found at hop 1, more statements if they do not fit one call).",
         "results = mean facts (or links) returned.", *notes])


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
        print(f"  embedded FalkorDB started at {graph_db.server.bolt_uri} in {graph_db.start_s:.1f}s", flush=True)
        bench_ping(graph_db, PING_CALLS)
        bench_writes(graph_db, args.entities, args.relations, args.per_row, caps)
        bench_reads(graph_db, entities_big, args.relations_big, args.queries)
    finally:
        graph_db.close()
    print(f"\ntotal wall time {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
