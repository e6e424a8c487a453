"""Relations from sentence co-occurrence across a domain, kept when P(R|E) and PMI are high."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import NamedTuple

from indexing.extraction import ChunkExtraction, RelationMention

class _SentenceGroup(NamedTuple):
    keys: frozenset[str]
    count: int  # distinct sentences of one document with exactly these keys
    chunks: list[tuple[str, str]]  # (chunk_id, doc_id) of the chunks holding them


def _domain_sentences(extractions: list[ChunkExtraction]) -> tuple[list[_SentenceGroup], dict[str, str]]:
    """A domain's sentences as key sets, grouped per document, and the most used name of each key.

    Chunks overlap, so the last sentences of one chunk come again at the start of the next. A
    document's sentences with the same keys are therefore counted as often as the chunk that
    holds the most of them, not once per chunk (so an overlap alone never reaches min_count).
    """
    per_chunk: dict[tuple[str, str], Counter] = defaultdict(Counter)  # (doc, chunk) -> key set counts
    names: dict[str, Counter] = defaultdict(Counter)
    for extraction in extractions:
        sentences: dict[int, set[str]] = defaultdict(set)
        for m in extraction.entities:
            if m.key:
                sentences[m.sentence].add(m.key)
                names[m.key][m.name] += 1
        per_chunk[(extraction.doc_id, extraction.chunk_id)].update(frozenset(k) for k in sentences.values())
    groups: dict[tuple[str, frozenset[str]], _SentenceGroup] = {}
    for (doc_id, chunk_id), counts in per_chunk.items():
        for keys, count in counts.items():
            old = groups.get((doc_id, keys), _SentenceGroup(keys, 0, []))
            groups[(doc_id, keys)] = _SentenceGroup(keys, max(old.count, count), old.chunks + [(chunk_id, doc_id)])
    best_name = {k: min(c.items(), key=lambda item: (-item[1], item[0]))[0] for k, c in names.items()}
    return list(groups.values()), best_name


def _nested(a: str, b: str) -> bool:
    """"richard nixon" inside "president richard nixon": two mentions of one thing, not a pair."""
    return f" {a} " in f" {b} " or f" {b} " in f" {a} "


def cooccurrence_relations(extractions: list[ChunkExtraction], *, min_count: int = 2,
                           min_conditional: float = 0.3, min_pmi: float = 0.0) -> list[RelationMention]:
    """Pairs of entities that keep appearing in the same sentence across a domain's chunks.

    For a pair, E is the more frequent entity (the head) and R the other: P(R|E) = n(E,R)/n(E)
    is the smaller of the two conditionals, so a very common entity ("patient") does not link to
    everything it meets. PMI = log(P(E,R) / (P(E) P(R))), probabilities over the domain's
    sentences that mention any entity. One mention per chunk holding a supporting sentence, in
    the order of ``extractions``; confidence = P(R|E).
    """
    groups, best_name = _domain_sentences(extractions)
    position = {(e.chunk_id, e.doc_id): i for i, e in reversed(list(enumerate(extractions)))}
    total = sum(g.count for g in groups)
    single: Counter = Counter()
    together: Counter = Counter()
    support: dict[tuple[str, str], list[int]] = defaultdict(list)  # pair -> groups holding it
    for number, group in enumerate(groups):
        ordered = sorted(group.keys)
        single.update({k: group.count for k in ordered})
        for i, a in enumerate(ordered):
            for b in ordered[i + 1:]:
                together[(a, b)] += group.count
                support[(a, b)].append(number)
    out = []
    for (a, b), n in sorted(together.items()):
        if n < min_count or _nested(a, b):
            continue
        head, tail = sorted((a, b), key=lambda k: (-single[k], k))  # more frequent first, ties by key
        conditional = n / single[head]
        pmi = math.log(n * total / (single[head] * single[tail]))
        if conditional < min_conditional or pmi < min_pmi:
            continue
        chunks = sorted({c for number in support[(a, b)] for c in groups[number].chunks}, key=position.__getitem__)
        out += [RelationMention(chunk_id, doc_id, best_name[head], head, "co_occurs", best_name[tail], tail,
                                round(conditional, 3), "cooccurrence") for chunk_id, doc_id in chunks]
    return out

