"""The knowledge graph of every domain: versioned writes and the read API the assistant uses.

Writes: a complete domain version (documents, chunks, entities, mentions, facts) in batched
``UNWIND`` statements, tagged with the version; the domain's CURRENT file (versions.py) decides
which version readers see, so the FAISS index and the graph switch together. Reads always
target the serving version. Every statement is in cypher.py; every value travels as a parameter.
Finding a question's entities in the version's alias table is entity_linking.py's work.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from indexing import cypher
from indexing.chunking import Chunk
from indexing.entity_linking import AliasTable, EntityLink, link_entities
from indexing.entity_resolution import DomainGraph
from indexing.graph_connection import GraphConnection, GraphError
from indexing.versions import DomainVersions

WRITE_BATCH = 500  # rows per statement where the transport has no size limit (FalkorDB socket, Neo4j)
DELETE_BATCH = 5000
# Evidence kept on a fact edge and aliases on an entity; the count keeps the full number.
MAX_EVIDENCE_IDS = 8
MAX_ALIASES = 12


@dataclass(frozen=True)
class Fact:
    head: str
    head_key: str
    relation: str
    tail: str
    tail_key: str
    confidence: float
    count: int
    chunk_ids: tuple[str, ...]
    doc_ids: tuple[str, ...]
    curated: bool
    hop: int  # 1 = touches a linked entity, 2 = one step further

    @property
    def text(self) -> str:
        return f"{self.head} {self.relation.replace('_', ' ')} {self.tail}"


@dataclass
class Subgraph:
    nodes: list[dict] = field(default_factory=list)  # {key, name, type}
    edges: list[dict] = field(default_factory=list)  # {head, relation, tail, confidence}


class GraphStore:
    def __init__(self, connection: GraphConnection, domains_dir: Path):
        self.connection = connection
        self.domains_dir = Path(domains_dir)
        self._alias_tables: dict[tuple[str, str], AliasTable] = {}
        self._lock = threading.Lock()
        self._indexed_at_restart: int | None = None  # server_restarts when ensure_indexes last ran

    # --- schema ------------------------------------------------------------------------------
    def ensure_indexes(self) -> None:
        for statement in self.connection.dialect.index_statements():
            try:
                self.connection.query(statement, what="creating graph indexes")
            except GraphError:
                # FalkorDB has no IF NOT EXISTS and reports an existing index as a generic error.
                if self.connection.dialect.name != "falkordb":
                    raise
        self._indexed_at_restart = self.connection.server_restarts

    def _ensure_indexes_before_writing(self) -> None:
        """Every write MATCHes chunks and entities by key: without the indexes each row scans the
        whole label, and a version's write grows with the square of its size (54 s instead of
        0.6 s for 19k mentions). So a store makes sure of them itself, once per server start."""
        if self._indexed_at_restart != self.connection.server_restarts:
            self.ensure_indexes()

    # --- writes ------------------------------------------------------------------------------
    def write_version(self, domain: str, version: str, documents: Sequence[dict], chunks: Sequence[Chunk],
                      graph: DomainGraph, on_progress: Callable[[int], None] | None = None) -> None:
        """Write one complete version of a domain and make it durable (a server snapshot), so a
        crash of the graph server after the switch keeps it. Readers do not see it until
        CURRENT names it."""
        scope = {"domain": domain, "version": version}
        self._ensure_indexes_before_writing()
        restarts = self.connection.server_restarts
        steps = [
            (cypher.WRITE_DOCUMENTS, [{"doc_id": d["doc_id"], "title": d["title"], "source": d["source"]} for d in documents]),
            (cypher.WRITE_CHUNKS, [{"chunk_id": c.id, "doc_id": c.doc_id, "ordinal": c.ordinal} for c in chunks]),
            (cypher.WRITE_ENTITIES, [{"key": e.key, "name": e.name, "type": e.type, "aliases": e.aliases[:MAX_ALIASES],
                                      "mentions": e.mentions} for e in graph.entities.values()]),
            (cypher.WRITE_MENTIONS, [{"chunk_id": chunk_id, "key": key} for chunk_id, key in graph.mentions]),
            (cypher.WRITE_FACTS, [{"head": f.head, "tail": f.tail, "type": f.relation, "confidence": f.confidence,
                                   "count": f.count, "chunk_ids": f.chunk_ids[:MAX_EVIDENCE_IDS],
                                   "doc_ids": f.doc_ids[:MAX_EVIDENCE_IDS], "curated": f.curated}
                                  for f in graph.facts]),
        ]
        for statement, rows in steps:
            for batch in self._batches(statement, scope, rows):
                self.connection.query(statement, {**scope, "rows": batch}, what=f"writing graph {domain} {version}")
                if on_progress:
                    on_progress(len(batch))
        self.connection.persist(what=f"saving graph {domain} {version}")
        if self.connection.server_restarts != restarts:
            raise GraphError(f"writing graph {domain} {version}: the graph server crashed and was restarted during "
                             "the write, so the version may be incomplete; run the re-index again")

    def delete_version(self, domain: str, version: str) -> int:
        deleted = 0
        for label, statement in cypher.DELETE_VERSION_BATCH.items():
            while True:
                rows = self.connection.query(statement, {"domain": domain, "version": version, "batch": DELETE_BATCH},
                                             what=f"deleting {label} nodes of {domain} {version}")
                count = rows[0]["deleted"] if rows else 0
                deleted += count
                if count < DELETE_BATCH:
                    break
        return deleted

    def versions(self, domain: str) -> list[str]:
        rows = self.connection.query(cypher.LIST_VERSIONS, {"domain": domain}, what=f"listing graph versions of {domain}", read=True)
        return sorted(r["version"] for r in rows if r["version"])

    def domains(self) -> list[str]:
        rows = self.connection.query(cypher.LIST_DOMAINS, what="listing graph domains", read=True)
        return sorted(r["domain"] for r in rows if r["domain"])

    def delete_domain(self, domain: str) -> list[str]:
        """Remove every version of one domain from the graph; other domains are untouched."""
        return self.delete_versions_except(domain, keep=())

    def delete_versions_except(self, domain: str, keep: Iterable[str]) -> list[str]:
        """Drop every graph version of the domain not in ``keep`` (crashed builds, old versions)."""
        keep = set(keep)
        stale = [v for v in self.versions(domain) if v not in keep]
        for version in stale:
            self.delete_version(domain, version)
        return stale

    def has_version(self, domain: str, version: str) -> bool:
        rows = self.connection.query(cypher.COUNT_VERSION, {"domain": domain, "version": version},
                                     what=f"checking graph version {domain} {version}", read=True)
        return bool(rows and rows[0]["documents"])

    # --- reads -------------------------------------------------------------------------------
    def serving_version(self, domain: str) -> str:
        version = DomainVersions(self.domains_dir, domain).current()
        if version is None:
            raise GraphError(f"domain {domain!r} has not been indexed")
        return version

    def stats(self, domain: str, version: str | None = None) -> dict[str, int | str]:
        version = version or self.serving_version(domain)
        scope = {"domain": domain, "version": version}
        counts: dict[str, int | str] = {"version": version}
        for name, statement in cypher.STATS.items():
            rows = self.connection.query(statement, scope, what=f"counting {name} of {domain}", read=True)
            counts[name] = rows[0]["n"] if rows else 0
        return counts

    def link_entities(self, domain: str, text: str, limit: int = 10, min_score: float = 0.88) -> list[EntityLink]:
        """Entities of the serving version named in ``text`` (entity_linking.py); the question
        is matched here, against the version's alias table, and never sent to the server."""
        return link_entities(self._alias_table(domain), text, limit, min_score)

    def facts(self, domain: str, entity_keys: Sequence[str], hops: int = 1, limit: int = 20) -> list[Fact]:
        """Facts within ``hops`` (1 or 2) of the given entities, best first, with provenance."""
        if hops not in (1, 2):
            raise ValueError("hops must be 1 or 2")
        version = self.serving_version(domain)
        found: dict[tuple[str, str, str], Fact] = {}
        frontier, seen_keys = list(dict.fromkeys(entity_keys)), set(entity_keys)
        for hop in range(1, hops + 1):
            if not frontier:
                break
            for fact in self._facts_touching(domain, version, frontier, hop, limit):
                found.setdefault((fact.head_key, fact.relation, fact.tail_key), fact)
            next_keys = {k for f in found.values() if f.hop == hop for k in (f.head_key, f.tail_key)}
            frontier = sorted(next_keys - seen_keys)
            seen_keys |= next_keys
        ranked = sorted(found.values(), key=lambda f: (f.hop, -f.confidence, -f.count, f.head, f.tail))
        return ranked[:limit]

    def all_facts(self, domain: str, page: int = 2000) -> list[Fact]:
        """Every fact of the serving version (hop 0), read in pages so no reply is huge."""
        scope = {"domain": domain, "version": self.serving_version(domain), "limit": page}
        facts: list[Fact] = []
        while True:
            rows = self.connection.query(cypher.ALL_FACTS_PAGE, {**scope, "skip": len(facts)},
                                         what=f"reading the facts of {domain}", read=True)
            facts += [_fact_from_row(r, hop=0) for r in rows]
            if len(rows) < page:
                return facts

    def subgraph(self, domain: str, entity_keys: Sequence[str], hops: int = 1, limit: int = 50) -> Subgraph:
        facts = self.facts(domain, entity_keys, hops, limit)
        names = self._alias_table(domain).names
        keys = list(dict.fromkeys(list(entity_keys) + [k for f in facts for k in (f.head_key, f.tail_key)]))
        nodes = [{"key": k, "name": names.get(k, (k, ""))[0], "type": names.get(k, ("", "CONCEPT"))[1]}
                 for k in keys if k in names]
        edges = [{"head": f.head_key, "relation": f.relation, "tail": f.tail_key, "confidence": f.confidence}
                 for f in facts]
        return Subgraph(nodes, edges)

    def document_titles(self, domain: str, doc_ids: Sequence[str]) -> dict[str, str]:
        scope = {"domain": domain, "version": self.serving_version(domain)}
        titles = {}
        for batch in self._batches(cypher.DOCUMENT_TITLES, scope, list(doc_ids), key="doc_ids"):
            rows = self.connection.query(cypher.DOCUMENT_TITLES, {**scope, "doc_ids": batch},
                                         what=f"reading document titles of {domain}", read=True)
            titles.update({r["doc_id"]: r["title"] for r in rows})
        return titles

    # --- internals ---------------------------------------------------------------------------
    def _batches(self, statement: str, scope: dict, rows: list, key: str = "rows") -> Iterable[list]:
        """Rows in batches of WRITE_BATCH, smaller where the server limits a call's size."""
        batch: list = []
        for row in rows:
            if batch and (len(batch) >= WRITE_BATCH or not self.connection.fits(statement, {**scope, key: batch + [row]})):
                yield batch
                batch = []
            batch.append(row)
        if batch:
            yield batch

    def _facts_touching(self, domain: str, version: str, keys: list[str], hop: int, limit: int) -> list[Fact]:
        scope = {"domain": domain, "version": version, "limit": limit}
        rows = []
        for statement in (cypher.FACTS_FROM, cypher.FACTS_TO):
            for batch in self._batches(statement, scope, keys, key="keys"):
                rows += self.connection.query(statement, {**scope, "keys": batch}, what=f"reading facts of {domain}", read=True)
        return [_fact_from_row(r, hop) for r in rows]

    def _alias_table(self, domain: str) -> AliasTable:
        """The serving version's entity names and aliases, read once per version."""
        version = self.serving_version(domain)
        cached = self._alias_tables.get((domain, version))
        if cached is not None:
            return cached
        rows = self.connection.query(cypher.ENTITY_CATALOG, {"domain": domain, "version": version},
                                     what=f"loading the entity catalog of {domain}", read=True)
        table = AliasTable.from_rows(rows)
        with self._lock:
            self._alias_tables = {k: v for k, v in self._alias_tables.items() if k[0] != domain}
            self._alias_tables[(domain, version)] = table
        return table


def _fact_from_row(r: dict, hop: int) -> Fact:
    return Fact(r["head"], r["head_key"], r["relation"], r["tail"], r["tail_key"], float(r["confidence"]),
                int(r["count"]), tuple(r["chunk_ids"] or ()), tuple(r["doc_ids"] or ()), bool(r["curated"]), hop)
