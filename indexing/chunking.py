"""Token-aware chunking with overlap, and stable chunk ids.

Sentences are packed into chunks of at most ``max_tokens`` embedder tokens; each chunk starts
with the last sentences of the previous one, up to ``overlap_tokens``. A sentence longer than a
chunk is cut by words. Token counts come from the embedder's own tokenizer (passed in as a
function), so a chunk always fits what the embedder reads.

A table row (indexing/tables.py) is a unit of its own, never split into sentences, and is joined
to its neighbours with a line break where sentences are joined with a space, so a chunk keeps
its rows as lines. A chunk that begins inside a table starts with that table's header lines
(counted in its budget), so its cells keep their column names; when the header alone leaves no
room for the row, the chunk goes without it.

A chunk id is derived from the document id and the chunk's text, so re-indexing an unchanged
document gives the same ids and a changed one gives new ids only where its text changed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable

from indexing.corpus import Document
from indexing.tables import Table, is_separator_row, split_tables

TokenCounter = Callable[[str], int]
# Changes whenever the same text would be cut into other chunks (2: table rows kept as lines), so a
# build keyed on the corpus's bytes alone (the evaluation's workspace) knows to index again.
CHUNKING_VERSION = 2

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


@dataclass(frozen=True)
class _Unit:
    text: str
    tokens: int
    row: bool = False  # a table row: joined to its neighbours by a line break
    header: str | None = None  # a table row below the header: the header lines a chunk starting here repeats


def chunk_document(document: Document, count: TokenCounter, max_tokens: int, overlap_tokens: int) -> list[Chunk]:
    units = _units(document.text, count, max_tokens)
    headers: dict[str, _Unit] = {}  # header text -> its unit, counted once

    texts: list[tuple[str, int]] = []
    window: list[_Unit] = []
    window_tokens = 0
    for unit in units:
        if window and window_tokens + unit.tokens > max_tokens:
            texts.append((_joined(window), window_tokens))
            window = _next_window(window, unit, overlap_tokens, max_tokens, headers, count)
            window_tokens = sum(u.tokens for u in window)
        window.append(unit)
        window_tokens += unit.tokens
    if window:  # its last sentence was never emitted
        texts.append((_joined(window), window_tokens))

    chunks, seen = [], set()
    for ordinal, (text, tokens) in enumerate(texts):
        cid = chunk_id(document.id, text)
        if cid in seen:  # the same passage twice in one document: keep one
            continue
        seen.add(cid)
        chunks.append(Chunk(cid, document.id, document.domain, document.title, ordinal, text, tokens))
    return chunks


def _units(text: str, count: TokenCounter, max_tokens: int) -> list[_Unit]:
    """Sentences of the prose, and table rows whole; anything over the budget cut by words."""
    units: list[_Unit] = []
    for run, table in split_tables(text):
        pieces = [(sentence, False, None) for sentence in split_sentences(run)] if table is None else _rows(run, table)
        for piece, row, header in pieces:
            n = count(piece)
            if n <= max_tokens:
                units.append(_Unit(piece, n, row, header))
            else:
                units.extend(_Unit(part, count(part)) for part in _split_long(piece, max_tokens, count))
    return units


def _rows(run: str, table: Table) -> list[tuple[str, bool, str | None]]:
    """A table's lines as (line, True, the header lines above it); the header and markdown rule
    rows have none to repeat."""
    pieces, index = [], -1  # index: the row's place in ``table.row_lines``; -1 the header
    for line in run.split("\n"):
        if is_separator_row(line):
            pieces.append((line, True, None))
            continue
        pieces.append((line, True, table.header_above(index) if index >= 0 else None))
        index += 1
    return pieces


def _joined(window: list[_Unit]) -> str:
    text = window[0].text
    for before, unit in zip(window, window[1:]):
        text += ("\n" if before.row or unit.row else " ") + unit.text
    return text


def _next_window(window: list[_Unit], unit: _Unit, overlap_tokens: int, max_tokens: int,
                 headers: dict[str, _Unit], count: TokenCounter) -> list[_Unit]:
    """The start of the chunk after ``window``, before ``unit`` joins it: the overlap tail, and in
    front of it the table's header when the chunk begins inside a table and the header fits."""
    room = max_tokens - unit.tokens
    tail = _overlap_tail(window, overlap_tokens, room)
    header = (tail or [unit])[0].header
    if header is None:
        return tail
    if header not in headers:
        headers[header] = _Unit(header, count(header), row=True)
    if headers[header].tokens > room:  # the header alone leaves no room for the row
        return tail
    tail = _overlap_tail(window, overlap_tokens, room - headers[header].tokens)
    if (tail or [unit])[0].header != header:  # shortened past the table's rows: begins elsewhere
        return tail
    return [headers[header]] + tail


def _overlap_tail(window: list[_Unit], overlap_tokens: int, room: int) -> list[_Unit]:
    """The last sentences of the window that fit both the overlap and the room left."""
    tail, total = [], 0
    for unit in reversed(window):
        if total + unit.tokens > min(overlap_tokens, room):
            break
        tail.insert(0, unit)
        total += unit.tokens
    return tail
