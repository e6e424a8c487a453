"""An Answer as people read it: the one-line header, the evidence as Markdown, the facts'
picture, and a plain JSON form for API clients. No Gradio here and no model or database work."""

from __future__ import annotations

import html
import string
from pathlib import Path

from assistant.pipeline import Answer
from indexing.graph_store import Subgraph

SNIPPET_CHARS = 280


def answer_header(answer: Answer) -> str:
    where = answer.domain or "all domains (no clear domain: base model)"
    adapter = answer.adapter or "base model"
    line = f"**Domain:** {_md(where)} · **confidence** {answer.confidence:.2f} · **adapter:** {_md(adapter)}"
    if answer.degraded:
        line = "⚠️ **Degraded:** the knowledge graph is unavailable; this answer uses passages only.  \n" + line
    return line


def for_chat(text: str) -> str:
    """A question or an answer as the chat shows it: as plain text. The Chatbot renders HTML even
    with Markdown off, so an <img> in a question, or in an answer that echoes one, would make the
    browser fetch from anywhere; escaped, it shows as the text it is."""
    return html.escape(text, quote=False)


def from_chat(text: str) -> str:
    """What :func:`for_chat` showed, back as the text that was typed (the history a client sends)."""
    return html.unescape(text)


def evidence_markdown(answer: Answer) -> str:
    parts: list[str] = []
    if answer.notes:
        parts += [f"> {_md(note)}" for note in answer.notes] + [""]
    if answer.facts:
        parts += ["**Graph facts**", ""]
        for fact in answer.facts:
            relation = fact.fact.relation.replace("_", " ")
            titles = ", ".join(fact.titles) or "-"
            parts.append(f"{answer.evidence_number(fact)}. {_md(fact.fact.head)} – *{_md(relation)}* → "
                         f"{_md(fact.fact.tail)}  (confidence {fact.fact.confidence:.2f}; from {_md(titles)})")
        parts.append("")
    if answer.passages:
        parts += ["**Passages**", ""]
        for passage in answer.passages:
            snippet = passage.text[:SNIPPET_CHARS] + ("…" if len(passage.text) > SNIPPET_CHARS else "")
            parts.append(f"{answer.evidence_number(passage)}. **{_md(passage.title)}** (score {passage.score:.4f}, "
                         f"{_code(passage.chunk_id)}): {_md(snippet)}")
    if not parts:
        return "No evidence was used for this answer."
    timings = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in answer.timings.items())
    return "\n".join(parts + ["", f"*{timings}*"])


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
    pictures (Gradio serves a copy from its own cache, so an older one is never needed again)."""
    if not answer.facts:
        return None
    from indexing.graph_render import draw_subgraph

    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"facts-{abs(hash((answer.text, len(answer.facts)))) % 10**12}.png"
    drawn = draw_subgraph(facts_subgraph(answer), out, title=f"facts used ({answer.domain or 'all domains'})")
    prune_pictures(folder, keep)
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
        "text": answer.text, "domain": answer.domain, "confidence": round(answer.confidence, 4),
        "route_scores": answer.route.scores if answer.route else {}, "adapter": answer.adapter,
        "abstained": answer.abstained, "degraded": answer.degraded, "notes": answer.notes, "error": answer.error,
        "facts": [{"number": answer.evidence_number(f), "head": f.fact.head, "relation": f.fact.relation,
                   "tail": f.fact.tail, "confidence": f.fact.confidence, "chunk_ids": list(f.fact.chunk_ids),
                   "doc_ids": list(f.fact.doc_ids), "titles": list(f.titles)} for f in answer.facts],
        "passages": [{"number": answer.evidence_number(p), "chunk_id": p.chunk_id, "doc_id": p.doc_id,
                      "title": p.title, "text": p.text, "score": p.score} for p in answer.passages],
        "timings": {k: round(v, 4) for k, v in answer.timings.items()},
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
