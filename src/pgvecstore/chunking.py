"""Loading text, Markdown and HTML files and cutting them into chunks for ``pgvecstore ingest``.

A document becomes a list of blocks (headings and paragraphs; code blocks and ``<pre>`` stay whole), and the
blocks are packed into chunks: a paragraph of at least `min_chars` characters is a chunk of its own, shorter ones
(a heading, a list line) join the paragraphs after them, a heading starts a new chunk, and a paragraph longer than
`max_chars` is cut at sentence ends (at spaces for a sentence that is still too long). So a chunk is usually one
paragraph, with its heading when it opens a section.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from pgvecstore.errors import InvalidInputError

FORMATS: dict[str, str] = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
}
DEFAULT_MAX_CHARS = 1000
DEFAULT_MIN_CHARS = 200


@dataclass(frozen=True)
class Block:
    """A heading or a paragraph of a document."""

    text: str
    is_heading: bool = False


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: its text, its position in the document and the heading of its section."""

    text: str
    index: int
    heading: str | None = None


@dataclass(frozen=True)
class LoadedDocument:
    """A file read and split into blocks; `sha256` is the digest of its bytes."""

    path: Path
    format: str
    title: str | None
    blocks: tuple[Block, ...]
    sha256: str

    @property
    def text(self) -> str:
        return "\n\n".join(block.text for block in self.blocks)


# -- files ---------------------------------------------------------------------------------------------------
def find_files(paths: Iterable[str | Path]) -> list[Path]:
    """The supported files among `paths`: files as given, folders searched recursively (hidden entries skipped).

    Raises FileNotFoundError for a path that does not exist and `InvalidInputError` (a ValueError) for a file of
    an unsupported type named explicitly. The result is sorted and free of duplicates.
    """
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for candidate in sorted(path.rglob("*")):
                relative = candidate.relative_to(path).parts
                if any(part.startswith(".") for part in relative):
                    continue
                if candidate.is_file() and candidate.suffix.lower() in FORMATS:
                    found[candidate.resolve()] = None
        elif path.is_file():
            if path.suffix.lower() not in FORMATS:
                raise InvalidInputError(
                    f"{path}: unsupported file type {path.suffix or '(no extension)'!r}; "
                    f"ingest reads {', '.join(sorted(FORMATS))}"
                )
            found[path.resolve()] = None
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return sorted(found)


def load_file(path: str | Path) -> LoadedDocument:
    """Read a text, Markdown or HTML file (UTF-8; undecodable bytes are replaced) and split it into blocks."""
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InvalidInputError(
            f"{path}: unsupported file type {path.suffix!r}; ingest reads {', '.join(sorted(FORMATS))}"
        )
    data = path.read_bytes()
    return parse_document(data.decode("utf-8-sig", errors="replace"), kind, path=path,
                          sha256=hashlib.sha256(data).hexdigest())


def parse_document(text: str, kind: str, *, path: Path | None = None, sha256: str | None = None) -> LoadedDocument:
    """Split `text` of format `kind` ('text', 'markdown' or 'html') into blocks."""
    if kind == "text":
        title, blocks = None, text_blocks(text)
    elif kind == "markdown":
        blocks = markdown_blocks(text)
        title = next((b.text for b in blocks if b.is_heading), None)
    elif kind == "html":
        title, blocks = html_blocks(text)
    else:
        raise InvalidInputError(f"unknown document format {kind!r}; use 'text', 'markdown' or 'html'")
    digest = sha256 or hashlib.sha256(text.encode("utf-8")).hexdigest()
    return LoadedDocument(path or Path(), kind, title, tuple(blocks), digest)


# -- formats -------------------------------------------------------------------------------------------------
_BLANK_LINES = re.compile(r"\n\s*\n")


def _clean(text: str) -> str:
    """Collapse runs of whitespace to single spaces."""
    return " ".join(text.split())


def text_blocks(text: str) -> list[Block]:
    """Paragraphs of plain text: separated by blank lines, with line breaks inside a paragraph joined."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [Block(cleaned) for part in _BLANK_LINES.split(text) if (cleaned := _clean(part))]


_ATX_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_LINE_START = re.compile(r"^\s*([-*+]\s|\d+[.)]\s|\||>)")
_THEMATIC_BREAK = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")


def _without_front_matter(lines: list[str]) -> list[str]:
    """The lines after a YAML front matter block, if the text starts with one."""
    if lines and lines[0].strip() == "---":
        for end in range(1, len(lines)):
            if lines[end].strip() in ("---", "..."):
                return lines[end + 1 :]
    return lines


def _paragraph_text(paragraph: list[str]) -> str:
    """Soft line breaks become spaces, as Markdown renders them; list items, table rows and quotes keep theirs."""
    body = ""
    for line in paragraph:
        if body and not _LINE_START.match(line):
            body += " " + line.strip()
        else:
            body += ("\n" if body else "") + line.rstrip()
    return body.strip()


def _fenced_block(lines: list[str], start: int, marker: str) -> tuple[str, int]:
    """The fenced code block opening at line `start`, whole, and the index of the line after its closing fence."""
    code = [lines[start]]
    i = start + 1
    while i < len(lines):
        code.append(lines[i])
        if lines[i].strip().startswith(marker[0] * len(marker)) and not lines[i].strip().strip(marker[0]):
            break
        i += 1
    return "\n".join(code).strip(), i + 1


def markdown_blocks(text: str) -> list[Block]:
    """Headings (ATX ``#`` and setext underlines), paragraphs and fenced code blocks of a Markdown text.

    Front matter is skipped; line breaks inside a paragraph become spaces except before list items, table rows
    and quotes; code blocks stay whole.
    """
    lines = _without_front_matter(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    blocks: list[Block] = []
    paragraph: list[str] = []

    def flush() -> None:
        body = _paragraph_text(paragraph)
        if body:
            blocks.append(Block(body))
        paragraph.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            flush()
            code, i = _fenced_block(lines, i, fence.group(1))
            blocks.append(Block(code))
            continue
        heading = _ATX_HEADING.match(line)
        if heading:
            flush()
            if heading.group(2):
                blocks.append(Block(heading.group(2), is_heading=True))
        elif paragraph and _SETEXT.match(line) and len(paragraph) == 1 and paragraph[0].strip():
            blocks.append(Block(paragraph[0].strip(), is_heading=True))
            paragraph.clear()
        elif not line.strip() or (not paragraph and _THEMATIC_BREAK.match(line)):
            flush()
        else:
            paragraph.append(line)
        i += 1
    flush()
    return blocks


_SKIPPED_TAGS = {"script", "style", "noscript", "template", "svg", "head", "nav", "footer", "iframe", "object"}
_BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "body", "br", "dd", "details", "dialog", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "header", "hr", "html", "li", "main", "ol", "p",
    "section", "summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
}
_HEADING_TAGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _HTMLText(HTMLParser):
    """Collects the visible text of an HTML page as headings and paragraphs (standard library parser)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.title: str | None = None
        self._buffer: list[str] = []
        self._skip_depth = 0
        self._skip_stack: list[str] = []
        self._in_title = False
        self._title_parts: list[str] = []
        self._in_heading = False
        self._pre_depth = 0

    def _flush(self, heading: bool = False) -> None:
        raw = "".join(self._buffer)
        self._buffer.clear()
        text = raw.strip("\n").rstrip() if self._pre_depth else _clean(raw)
        if text:
            self.blocks.append(Block(text, is_heading=heading))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
            return
        if tag in _SKIPPED_TAGS:
            if tag not in _VOID_TAGS:
                self._skip_stack.append(tag)
            return
        if self._skip_stack:
            return
        if tag in _HEADING_TAGS:
            self._flush()
            self._in_heading = True
        elif tag == "pre":
            self._flush()
            self._pre_depth += 1
        elif tag in _BLOCK_TAGS:
            self._flush(self._in_heading)
            if tag == "li":
                self._buffer.append("- ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS and not self._skip_stack:
            self._flush(self._in_heading)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
            return
        if self._skip_stack:
            if tag == self._skip_stack[-1]:
                self._skip_stack.pop()
            elif tag in self._skip_stack:  # unclosed tags inside: unwind to the matching one
                while self._skip_stack and self._skip_stack.pop() != tag:
                    pass
            return
        if tag in _HEADING_TAGS and self._in_heading:
            self._flush(heading=True)
            self._in_heading = False
        elif tag == "pre" and self._pre_depth:
            self._flush()
            self._pre_depth -= 1
        elif tag in _BLOCK_TAGS:
            self._flush(self._in_heading)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title_parts.append(data)
        elif not self._skip_stack:
            self._buffer.append(data)

    def close(self) -> None:
        super().close()
        self._flush(self._in_heading)
        title = _clean("".join(self._title_parts))
        self.title = title or None


def html_blocks(html: str) -> tuple[str | None, list[Block]]:
    """The page title and the visible text of an HTML page as headings and paragraphs.

    Scripts, styles, navigation, footers and the head are dropped; block elements (p, div, li, td, ...) end paragraphs;
    ``<pre>`` keeps its line breaks.
    """
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    title = parser.title or next((b.text for b in parser.blocks if b.is_heading), None)
    return title, parser.blocks


# -- chunking ------------------------------------------------------------------------------------------------
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")


def _split_long(text: str, max_chars: int) -> Iterator[str]:
    """Pieces of at most `max_chars` characters: whole sentences where possible, else cut at spaces."""
    piece = ""
    for sentence in _SENTENCE_END.split(text):
        sentence = sentence.strip()
        if not sentence:
            continue
        while len(sentence) > max_chars:
            if piece:
                yield piece
                piece = ""
            cut = sentence.rfind(" ", 0, max_chars + 1)
            cut = cut if cut > 0 else max_chars
            yield sentence[:cut].rstrip()
            sentence = sentence[cut:].lstrip()
        if piece and len(piece) + 1 + len(sentence) > max_chars:
            yield piece
            piece = ""
        piece = f"{piece} {sentence}" if piece else sentence
    if piece:
        yield piece


def chunk_blocks(
    blocks: Iterable[Block], max_chars: int = DEFAULT_MAX_CHARS, min_chars: int = DEFAULT_MIN_CHARS
) -> list[Chunk]:
    """Pack blocks into chunks (see the module docstring); indexes count from 0 in document order."""
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 50:
        raise InvalidInputError(f"max_chars (the chunk size) must be an integer of at least 50, got {max_chars!r}")
    if isinstance(min_chars, bool) or not isinstance(min_chars, int) or not 0 <= min_chars <= max_chars:
        raise InvalidInputError(
            f"min_chars must be an integer between 0 and max_chars ({max_chars}), got {min_chars!r}"
        )
    texts: list[tuple[str, str | None]] = []
    current: list[str] = []
    heading: str | None = None
    has_body = False  # whether `current` holds more than headings

    def flush() -> None:
        nonlocal has_body
        if current:
            texts.append(("\n\n".join(current), heading))
            current.clear()
        has_body = False

    for block in blocks:
        if block.is_heading:
            if has_body:  # a heading opens a new chunk; consecutive headings stay together
                flush()
            heading = block.text
            current.append(block.text)
            continue
        size = sum(len(part) + 2 for part in current)
        if current and (size >= min_chars or size + len(block.text) > max_chars):
            flush()
        if len(block.text) <= max_chars - sum(len(part) + 2 for part in current):
            current.append(block.text)
            has_body = True
            continue
        pieces = list(_split_long(block.text, max_chars))
        if current and len(pieces[0]) + sum(len(part) + 2 for part in current) > max_chars:
            flush()
        for piece in pieces:
            current.append(piece)
            flush()
    flush()
    return [Chunk(text, index, section) for index, (text, section) in enumerate(texts)]


def chunk_document(
    document: LoadedDocument, max_chars: int = DEFAULT_MAX_CHARS, min_chars: int = DEFAULT_MIN_CHARS
) -> list[Chunk]:
    """The chunks of a loaded document."""
    return chunk_blocks(document.blocks, max_chars, min_chars)


def demo_corpus_path() -> Path:
    """The folder of the small corpus shipped with pgvecstore for ``pgvecstore demo`` and the notebooks."""
    from importlib.resources import files

    return Path(str(files("pgvecstore") / "demo_corpus"))
