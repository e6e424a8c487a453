"""Reading a corpus: a folder of files, or a ``corpus.jsonl``, into :class:`Document` objects.

Formats: ``.txt``, ``.md``, ``.html``/``.htm`` (text extracted with selectolax, each table as
pipe rows: one line per ``<tr>``, cells joined by " | "), ``.pdf`` (pypdf), ``.jsonl`` (one
``{"id","domain","title","text"}`` per line). A file that cannot be read is skipped with its path
and the reason; everything else is still read.

Document ids: a file's path relative to the source folder (``aspirin.md``); a JSONL line's
``id`` field. The domain comes from the ``domain`` argument (a flag), else a JSONL line's
``domain`` field, else the source folder's name.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from pypdf import PdfReader
from pypdf.errors import PdfReadError
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from indexing.domain_name import DOMAIN_NAME
from indexing.jsonl import BadJsonLine, numbered_lines, parse_json_line
from indexing.tables import pipe_rows

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf", ".jsonl"}
# Markup that is page furniture, not content.
HTML_BOILERPLATE = "script, style, noscript, nav, header, footer, aside, form, template, svg"
# \A...\Z, not ^...$: "$" also matches before a trailing newline, so "law\n" would pass. Anchored
# both ends so that .match, .fullmatch and .search all check the whole name.
# Curated knowledge placed with a corpus: facts imported into the graph as they are, not documents.
CURATED_TRIPLES_FILES = ("triples.csv", "triples.jsonl")
# lexbor's tree builder walks the whole stack of open elements at every block start tag, so
# parsing is quadratic in nesting depth: 100,000 nested <div>s (600 KB) took 112 s here.
# Chromium's HTML parser nests no deeper than 512 levels; deeper HTML is skipped with a reason.
MAX_HTML_DEPTH = 512
MAX_COLSPAN = 20  # more than a report table spans; a larger colspan counts as this many columns
# A tag's name right after its '<' (possessive, so no later change can make it backtrack). The tag
# scanner below finds what <(/?)([a-zA-Z][a-zA-Z0-9:-]*)[^<>]*?(/?)> would, in linear time: that
# regex backtracks through every shorter name when no '>' follows, so '<' + 20,000 letters took 10 s.
_HTML_TAG_NAME = re.compile(r"/?([a-zA-Z][a-zA-Z0-9:-]*+)")
# Elements that never hold others (void) or are usually left unclosed (optional end tags):
# they do not deepen the estimate, so sloppy but ordinary pages are not refused.
_FLAT_HTML_TAGS = frozenset(
    "area base br col embed hr img input link meta param source track wbr keygen "
    "p li dt dd td th tr option optgroup rb rt rp thead tbody tfoot colgroup caption html head body".split())


class CorpusError(ValueError):
    """The source as a whole cannot be read (missing path, bad domain name)."""


class UnreadableFile(ValueError):
    """One file (or line) cannot be read; the message is the reason shown in the report."""


@dataclass(frozen=True)
class Document:
    id: str
    domain: str
    title: str
    text: str
    source: str  # the path (and line) it came from, for reports


@dataclass(frozen=True)
class Skipped:
    source: str
    reason: str


@dataclass
class CorpusRead:
    documents: list[Document] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    files_seen: int = 0
    curated_files: list[tuple[Path, str]] = field(default_factory=list)  # (triples file, its domain)


def normalise_domain(name: str) -> str:
    domain = re.sub(r"[^a-z0-9_-]+", "-", name.strip().lower()).strip("-")
    if not DOMAIN_NAME.fullmatch(domain):
        raise CorpusError(f"{name!r} is not a usable domain name (letters, digits, '-' or '_', at most 64)")
    return domain


def read_corpus(source: Path, domain: str | None = None, max_file_bytes: int = 20_000_000) -> CorpusRead:
    """Read every supported file under ``source`` (a folder or one file)."""
    source = Path(source)
    if not source.exists():
        raise CorpusError(f"corpus source {source} does not exist")
    forced_domain = normalise_domain(domain) if domain else None
    result = CorpusRead()
    if source.is_file():
        files, root = [source], source.parent
        default_domain = forced_domain or normalise_domain(source.parent.name if source.suffix != ".jsonl" else source.stem)
    else:
        files = sorted(p for p in source.rglob("*") if p.is_file() and not _hidden(p.relative_to(source)))
        root = source
        default_domain = forced_domain or normalise_domain(source.name)
    inside = root.resolve()
    for path in files:
        result.files_seen += 1
        if not path.resolve().is_relative_to(inside):
            # A symbolic link out of the folder: indexing it would serve any file the server can read.
            result.skipped.append(Skipped(str(path), f"a symbolic link to a file outside {source}"))
            continue
        if path.name.lower() in CURATED_TRIPLES_FILES:
            result.curated_files.append((path, default_domain))
            continue
        relative = path.relative_to(root).as_posix()
        try:
            result.documents.extend(_read_file(path, relative, forced_domain, default_domain, max_file_bytes, result))
        except UnreadableFile as exc:
            result.skipped.append(Skipped(str(path), str(exc)))
    return result


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _read_file(path: Path, doc_id: str, forced_domain: str | None, default_domain: str,
               max_file_bytes: int, result: CorpusRead) -> list[Document]:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnreadableFile(f"unsupported file type {suffix or '(none)'!r}")
    size = path.stat().st_size
    if size == 0:
        raise UnreadableFile("empty file (0 bytes)")
    if size > max_file_bytes:
        raise UnreadableFile(f"file is {size} bytes, over the {max_file_bytes}-byte limit")
    data = path.read_bytes()
    domain = forced_domain or default_domain
    if suffix == ".pdf":
        title, text = read_pdf(data, fallback_title=path.stem)
    elif suffix == ".jsonl":
        return _read_jsonl(path, decode_text(data), forced_domain, default_domain, result)
    elif suffix in HTML_SUFFIXES:
        title, text = read_html(decode_text(data), fallback_title=path.stem)
    else:
        title, text = read_plain(decode_text(data), markdown=suffix != ".txt", fallback_title=path.stem)
    return [Document(doc_id, domain, title, text, str(path))]


def decode_text(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise UnreadableFile("binary content (NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"not valid UTF-8 (bad byte at offset {exc.start})") from None


def read_plain(text: str, *, markdown: bool, fallback_title: str) -> tuple[str, str]:
    """Title: the first markdown heading, or a short first line of a text file."""
    lines = text.strip().splitlines()
    title = fallback_title
    if lines:
        first = lines[0].strip()
        if markdown and first.startswith("#"):
            title = first.lstrip("#").strip() or fallback_title
        elif not markdown and 0 < len(first) <= 120:
            title = first
    return title, text


def read_html(html: str, *, fallback_title: str) -> tuple[str, str]:
    if html_depth_exceeds(html, MAX_HTML_DEPTH):
        raise UnreadableFile(f"HTML nested deeper than {MAX_HTML_DEPTH} elements (browsers flatten it there; "
                             "parsing it could take minutes)")
    tree = HTMLParser(html)
    title_node = tree.css_first("title") or tree.css_first("h1")
    title = title_node.text(strip=True) if title_node else ""
    for node in tree.css(HTML_BOILERPLATE):
        node.decompose()
    body = tree.body or tree.root
    if body is None:
        return title or fallback_title, ""
    _tables_as_rows(body)
    # One line per block element so sentences and list items stay apart.
    text = body.text(separator="\n", strip=True)
    return title or fallback_title, text


def _tables_as_rows(body) -> None:
    """Each <table> becomes its pipe rows, one line per <tr>, so chunking keeps a row whole (the
    text extraction below would put every cell on a line of its own). Innermost tables first: an
    inner table is already text when its outer cell is read."""
    for table in reversed(body.css("table")):
        table.replace_with(f"\n{pipe_rows([_row_cells(tr) for tr in table.css('tr')])}\n")


def _row_cells(tr) -> list[str]:
    cells: list[str] = []
    for cell in tr.css("th, td"):
        cells += [cell.text(separator=" ", strip=True)] + [""] * (_colspan(cell) - 1)
    return cells


def _colspan(cell) -> int:
    """A spanning cell's text goes to its first column and blanks fill the rest, as in the rows
    of report tables; bounded so a hostile colspan cannot blow up a row."""
    span = (cell.attributes.get("colspan") or "").strip()[:4]
    return min(max(int(span), 1), MAX_COLSPAN) if span.isascii() and span.isdigit() else 1


def html_depth_exceeds(html: str, limit: int) -> bool:
    """Whether elements nest deeper than ``limit``, estimated from the tags alone in one linear
    pass (stray end tags never go below zero; ``<x/>`` opens nothing)."""
    depth = 0
    for closing, name, self_closing in HtmlTagScanner(html).tags():
        if self_closing or name.lower() in _FLAT_HTML_TAGS:
            continue
        if closing:
            depth = max(0, depth - 1)
        else:
            depth += 1
            if depth > limit:
                return True
    return False


class HtmlTagScanner:
    """The tags of an HTML text as (closing, name, self_closing), found by one forward pass.

    Each '<' and '>' search starts past the previous one and the next '>' is remembered, so no
    character is looked at more than three times (once per search kind and once as part of a
    name); ``examined`` counts them, so tests can bound the work without timing it."""

    def __init__(self, html: str):
        self.html = html
        self.examined = 0

    def tags(self) -> Iterator[tuple[bool, str, bool]]:
        # Local names and one running count: this loop runs once per '<' of pages up to 20 MB.
        html, find, name_at, size = self.html, self.html.find, _HTML_TAG_NAME.match, len(self.html)
        examined, gt = 0, -1  # gt: the first '>' at or after the end of the last name (cached)
        lt = find("<")
        examined += lt + 1 if lt != -1 else size
        try:
            while lt != -1:
                start = lt + 1
                name = name_at(html, start)
                stop = name.end() if name else start + html.startswith("/", start)  # where the match stopped
                examined += min(size, stop + 1) - start
                following = find("<", start)  # a tag is only a tag if its '>' comes before this
                examined += (following + 1 if following != -1 else size) - start
                if name is not None:
                    if gt < stop:
                        gt = find(">", stop)
                        examined += (gt + 1 if gt != -1 else size) - stop
                        if gt == -1:
                            return  # no '>' left: nothing further can be a tag
                    if following == -1 or gt < following:
                        yield name.group().startswith("/"), name.group(1), html[gt - 1] == "/"
                lt = following
        finally:
            self.examined += examined


def read_pdf(data: bytes, *, fallback_title: str) -> tuple[str, str]:
    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata.title if reader.metadata else None) or fallback_title
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, RecursionError) as exc:
        raise UnreadableFile(f"unreadable PDF ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # pypdf raises many internal types on malformed input
        raise UnreadableFile(f"unreadable PDF ({type(exc).__name__}: {exc})") from None
    return str(title), "\n\n".join(pages)


def _read_jsonl(path: Path, text: str, forced_domain: str | None, default_domain: str,
                result: CorpusRead) -> list[Document]:
    documents = []
    for number, line in numbered_lines(text):
        where = f"{path}:{number}"
        try:
            documents.append(_jsonl_document(parse_json_line(line), where, forced_domain, default_domain))
        except (BadJsonLine, UnreadableFile, CorpusError) as exc:
            result.skipped.append(Skipped(where, str(exc)))
    if not text.strip():  # blank lines only: no line would report it
        raise UnreadableFile("no JSON lines (only blank lines)")
    return documents


def _jsonl_document(row: object, where: str, forced_domain: str | None, default_domain: str) -> Document:
    if not isinstance(row, dict):
        raise UnreadableFile("a line must be a JSON object with id and text")
    doc_id, text = row.get("id"), row.get("text")
    if not isinstance(doc_id, (str, int)) or str(doc_id).strip() == "":
        raise UnreadableFile("missing 'id'")
    if not isinstance(text, str):
        raise UnreadableFile("missing or non-string 'text'")
    domain = forced_domain or (normalise_domain(row["domain"]) if isinstance(row.get("domain"), str) else default_domain)
    title = row.get("title") if isinstance(row.get("title"), str) else str(doc_id)
    return Document(str(doc_id), domain, title, text, where)
