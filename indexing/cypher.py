"""Every Cypher statement the project runs, in one place, parameterised.

Values that come from a corpus, a user or an upload always travel as parameters, never
inside the query text. The two servers we speak to differ in a few places; those differences
live in the :class:`Dialect` classes at the bottom and nowhere else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

# --- health -------------------------------------------------------------------------------
PING = "RETURN 1 AS ok"

# --- the graph model ------------------------------------------------------------------------
# (:Document)-[:HAS_CHUNK]->(:Chunk)-[:MENTIONS]->(:Entity)-[:RELATED {type, ...}]->(:Entity)
# Every node and edge carries `domain` and `version`: a re-index writes a complete new version
# beside the serving one, the domain's CURRENT file switches both FAISS and graph at once, and
# old versions are deleted afterwards. Relation types are a property (`type`), not a Cypher
# relationship type, because relationship types cannot be parameters and the types come from
# the corpus.

# The version writes MERGE on their keys within domain+version (documents by doc_id, chunks by
# chunk_id, entities by key, mentions by (chunk, entity), facts by (head, tail, type); graph_store
# writes each key once per version), so a batch that runs twice, because the reply to the first
# run was lost, leaves the graph as one run does, and GraphConnection may send it again instead of
# failing the re-index. Each MERGE finds its node through the indexes of ensure_indexes. What it
# costs over CREATE, measured on 2 busy cores: write_version of 100k relations 4.89 vs 4.81 s on
# the socket, 33.6 vs 30.0 s over Bolt (bench/graph_write.py); the graph write of indexing the 4x
# real-text corpus 0.69 vs 0.63 s of a ~190 s index (bench/index_scale.py --sizes 4).
WRITE_DOCUMENTS = """
UNWIND $rows AS r
MERGE (d:Document {domain: $domain, version: $version, doc_id: r.doc_id})
SET d.title = r.title, d.source = r.source
"""

WRITE_CHUNKS = """
UNWIND $rows AS r
MATCH (d:Document {domain: $domain, version: $version, doc_id: r.doc_id})
MERGE (c:Chunk {domain: $domain, version: $version, chunk_id: r.chunk_id})
SET c.doc_id = r.doc_id, c.ordinal = r.ordinal
MERGE (d)-[:HAS_CHUNK]->(c)
"""

WRITE_ENTITIES = """
UNWIND $rows AS r
MERGE (e:Entity {domain: $domain, version: $version, key: r.key})
SET e.name = r.name, e.type = r.type, e.aliases = r.aliases, e.mentions = r.mentions
"""

WRITE_MENTIONS = """
UNWIND $rows AS r
MATCH (c:Chunk {domain: $domain, version: $version, chunk_id: r.chunk_id})
MATCH (e:Entity {domain: $domain, version: $version, key: r.key})
MERGE (c)-[:MENTIONS]->(e)
"""

WRITE_FACTS = """
UNWIND $rows AS r
MATCH (h:Entity {domain: $domain, version: $version, key: r.head})
MATCH (t:Entity {domain: $domain, version: $version, key: r.tail})
MERGE (h)-[f:RELATED {domain: $domain, version: $version, type: r.type}]->(t)
SET f.confidence = r.confidence, f.count = r.count, f.chunk_ids = r.chunk_ids, f.doc_ids = r.doc_ids,
    f.curated = r.curated
"""

# One row per statement: the baseline the batched writes are benchmarked against.
WRITE_ONE_FACT = """
MATCH (h:Entity {domain: $domain, version: $version, key: $head})
MATCH (t:Entity {domain: $domain, version: $version, key: $tail})
MERGE (h)-[f:RELATED {domain: $domain, version: $version, type: $type}]->(t)
SET f.confidence = $confidence, f.count = $count, f.chunk_ids = $chunk_ids, f.doc_ids = $doc_ids,
    f.curated = $curated
"""

# Deletes run in bounded batches (the caller loops until nothing is left) so one huge
# transaction never holds the server. Labels are fixed here, never taken from data.
DELETE_VERSION_BATCH = {
    "Entity": """
MATCH (n:Entity {domain: $domain, version: $version})
WITH n LIMIT $batch
DETACH DELETE n
RETURN count(*) AS deleted
""",
    "Chunk": """
MATCH (n:Chunk {domain: $domain, version: $version})
WITH n LIMIT $batch
DETACH DELETE n
RETURN count(*) AS deleted
""",
    "Document": """
MATCH (n:Document {domain: $domain, version: $version})
WITH n LIMIT $batch
DETACH DELETE n
RETURN count(*) AS deleted
""",
}

LIST_DOMAINS = """
MATCH (d:Document)
RETURN DISTINCT d.domain AS domain
"""

LIST_VERSIONS = """
MATCH (d:Document {domain: $domain})
RETURN DISTINCT d.version AS version
"""

COUNT_VERSION = """
MATCH (d:Document {domain: $domain, version: $version})
RETURN count(d) AS documents
"""

STATS = {
    "documents": "MATCH (n:Document {domain: $domain, version: $version}) RETURN count(n) AS n",
    "chunks": "MATCH (n:Chunk {domain: $domain, version: $version}) RETURN count(n) AS n",
    "entities": "MATCH (n:Entity {domain: $domain, version: $version}) RETURN count(n) AS n",
    "relations": "MATCH (:Entity {domain: $domain, version: $version})-[r:RELATED]->() RETURN count(r) AS n",
    "mentions": "MATCH (:Chunk {domain: $domain, version: $version})-[r:MENTIONS]->() RETURN count(r) AS n",
}

ENTITY_CATALOG = """
MATCH (e:Entity {domain: $domain, version: $version})
RETURN e.key AS key, e.name AS name, e.type AS type, e.aliases AS aliases, e.mentions AS mentions
"""

FACTS_FROM = """
MATCH (h:Entity {domain: $domain, version: $version})-[r:RELATED]->(t:Entity)
WHERE h.key IN $keys
RETURN h.key AS head_key, h.name AS head, r.type AS relation, t.key AS tail_key, t.name AS tail,
       r.confidence AS confidence, r.count AS count, r.chunk_ids AS chunk_ids, r.doc_ids AS doc_ids,
       r.curated AS curated
ORDER BY r.confidence DESC, r.count DESC
LIMIT $limit
"""

FACTS_TO = """
MATCH (h:Entity)-[r:RELATED]->(t:Entity {domain: $domain, version: $version})
WHERE t.key IN $keys
RETURN h.key AS head_key, h.name AS head, r.type AS relation, t.key AS tail_key, t.name AS tail,
       r.confidence AS confidence, r.count AS count, r.chunk_ids AS chunk_ids, r.doc_ids AS doc_ids,
       r.curated AS curated
ORDER BY r.confidence DESC, r.count DESC
LIMIT $limit
"""

# Every fact of a version, one page at a time (for building training data).
ALL_FACTS_PAGE = """
MATCH (h:Entity {domain: $domain, version: $version})-[r:RELATED]->(t:Entity)
RETURN h.key AS head_key, h.name AS head, r.type AS relation, t.key AS tail_key, t.name AS tail,
       r.confidence AS confidence, r.count AS count, r.chunk_ids AS chunk_ids, r.doc_ids AS doc_ids,
       r.curated AS curated
ORDER BY head_key, relation, tail_key
SKIP $skip LIMIT $limit
"""

DOCUMENT_TITLES = """
MATCH (d:Document {domain: $domain, version: $version})
WHERE d.doc_id IN $doc_ids
RETURN d.doc_id AS doc_id, d.title AS title
"""

# --- dialects -----------------------------------------------------------------------------
# How parameters travel (escaping, size limits) belongs to the transport
# (indexing/graph_transport.py); only what differs in the Cypher itself lives here.


@dataclass(frozen=True)
class Dialect(ABC):
    """What differs between the Cypher of the graph servers we support."""

    name: str

    @abstractmethod
    def index_statements(self) -> list[str]:
        """The statements that create the graph's indexes."""


@dataclass(frozen=True)
class FalkorDBDialect(Dialect):
    name: str = "falkordb"

    def index_statements(self) -> list[str]:
        # FalkorDB has no IF NOT EXISTS: creating an existing index fails, and the caller ignores that.
        return [
            "CREATE INDEX FOR (n:Entity) ON (n.key)",
            "CREATE INDEX FOR (n:Entity) ON (n.domain)",
            "CREATE INDEX FOR (n:Chunk) ON (n.chunk_id)",
            "CREATE INDEX FOR (n:Document) ON (n.doc_id)",
            "CREATE INDEX FOR (n:Document) ON (n.domain)",
        ]


@dataclass(frozen=True)
class Neo4jDialect(Dialect):
    name: str = "neo4j"

    def index_statements(self) -> list[str]:
        return [
            "CREATE INDEX entity_key IF NOT EXISTS FOR (n:Entity) ON (n.key)",
            "CREATE INDEX entity_domain IF NOT EXISTS FOR (n:Entity) ON (n.domain)",
            "CREATE INDEX chunk_id IF NOT EXISTS FOR (n:Chunk) ON (n.chunk_id)",
            "CREATE INDEX document_id IF NOT EXISTS FOR (n:Document) ON (n.doc_id)",
            "CREATE INDEX document_domain IF NOT EXISTS FOR (n:Document) ON (n.domain)",
        ]


FALKORDB = FalkorDBDialect()
NEO4J = Neo4jDialect()


# --- retry policy ---------------------------------------------------------------------------
# After a broken connection nobody knows whether the server ran a statement, so GraphConnection
# sends one again only when running it twice leaves the graph as running it once: reads, and
# these. A delete batch run twice deletes the next batch too, which delete_version's loop (until
# a short batch) would have done anyway; an index that exists is skipped (Neo4j) or refused with
# an error ensure_indexes ignores (FalkorDB).
_IDEMPOTENT = frozenset({PING, WRITE_DOCUMENTS, WRITE_CHUNKS, WRITE_ENTITIES, WRITE_MENTIONS, WRITE_FACTS,
                         WRITE_ONE_FACT, *DELETE_VERSION_BATCH.values(), *FALKORDB.index_statements(),
                         *NEO4J.index_statements()})


def is_idempotent(statement: str) -> bool:
    """Whether this statement may be sent again after a broken connection left its outcome unknown."""
    return statement in _IDEMPOTENT
