"""BM25 over a domain version's chunks (bm25s), built and checksummed with its FAISS index.

Dense search misses what embeddings blur: numbers, codes, rare names ("1913", "HbA1c",
"Gideon"). The lexical index is written into the version folder (``bm25/``) by
:func:`write_lexical_files`, so it switches, verifies and is pruned with the FAISS files.
Row i of the BM25 index is line i of ``chunks.jsonl``, like the FAISS index.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from typing import Sequence

import bm25s
import numpy as np

from indexing.versions import sha256_file

log = logging.getLogger(__name__)
logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets its own logger to DEBUG on import

LEXICAL_DIR = "bm25"


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Lower-cased words of two or more characters, English stop words removed."""
    return bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)


def build_lexical_index(texts: Sequence[str]) -> bm25s.BM25:
    index = bm25s.BM25()
    # bm25s cannot index an empty corpus; an empty domain gets an index of one empty row
    # that no query matches (search filters zero scores).
    index.index(tokenize(texts) if texts else [[]], show_progress=False)
    return index


def write_lexical_files(directory: Path, texts: Sequence[str]) -> dict[str, str]:
    """Write the BM25 index under ``directory/bm25``; return {relative path: sha256}."""
    target = directory / LEXICAL_DIR
    build_lexical_index(texts).save(str(target), show_progress=False)
    return {f"{LEXICAL_DIR}/{p.name}": sha256_file(p) for p in sorted(target.iterdir()) if p.is_file()}


class LexicalIndex:
    def __init__(self, index: bm25s.BM25, rows: int):
        self.index, self.rows = index, rows
        self.vocabulary = set(index.vocab_dict)

    @classmethod
    def load(cls, directory: Path, texts: Sequence[str]) -> "LexicalIndex":
        """The version's saved index; a version written before BM25 existed gets one built in memory."""
        folder = directory / LEXICAL_DIR
        if folder.is_dir():
            return cls(bm25s.BM25.load(str(folder), show_progress=False), len(texts))
        log.info("%s has no BM25 files; building them in memory", directory)
        return cls(build_lexical_index(texts), len(texts))

    def document_frequencies(self, words: Sequence[str]) -> list[int]:
        """How many rows hold each word (0 for a word not in the vocabulary)."""
        counts = self._document_counts
        ids = [self.index.vocab_dict.get(word) for word in words]
        return [int(counts[i]) if i is not None and i < len(counts) else 0 for i in ids]

    @cached_property
    def _document_counts(self) -> np.ndarray:
        # bm25s keeps its scores as a sparse matrix with one column per word id: a column's
        # stored entries are the rows holding that word.
        return np.diff(np.asarray(self.index.scores["indptr"]))

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """(row, score) of the best ``k`` rows sharing at least one word with the query."""
        words = [w for w in tokenize([query])[0] if w in self.vocabulary]
        if not words or k <= 0 or self.rows == 0:
            return []
        positions, scores = self.index.retrieve([words], k=min(k, self.rows), show_progress=False, n_threads=1)
        return [(int(p), float(s)) for p, s in zip(np.asarray(positions)[0], np.asarray(scores)[0]) if s > 0]
