"""An Answer as people read it: the one-line header, the evidence as Markdown, the facts'
picture, and a plain JSON form for API clients. No Gradio here and no model or database work."""

from __future__ import annotations

import html
import logging
import re
import string
import uuid
from pathlib import Path
from typing import Sequence

from assistant.answering.pipeline import Answer
from assistant.answering.retrieval import Passage, RankedFact
from indexing.graph_store import Subgraph

log = logging.getLogger(__name__)

SNIPPET_CHARS = 280


def answer_header(answer: Answer) -> str:
    where = answer.domain or "all domains (no clear domain: base model)"
    adapter = answer.adapter or {"facts": "none: the graph facts answered",
                                 "evidence": "none: the evidence answered"}.get(answer.stopped, "base model")
    line = f"**Domain:** {_md(where)} · **confidence** {answer.confidence:.2f} · **adapter:** {_md(adapter)}"
    if answer.degraded:
        line = "⚠️ **Degraded:** the knowledge graph is unavailable; this answer uses passages only.  \n" + line
    failure = failure_line(answer)
    return failure + "  \n" + line if failure else line


def failure_line(answer: Answer) -> str | None:
    """A warning for an answer that failed after it began (part of it may have been streamed
    already), with the reason; None for a complete answer or a plain refusal (busy, too long),
    whose text says all."""
    error = answer.error or ""
    if error.startswith("generation failed"):
        reason = error.removeprefix("generation failed").lstrip(": ") or "no reason given"
        return f"⚠️ **The answer failed** while it was being written ({_md(reason)}); what is shown is incomplete."
    if error.startswith("internal error"):
        return "⚠️ **The answer failed:** something went wrong on the server (it is in the log); what is shown may be incomplete."
    return None


def for_chat(text: str) -> str:
    """A question or an answer as the chat shows it: as plain text. The Chatbot renders HTML even
    with Markdown off, so an <img> in a question, or in an answer that echoes one, would make the
    browser fetch from anywhere; escaped, it shows as the text it is."""
    return html.escape(text, quote=False)


_CITATION_MARK = re.compile(r"\[(\d+)\]")
UNSUPPORTED_TITLE = "No evidence item supports this sentence"


def from_chat(text: str) -> str:
    """What :func:`for_chat` or :func:`answer_html` showed, back as the text that was typed or
    answered (the history a client sends): the tags are ours (all other text was escaped)."""
    return html.unescape(TagStripper().strip(text))


def chat_turns(history: Sequence, keep: int) -> list[dict]:
    """The turns of a chat history a client sent that can reach the prompt, back as text: only the
    last ``keep``, as pipeline.recent_turns keeps (and then cuts each), so that a long history is
    not read at all; each turn kept is read in one linear pass."""
    tail = list(history)[-keep:] if keep > 0 else []
    return [{"role": turn.get("role"), "content": from_chat(message_text(turn.get("content")))}
            for turn in tail if isinstance(turn, dict)]


def message_text(content) -> str:
    """A chat message's text (Gradio may hand content back as a list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    if isinstance(content, dict):
        return str(content.get("text", ""))
    return str(content)


class TagStripper:
    """Text with every span from a '<' to the first '>' after it removed, as
    ``re.sub(r"<[^>]*>", "", text)`` did, in one forward pass.

    The regex looked for a '>' again from every '<' it tried, so a run of '<' with no '>' after it
    took quadratic time (80,000 '<': seconds, in a request anyone may send). Here each search starts
    where the last one stopped, and once no '>' is left nothing further can be a tag, so every
    character is examined once; ``examined`` counts them, so tests can bound the work without
    timing it."""

    def __init__(self) -> None:
        self.examined = 0

    def strip(self, text: str) -> str:
        kept, start, size = [], 0, len(text)
        while True:
            lt = text.find("<", start)
            gt = text.find(">", lt + 1) if lt != -1 else -1
            if gt == -1:  # no '<', or no '>' after it: the rest is text
                self.examined += size - start
                kept.append(text[start:])
                return "".join(kept)
            self.examined += gt + 1 - start
            kept.append(text[start:lt])
            start = gt + 1


def evidence_anchor(turn: int, number: int) -> str:
    """The id of evidence item ``number`` of the conversation's ``turn``-th answer."""
    return f"evidence-{turn}-{number}"


def answer_html(answer: Answer, turn: int) -> str:
    """The answer as the chat shows it: escaped text, each [n] a link to its evidence item in the
    panel, and a sentence that no evidence supports marked (class "unsupported", with a title)."""
    if not answer.sentences:
        return for_chat(answer.text)
    shown = []
    for sentence in answer.sentences:
        cited = set(sentence.citations)

        def link(match: re.Match) -> str:
            number = int(match.group(1))
            if number not in cited:
                return match.group(0)
            return f'<a class="citation" href="#{evidence_anchor(turn, number)}">[{number}]</a>'

        body = _CITATION_MARK.sub(link, html.escape(sentence.text, quote=False))
        if sentence.claim and not sentence.supported:
            body = f'<span class="unsupported" title="{UNSUPPORTED_TITLE}">{body}</span>'
        shown.append(body)
    return " ".join(shown)


def evidence_markdown(answer: Answer, turn: int = 0) -> str:
    """The evidence under an answer: first the items its sentences cite (with which sentence and
    how strongly), then, folded away, the rest the model was given, each with its rank among the
    retrieved items rather than a fusion score. Every item carries the anchor its citations link to."""
    parts: list[str] = []
    if answer.notes:
        parts += [f"> {_md(note)}" for note in answer.notes] + [""]
    cited = _citing_sentences(answer)
    items = [(answer.evidence_number(f), f) for f in answer.facts] + \
            [(answer.evidence_number(p), p) for p in answer.passages]
    if not items:
        return "\n".join(parts) if parts else "No evidence was used for this answer."
    parts += chain_markdown(answer, items)
    used = [(n, item) for n, item in items if n in cited]
    rest = [(n, item) for n, item in items if n not in cited]
    if used:
        parts += ["**Cited in the answer**", ""] + [_item_line(answer, n, item, turn, cited[n]) for n, item in used]
    if rest and used:
        parts += ["", f"<details><summary>Other evidence the model was given ({len(rest)})</summary>", ""]
        parts += [_item_line(answer, n, item, turn, []) for n, item in rest] + ["", "</details>"]
    elif rest:
        parts += ["**Evidence the model was given** (the answer cites none of it)", ""]
        parts += [_item_line(answer, n, item, turn, []) for n, item in rest]
    parts += walk_markdown(answer)
    timings = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in answer.timings.items())
    return "\n".join(parts + ["", f"*{timings}*"])


def chain_markdown(answer: Answer, items: list) -> list[str]:
    """How a multi-hop answer was reached: the item of the first search that names the bridge,
    then the second search about it and the items it brought (assistant/answering/bridge.py)."""
    bridge = answer.bridge
    if bridge is None:
        return []
    first = [n for n, item in items if item.text == bridge.first_item]
    second = [n for n, item in items if item.text in bridge.second_items]
    cited = ", ".join(f"[{n}]" for n in second) or "nothing the prompt could hold"
    return ["**How the answer was reached**", "",
            f"1. {' '.join(f'[{n}]' for n in first)} names **{_md(bridge.entity)}**.",
            f"2. A second search asked “{_md(bridge.query)}” and found {cited}.", ""]


def walk_markdown(answer: Answer) -> list[str]:
    """Folded: where the graph walk's probability gathered (entities, then passages, with the
    share of the walk each holds), so a reader sees through which entities a second document came in."""
    if not answer.walk:
        return []
    entities = [node for node in answer.walk if node.kind == "entity"]
    passages = [node for node in answer.walk if node.kind == "passage"]
    given = {p.chunk_id: answer.evidence_number(p) for p in answer.passages}
    lines = ["", "<details><summary>Why these passages: the graph walk</summary>", "",
             "A walk over the knowledge graph from the entities the question names, its best facts and "
             "its closest passages; where it spends its time is what it ranks high.", ""]
    if entities:
        lines.append("Entities: " + ", ".join(f"{_md(node.name)} ({node.score:.3f})" for node in entities))
    for node in passages:
        mark = f" → given as \\[{given[node.key]}\\]" if node.key in given else ""
        lines.append(f"- {_md(node.name)} ({node.score:.3f}){mark}")
    return lines + ["", "</details>"]


def found_by(passage: Passage) -> str:
    """Which rankings found a passage and where: "dense 2, words 5, graph walk 3"."""
    ranks = [("dense", passage.dense_rank), ("words", passage.lexical_rank), ("graph walk", passage.walk_rank)]
    return ", ".join(f"{name} {rank}" for name, rank in ranks if rank is not None)


def _citing_sentences(answer: Answer) -> dict[int, list[tuple[int, float]]]:
    """Evidence number -> (sentence number, support score) of each sentence that cites it."""
    cited: dict[int, list[tuple[int, float]]] = {}
    for index, sentence in enumerate(answer.sentences, 1):
        for number in sentence.citations:
            cited.setdefault(number, []).append((index, sentence.support.get(number, sentence.score)))
    return cited


def support_label(score: float) -> str:
    return "strong support" if score >= 0.8 else "partial support"


def _item_line(answer: Answer, number: int, item, turn: int, citing: list[tuple[int, float]]) -> str:
    anchor = f'<span id="{evidence_anchor(turn, number)}" class="evidence-item"></span>'
    if citing:
        why = "; ".join(f"sentence {index}, {support_label(score)}" for index, score in citing)
    elif isinstance(item, RankedFact):
        why = f"graph fact {answer.facts.index(item) + 1} of {len(answer.facts)} by relevance"
    else:
        why = f"passage {answer.passages.index(item) + 1} of {len(answer.passages)} by relevance"
    if isinstance(item, RankedFact):
        relation = item.fact.relation.replace("_", " ")
        titles = ", ".join(item.titles) or "-"
        return (f"- **\\[{number}\\]** {anchor}{_md(item.fact.head)} – *{_md(relation)}* → {_md(item.fact.tail)}  "
                f"(graph fact; {_md(why)}; from {_md(titles)})")
    snippet = item.text[:SNIPPET_CHARS] + ("…" if len(item.text) > SNIPPET_CHARS else "")
    how = found_by(item)
    why += f"; found by {how}" if how else ""
    return f"- **\\[{number}\\]** {anchor}**{_md(item.title)}** ({_md(why)}; {_code(item.chunk_id)}): {_md(snippet)}"


def facts_subgraph(answer: Answer) -> Subgraph:
    """The answer's facts as a small graph (no database call: the facts carry their names)."""
    nodes: dict[str, dict] = {}
    edges = []
    for ranked in answer.facts:
        fact = ranked.fact
        nodes.setdefault(fact.head_key, {"key": fact.head_key, "name": fact.head, "type": "ENTITY"})
        nodes.setdefault(fact.tail_key, {"key": fact.tail_key, "name": fact.tail, "type": "ENTITY"})
        edges.append({"head": fact.head_key, "relation": fact.relation, "tail": fact.tail_key,
                      "confidence": fact.confidence})
    return Subgraph(list(nodes.values()), edges)


def facts_picture(answer: Answer, folder: Path, keep: int = 200) -> Path | None:
    """The answer's facts drawn as a PNG in ``folder``, which keeps only the newest ``keep``
    pictures (Gradio serves a copy from its own cache, so an older one is never needed again).
    Each picture has a name of its own (two users asking the same question get two files), and
    a picture that cannot be drawn is left out (logged): the answer is shown without it."""
    if not answer.facts:
        return None
    from indexing.graph_render import draw_subgraph

    try:
        folder.mkdir(parents=True, exist_ok=True)
        drawn = draw_subgraph(facts_subgraph(answer), folder / f"facts-{uuid.uuid4().hex}.png",
                              title=f"facts used ({answer.domain or 'all domains'})")
    except Exception:  # a picture is an extra: never lose the answer over it
        log.exception("drawing the facts picture failed; the answer is shown without it")
        return None
    try:
        prune_pictures(folder, keep)
    except OSError as exc:  # the next answer prunes again
        log.warning("could not prune the facts pictures in %s: %s", folder, exc)
    return drawn


def prune_pictures(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` facts pictures in ``folder``."""
    pictures = []
    for path in folder.glob("facts-*.png"):
        try:
            pictures.append((path.stat().st_mtime, path))
        except OSError:
            continue  # removed by a concurrent prune
    for _, path in sorted(pictures, reverse=True)[keep:]:
        path.unlink(missing_ok=True)


def answer_json(answer: Answer) -> dict:
    return {
        "text": answer.text, "sentences": [sentence.as_json() for sentence in answer.sentences],
        "domain": answer.domain, "confidence": round(answer.confidence, 4),
        "route_scores": answer.route.scores if answer.route else {}, "adapter": answer.adapter,
        "abstained": answer.abstained, "degraded": answer.degraded, "notes": answer.notes, "error": answer.error,
        "facts": [{"number": answer.evidence_number(f), "head": f.fact.head, "relation": f.fact.relation,
                   "tail": f.fact.tail, "confidence": f.fact.confidence, "chunk_ids": list(f.fact.chunk_ids),
                   "doc_ids": list(f.fact.doc_ids), "titles": list(f.titles)} for f in answer.facts],
        "passages": [{"number": answer.evidence_number(p), "chunk_id": p.chunk_id, "doc_id": p.doc_id,
                      "title": p.title, "text": p.text, "score": p.score, "dense_rank": p.dense_rank,
                      "lexical_rank": p.lexical_rank, "walk_rank": p.walk_rank} for p in answer.passages],
        "walk": [{"kind": n.kind, "name": n.name, "score": round(n.score, 5), "doc_id": n.doc_id} for n in answer.walk],
        "bridge": {"entity": answer.bridge.entity, "query": answer.bridge.query} if answer.bridge else None,
        "timings": {k: round(v, 4) for k, v in answer.timings.items()},
        "cpu": {k: round(v, 4) for k, v in answer.cpu.items()},
    }


def jobs_markdown(status: dict, width: int = 20) -> str:
    """The admin status's jobs as text progress bars, newest first."""
    jobs = list(reversed(status.get("jobs", [])))
    if not jobs:
        return f"No jobs yet. Graph: {status.get('graph', '?')}; memory {status.get('memory_mb', 0):.0f} MB."
    lines = [f"Graph: {status.get('graph', '?')}; memory {status.get('memory_mb', 0):.0f} MB; "
             f"{status.get('jobs_pending', 0)} job(s) queued or running.", ""]
    for job in jobs:
        filled = round(width * job["progress"])
        bar = "█" * filled + "░" * (width - filled)
        lines.append(f"- {_code(job['id'])} {_md(job['target'])}: `{bar}` {job['progress'] * 100:.0f}% "
                     f"**{job['status']}** {_md(job['message'])}")
        if job["status"] in ("done", "failed") and job.get("result"):
            # One line: a blank line would end the HTML block and let the rest render as Markdown.
            result = html.escape(job["result"]).replace("\n", "&#10;")
            lines.append(f"  <details><summary>result</summary><pre>{result}</pre></details>")
    return "\n".join(lines)


# Every ASCII punctuation character may be backslash-escaped in CommonMark, and an escaped one is
# shown as itself: escaping all of them leaves no link, image, autolink ("https\://", "www\."),
# HTML tag, entity, emphasis or code span in text that came from a corpus, an upload or the model.
_MARKDOWN_ESCAPES = {ord(char): "\\" + char for char in string.punctuation}


def _md(text: str) -> str:
    """Text shown inside Markdown, exactly as it is: every punctuation character escaped, and runs
    of whitespace (a blank line would end the list item and start a new block) made one space."""
    return " ".join(str(text).split()).translate(_MARKDOWN_ESCAPES)


def _code(text: str) -> str:
    """Text shown as inline code. A code span shows what is inside as it is, but a backtick would end
    it early and a blank line would end its paragraph, letting the rest render as Markdown, so both
    go: backticks become quotes and whitespace runs one space."""
    return "`" + " ".join(str(text).split()).replace("`", "'") + "`"
