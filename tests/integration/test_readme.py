"""The README's Python examples, and the documentation's examples marked runnable, run as written.

Every ``python`` block of README.md runs, and every block in docs/ whose fence follows a ``<!-- runnable -->`` line
(the other blocks there are fragments that use a ``store`` defined elsewhere). Each runs in a fresh interpreter,
as a user would paste it into a file, against the session's PostgreSQL: in a database of its own, reached through
``DATABASE_URL``, so the examples written for the embedded default find it there and cannot see each other's
tables. A block passes when it exits with status 0, prints something, and prints nothing alarming on stderr.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MARKER = "<!-- runnable -->"
# Anything of this kind on stderr fails the example: a traceback (also one printed at exit by a background task
# or a logger), asyncio's complaints about tasks and coroutines left behind, errors ignored in __del__ or at exit,
# and Python warnings.
ALARMING = re.compile(
    r"Traceback|Task was destroyed|Exception ignored|was never awaited|Unclosed|\b\w*(?:Error|Warning)\b:"
)
TIMEOUT = 240

_OPENING = re.compile(r"^(`{3,})[ \t]*(\w*)")


@dataclass(frozen=True)
class Example:
    where: str  # file:line of the fence, for the test id and messages
    code: str


@dataclass(frozen=True)
class _Block:
    line: int  # of the opening fence, from 1
    last: int  # of the closing fence
    language: str
    code: str
    marked: bool  # the line before the fence is the marker


def _fenced_blocks(text: str) -> list[_Block]:
    """The top-level fenced code blocks of a Markdown text; a block inside a longer fence is content, not a block."""
    lines = text.split("\n")
    blocks = []
    number = 0
    while number < len(lines):
        opening = _OPENING.match(lines[number])
        if opening is None:
            number += 1
            continue
        fence, language = opening.groups()
        end = number + 1
        while end < len(lines) and not (lines[end].startswith(fence) and not lines[end].strip().strip("`")):
            end += 1
        marked = number > 0 and lines[number - 1].strip() == MARKER
        code = "\n".join(lines[number + 1 : end]) + "\n"
        blocks.append(_Block(number + 1, end + 1, language, code, marked))
        number = end + 1
    return blocks


def _blocks(path: Path, *, marked_only: bool) -> list[Example]:
    where = path.relative_to(ROOT).as_posix()
    return [
        Example(f"{where}:{block.line}", block.code)
        for block in _fenced_blocks(path.read_text())
        if block.language == "python" and (block.marked or not marked_only)
    ]


def readme_examples() -> list[Example]:
    return _blocks(README, marked_only=False)


def docs_examples() -> list[Example]:
    return [example for path in sorted(DOCS.rglob("*.md")) for example in _blocks(path, marked_only=True)]


def unique_examples() -> list[Example]:
    """README first, then the docs; a block that repeats one already listed (the home page repeats the README's
    three examples) runs once."""
    seen: set[str] = set()
    unique = []
    for example in readme_examples() + docs_examples():
        if example.code not in seen:
            seen.add(example.code)
            unique.append(example)
    return unique


EXAMPLES = unique_examples()


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    if parts.scheme in ("postgresql", "postgres"):
        return urlunsplit(parts._replace(path=f"/{database}"))
    return f"{dsn} dbname={database}"  # a key=value DSN: the last dbname wins


def _run_sql(dsn: str, statement: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture
def example_dsn(pg_dsn: str) -> Iterator[str]:
    """A new, empty database on the session's server, dropped afterwards."""
    name = f"example_{uuid.uuid4().hex[:12]}"
    try:
        _run_sql(pg_dsn, f'CREATE DATABASE "{name}"')
    except asyncpg.InsufficientPrivilegeError:
        pytest.skip("the examples run in a database of their own: the test server's role may not create one")
    yield _with_database(pg_dsn, name)
    _run_sql(pg_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_readme_has_the_three_examples() -> None:
    examples = readme_examples()
    assert len(examples) == 3, [example.where for example in examples]
    core, langchain, llamaindex = (example.code for example in examples)
    assert "from pgvecstore import PgVectorStore" in core
    assert "from langchain_pgvecstore import PgVecStore" in langchain
    assert "from llama_index.vector_stores.pgvecstore import PgVecStore" in llamaindex


def test_the_home_page_shows_the_readme_examples() -> None:
    home = [example.code for example in _blocks(DOCS / "index.md", marked_only=True)]
    assert home == [example.code for example in readme_examples()]


def test_every_runnable_marker_is_followed_by_a_python_block() -> None:
    for path in sorted(DOCS.rglob("*.md")):
        text = path.read_text()
        blocks = _fenced_blocks(text)
        languages = {block.line: block.language for block in blocks}
        for number, line in enumerate(text.split("\n"), 1):
            inside = any(block.line <= number <= block.last for block in blocks)
            if line.strip() == MARKER and not inside:
                where = f"{path.relative_to(ROOT)}:{number}"
                assert languages.get(number + 1) == "python", f"{where}: {MARKER} is not followed by a python block"
    assert len(docs_examples()) >= 5


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.where for example in EXAMPLES])
def test_example_runs_as_written(example: Example, example_dsn: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(example.code)
    env = {**os.environ, "DATABASE_URL": example_dsn}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    report = f"{example.where} exited with {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert done.returncode == 0, report
    assert done.stdout.strip(), f"{example.where} printed nothing\n{report}"
    alarming = ALARMING.search(done.stderr)
    assert alarming is None, f"{example.where} printed {alarming.group(0)!r} on stderr\n{report}"
