"""The best passage read on: its document's next chunks joined to it, so the prompt holds the
part of the best document that answers, not only the part that matched the question.

Retrieval finds chunks by how much they resemble the question, and the chunk that resembles it
most is often the one that restates it: an abstract's background and aims, a report's heading.
What answers it (the results, the table's rows, the paragraph after) is the next chunk of the
same document, which resembles the question less and loses its place to other documents'
first chunks (``passages_per_document``). On the PubMedQA development abstracts (2-3 chunks
each) the prompt held every chunk of the gold abstract for 11 of 100 questions, and the yes/no
reading, left with background and methods sentences, said "Yes" to 21 of 31 "No" questions.
This is the "small to big" step of retrieval pipelines (match small chunks, read the larger
window around the match), applied to the best document only, so the other places keep other
documents for the questions that need two.

The window is the best chunk, then the chunks after it, then the ones before it, up to
``best_document_chunks`` in all, joined in the document's order. Chunks overlap (each starts
with the end of the one before, indexing/chunking.py), so the repeated words are dropped where
the two meet. Retrieval (``Retriever._read_on``) applies it to the best passage.
"""

from __future__ import annotations

from typing import Sequence

MIN_OVERLAP_CHARS = 20  # a shorter match where two chunks meet is chance, not the chunker's overlap
MAX_OVERLAP_CHARS = 4000  # the chunker's overlap is a few sentences; nothing longer is looked for


def window_positions(positions: Sequence[int], best: int, chunks: int) -> list[int]:
    """Of a document's chunk ``positions`` (in order), the ones read with the chunk at ``best``:
    it, the ones after it, then the ones before it, ``chunks`` in all, in the document's order."""
    if best not in positions or chunks <= 1:
        return [best]
    at = positions.index(best)
    after = list(positions[at + 1:at + chunks])
    before = list(positions[max(0, at - (chunks - 1 - len(after))):at])
    return before + [best] + after


def overlap_length(before: str, after: str) -> int:
    """The length of the longest end of ``before`` that ``after`` starts with (at least
    ``MIN_OVERLAP_CHARS``, else 0). Linear: the prefix function of after + separator + before's
    end (Knuth-Morris-Pratt), over at most ``MAX_OVERLAP_CHARS`` of each."""
    head, tail = after[:MAX_OVERLAP_CHARS], before[-MAX_OVERLAP_CHARS:]
    text = f"{head}\x00{tail}"
    border = [0] * len(text)
    for i in range(1, len(text)):
        k = border[i - 1]
        while k and text[i] != text[k]:
            k = border[k - 1]
        border[i] = k + 1 if text[i] == text[k] else 0
    found = min(border[-1], len(head), len(tail)) if tail else 0
    return found if found >= MIN_OVERLAP_CHARS else 0


def join_chunks(texts: Sequence[str]) -> str:
    """Consecutive chunks of one document as one text, each overlap kept once. A table's rows
    are lines, so chunks holding them meet at a line break; others at a space."""
    joined = ""
    for text in texts:
        if not joined:
            joined = text
            continue
        rest = text[overlap_length(joined, text):].lstrip()
        if rest:
            joined += ("\n" if "\n" in joined[-200:] or "\n" in rest[:200] else " ") + rest
    return joined
