"""The answer path's cache of sentence vectors (indexing/embedding.py CachedEncoder): the same
vectors as the embedder's, each text embedded once while it is kept, the least recently used
pushed out beyond the capacity."""

from __future__ import annotations

import numpy as np

from indexing.embedding import CachedEncoder

TEXTS = ["Metformin lowers blood sugar.", "The liver weighs about 1.5 kilograms.", "Warfarin is a vitamin K antagonist."]


class Counting:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, embedder):
        self.embedder, self.embedded = embedder, []
        self.dimension = embedder.dimension

    def encode(self, texts):
        self.embedded += texts
        return self.embedder.encode(texts)


def test_cached_vectors_are_the_embedders_and_each_text_is_embedded_once(embedder):
    counting = Counting(embedder)
    cached = CachedEncoder(counting)
    first = cached(TEXTS + [TEXTS[0]])  # a repeat inside one call is embedded once too
    again = cached(list(reversed(TEXTS)))
    assert np.allclose(first[:3], embedder.encode(TEXTS), atol=1e-5) and np.allclose(first[3], first[0])
    assert np.allclose(again, first[:3][::-1])
    assert counting.embedded == TEXTS and (cached.hits, cached.misses) == (4, 3)
    assert cached([]).shape == (0, embedder.dimension)


def test_the_least_recently_used_text_goes_first(embedder):
    counting = Counting(embedder)
    cached = CachedEncoder(counting, capacity=2)
    cached(TEXTS[:2])
    cached([TEXTS[0]])  # now TEXTS[1] is the least recently used
    cached([TEXTS[2]])  # pushes TEXTS[1] out
    counting.embedded.clear()
    cached([TEXTS[0], TEXTS[2]])
    assert counting.embedded == []
    cached([TEXTS[1]])
    assert counting.embedded == [TEXTS[1]]
