"""Token-aware chunking with overlap, and stable chunk ids.

Sentences are packed into chunks of at most ``max_tokens`` embedder tokens; each chunk starts
with the last sentences of the previous one, up to ``overlap_tokens``. A sentence longer than a
chunk is cut by words. Token counts come from the embedder's own tokenizer (passed in as a
function), so a chunk always fits what the embedder reads.

A chunk id is derived from the document id and the chunk's text, so re-indexing an unchanged
document gives the same ids and a changed one gives new ids only where its text changed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable

from indexing.corpus import Document

TokenCounter = Callable[[str], int]

# A sentence ends at . ! ? (optionally followed by quotes/brackets) before whitespace, or at a
# line break (headings, list items). Abbreviations like "e.g." may split early; harmless here.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")


@dataclass(frozen=True)
class Chunk:
    id: str
    doc_id: str
    domain: str
    title: str
    ordinal: int
    text: str
    tokens: int


def chunk_id(doc_id: str, text: str) -> str:
    digest = hashlib.sha256(f"{doc_id}\x00{text}".encode("utf-8")).hexdigest()[:16]
    return f"{doc_id}#{digest}"


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _split_long(sentence: str, max_tokens: int, count: TokenCounter) -> list[str]:
    """Cut a sentence that alone exceeds the budget into word runs that fit."""
    pieces, current = [], []
    for word in sentence.split():
        candidate = " ".join(current + [word])
        if current and count(candidate) > max_tokens:
            pieces.append(" ".join(current))
            current = [word]
        else:
            current.append(word)
    if current:
        pieces.append(" ".join(current))
    return pieces


def chunk_document(document: Document, count: TokenCounter, max_tokens: int, overlap_tokens: int) -> list[Chunk]:
    units: list[tuple[str, int]] = []
    for sentence in split_sentences(document.text):
        n = count(sentence)
        if n <= max_tokens:
            units.append((sentence, n))
        else:
            units.extend((piece, count(piece)) for piece in _split_long(sentence, max_tokens, count))

    texts: list[tuple[str, int]] = []
    window: list[tuple[str, int]] = []
    window_tokens = 0
    for unit in units:
        if window and window_tokens + unit[1] > max_tokens:
            texts.append((" ".join(u[0] for u in window), window_tokens))
            window, window_tokens = _overlap_tail(window, overlap_tokens, max_tokens - unit[1])
        window.append(unit)
        window_tokens += unit[1]
    if window:  # its last sentence was never emitted
        texts.append((" ".join(u[0] for u in window), window_tokens))

    chunks, seen = [], set()
    for ordinal, (text, tokens) in enumerate(texts):
        cid = chunk_id(document.id, text)
        if cid in seen:  # the same passage twice in one document: keep one
            continue
        seen.add(cid)
        chunks.append(Chunk(cid, document.id, document.domain, document.title, ordinal, text, tokens))
    return chunks


def _overlap_tail(window: list[tuple[str, int]], overlap_tokens: int, room: int) -> tuple[list[tuple[str, int]], int]:
    """The last sentences of the window that fit both the overlap and the room left."""
    tail, total = [], 0
    for unit in reversed(window):
        if total + unit[1] > min(overlap_tokens, room):
            break
        tail.insert(0, unit)
        total += unit[1]
    return tail, total
