"""What a new index version reuses from the previous one, and how its graph differs from it:
saved extractions, saved entity-name vectors, and the graph summary the next version is
compared with. (Entity resolution itself is in entity_resolution.py, the run in pipeline.py.)

Extraction results are saved per chunk in the version folder (``extractions.jsonl``), so a
re-index runs the extractor only on chunks it has not seen; fusion then runs over the whole
domain again, which is what makes a deleted document's contributions disappear while facts
that other documents support stay. The entity names fusion embeds are saved too
(``name_vectors.npz``): a re-index embeds only names it has not seen, where it would otherwise
spend as long embedding names as the chunks that changed took to extract.
"""

from __future__ import annotations

import json
import logging
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from indexing.chunking import Chunk
from indexing.entity_resolution import DomainGraph
from indexing.extraction import ChunkExtraction, EntityMention, Extractor, RelationMention

EXTRACTIONS_FILE = "extractions.jsonl"
GRAPH_SUMMARY_FILE = "graph.json"
NAME_VECTORS_FILE = "name_vectors.npz"
EXTRACT_BATCH = 32
log = logging.getLogger(__name__)


def save_extractions(path: Path, extractions: Sequence[ChunkExtraction]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for extraction in extractions:
            f.write(json.dumps(asdict(extraction), ensure_ascii=False) + "\n")


def load_extractions(path: Path) -> dict[str, ChunkExtraction]:
    loaded = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            loaded[row["chunk_id"]] = ChunkExtraction(
                row["chunk_id"], row["doc_id"],
                [EntityMention(**e) for e in row["entities"]],
                [RelationMention(**r) for r in row["relations"]])
    return loaded


def extract_with_reuse(chunks: Sequence[Chunk], extractor: Extractor, previous_dir: Path | None,
                       previous_extractor: str | None, progress: bool = True) -> tuple[list[ChunkExtraction], int]:
    """Extractions for every chunk, in order; returns them and how many were reused."""
    cached: dict[str, ChunkExtraction] = {}
    if previous_dir is not None and previous_extractor == extractor.name:
        try:
            cached = load_extractions(previous_dir / EXTRACTIONS_FILE)
        except (OSError, ValueError, TypeError, KeyError):
            cached = {}  # missing or damaged: extract everything again
    todo = [c for c in chunks if c.id not in cached]
    fresh: dict[str, ChunkExtraction] = {}
    with tqdm(total=len(todo), desc=f"extract {chunks[0].domain if chunks else ''}", unit="chunk",
              disable=not progress, leave=False) as bar:
        for start in range(0, len(todo), EXTRACT_BATCH):
            batch = todo[start:start + EXTRACT_BATCH]
            for extraction in extractor.extract(batch):
                fresh[extraction.chunk_id] = extraction
            bar.update(len(batch))
    return [cached.get(c.id) or fresh[c.id] for c in chunks], len(chunks) - len(todo)


def graph_summary(graph: DomainGraph) -> dict:
    return {"entities": sorted(graph.entities), "facts": sorted(list(f.triple) for f in graph.facts)}


def save_graph_summary(path: Path, graph: DomainGraph) -> None:
    path.write_text(json.dumps(graph_summary(graph), ensure_ascii=False), encoding="utf-8")


def load_graph_summary(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def diff_graph(previous: dict | None, graph: DomainGraph) -> dict[str, int]:
    """Entities and facts added/removed compared with the previous version's summary."""
    new = graph_summary(graph)
    old = previous or {"entities": [], "facts": []}
    old_entities, new_entities = set(old["entities"]), set(new["entities"])
    old_facts, new_facts = {tuple(f) for f in old["facts"]}, {tuple(f) for f in new["facts"]}
    return {
        "entities_added": len(new_entities - old_entities), "entities_removed": len(old_entities - new_entities),
        "relations_added": len(new_facts - old_facts), "relations_removed": len(old_facts - new_facts),
    }


class NameEncoder:
    """``encode`` for fusion's entity names that reuses the previous version's vectors of the
    same embedder and remembers every name it was asked for, to save with the new version. A
    missing or damaged file only means embedding the names again."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray], embedder_name: str, previous_dir: Path | None):
        self._encode, self.embedder_name = encode, embedder_name
        self.known: dict[str, np.ndarray] = self._load(previous_dir) if previous_dir is not None else {}
        self.used: dict[str, np.ndarray] = {}
        self.encoded = 0  # names embedded now (not reused)

    def __call__(self, names: list[str]) -> np.ndarray:
        missing = [name for name in dict.fromkeys(names) if name not in self.known]
        if missing:
            for name, vector in zip(missing, self._encode(missing)):
                self.known[name] = vector
            self.encoded += len(missing)
        vectors = [self.known[name] for name in names]
        self.used.update(zip(names, vectors))
        return np.array(vectors, dtype=np.float32).reshape(len(names), -1)

    def save(self, directory: Path) -> None:
        names = sorted(self.used)
        vectors = np.array([self.used[n] for n in names], dtype=np.float32)
        with open(directory / NAME_VECTORS_FILE, "wb") as f:
            np.savez(f, names=np.array(names, dtype=str), vectors=vectors, embedder=np.array(self.embedder_name))

    def _load(self, directory: Path) -> dict[str, np.ndarray]:
        path = directory / NAME_VECTORS_FILE
        if not path.is_file():
            return {}
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["embedder"]) != self.embedder_name:
                    return {}
                names, vectors = data["names"].tolist(), data["vectors"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("not reusing the name vectors of %s: %s", directory, exc)
            return {}
        if len(names) != len(vectors):
            return {}
        return dict(zip(names, vectors))
