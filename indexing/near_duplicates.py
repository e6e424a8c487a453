"""Near-duplicate texts: MinHash signatures of word shingles in an LSH index (datasketch).

One filter serves corpus documents (clean.py, 5-word shingles, each candidate confirmed by its
estimated Jaccard similarity) and training examples (adapters/dataset.py, 2-word shingles, any
LSH candidate counts). The first text of a group, in the order given, is the one kept.
"""

from __future__ import annotations

import re

from datasketch import MinHash, MinHashLSH

_WORD = re.compile(r"\w+")
SEED = 7


def shingles(text: str, words_per_shingle: int) -> set[str]:
    words = _WORD.findall(text.lower())
    if len(words) <= words_per_shingle:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + words_per_shingle]) for i in range(len(words) - words_per_shingle + 1)}


def minhash(text: str, words_per_shingle: int, permutations: int) -> MinHash:
    signature = MinHash(num_perm=permutations, seed=SEED)
    signature.update_batch([s.encode("utf-8") for s in shingles(text, words_per_shingle)])
    return signature


class NearDuplicateFilter:
    """The texts kept so far. ``keep`` adds a text unless it is a near-duplicate of one of them.

    With ``confirm`` the LSH only proposes candidates and the estimated Jaccard similarity
    decides, so the threshold means what it says; without it every LSH candidate is a match.
    """

    def __init__(self, threshold: float, permutations: int, words_per_shingle: int, *, confirm: bool = True):
        self.threshold, self.permutations, self.words_per_shingle = threshold, permutations, words_per_shingle
        self.confirm = confirm
        self._lsh = MinHashLSH(threshold=threshold, num_perm=permutations)  # building one costs ~20 ms
        self._signatures: dict[str, MinHash] = {}

    def keep(self, key: str, text: str) -> tuple[str, float] | None:
        """None when the text was added under ``key``; else (the key it duplicates, their
        estimated similarity), the most similar candidate first seen winning a tie."""
        signature = minhash(text, self.words_per_shingle, self.permutations)
        best = None
        for candidate in self._lsh.query(signature):
            similarity = signature.jaccard(self._signatures[candidate])
            if (not self.confirm or similarity >= self.threshold) and (best is None or similarity > best[1]):
                best = (candidate, similarity)
        if best is not None:
            return best
        self._lsh.insert(key, signature)
        self._signatures[key] = signature
        return None
