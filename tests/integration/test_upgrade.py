"""Layout versions and the online upgrade (issues 19 and 16): tables of the pgvecstore 0.1.0 and 0.2 layouts, built
with those versions' DDL (tests/layout_v010.py, tests/layout_v020.py), open with the current store, keep serving
vector search, and after `upgrade()` answer vector, text and hybrid searches with every row intact and term
statistics equal to those of the same rows written into a fresh table; interrupted upgrades resume; a second
upgrade does nothing; tenants, row-level security, writers during the count (deletes of rows not counted yet
included), the recount and the command line."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from tests.dsn import dsn_as
from tests.layout_v010 import TABLE, OldRow, create_v010_table, scifact_rows
from tests.layout_v020 import make_v020

from pgvecstore import PermissionDeniedError, PgVectorStore, SchemaMismatchError

StoreMaker = Callable[..., PgVectorStore]
FRESH = "fresh_embeddings"
QUERIES = ("white matter diffusion", "cancer cells tumor", "protein expression in mice", "vitamin D")
ROW_COLUMNS = "id, domain_id, document_id, chunk_index, content, embedding::text, metadata, created_at"


class Interrupt(Exception):
    """Raised by a progress callback to stop an upgrade part-way."""


async def rows_of(admin: asyncpg.Connection, schema: str, table: str = TABLE) -> list[tuple[Any, ...]]:
    """Every row as a user would check it: ids, vectors, content, metadata, document, chunk, creation time."""
    return [tuple(r) for r in await admin.fetch(f'SELECT {ROW_COLUMNS} FROM "{schema}"."{table}" ORDER BY id')]


async def statistics(admin: asyncpg.Connection, schema: str, table: str) -> tuple[set[Any], set[Any]]:
    terms = await admin.fetch(f'SELECT lexeme, domain_key, df FROM "{schema}"."{table}_text_terms"')
    docs = await admin.fetch(f'SELECT domain_key, n, total_len FROM "{schema}"."{table}_text_docs"')
    return {tuple(r) for r in terms}, {tuple(r) for r in docs}


async def recount(admin: asyncpg.Connection, schema: str, table: str = TABLE) -> tuple[set[Any], set[Any]]:
    """The statistics counted again from the rows' tsvectors (a row's length: its distinct lexemes)."""
    t = f'"{schema}"."{table}"'
    terms = await admin.fetch(
        f"SELECT u.lexeme, coalesce(t.domain_id, ''), count(*) FROM {t} AS t, "
        "unnest(tsvector_to_array(t.content_tsv)) AS u(lexeme) GROUP BY 1, 2")
    docs = await admin.fetch(
        f"SELECT coalesce(t.domain_id, ''), count(*), coalesce(sum(length(t.content_tsv)), 0)::bigint "
        f"FROM {t} AS t GROUP BY 1")
    return {tuple(r) for r in terms}, {tuple(r) for r in docs}


async def assert_exact(admin: asyncpg.Connection, schema: str) -> None:
    """Every row's tsvector is its content's, layout 2's term-frequency column is gone, and the statistics equal a
    recount."""
    stale = await admin.fetchval(
        f'SELECT count(*) FROM "{schema}"."{TABLE}" '
        "WHERE content_tsv IS DISTINCT FROM to_tsvector('english', coalesce(content, ''))")
    assert stale == 0
    assert not await admin.fetchval(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 "
        "AND column_name = 'content_tsv_tf'", schema, TABLE)
    assert await statistics(admin, schema, TABLE) == await recount(admin, schema)


async def comment(admin: asyncpg.Connection, schema: str, table: str = TABLE) -> str | None:
    return await admin.fetchval(f"SELECT obj_description('\"{schema}\".\"{table}\"'::regclass, 'pg_class')")


async def fresh_copy(make_store: StoreMaker, rows: Sequence[OldRow]) -> None:
    """The same rows written by the current store into a new table of the current layout."""
    for domain in sorted({r.domain_id or "" for r in rows}):
        mine = [r for r in rows if (r.domain_id or "") == domain]
        store = make_store(table_name=FRESH, dimensions=len(rows[0].embedding), id_type="text",
                           domain_id=domain or None)
        await store.add_vectors([r.embedding for r in mine], ids=[r.id for r in mine],
                                contents=[r.content for r in mine], metadata=[r.metadata for r in mine],
                                document_ids=[r.document_id for r in mine],
                                chunk_indexes=[r.chunk_index for r in mine])


async def assert_same_text_scores(make_store: StoreMaker, rows: Sequence[OldRow]) -> None:
    """Text search on the upgraded table scores every query as on the fresh table, per domain."""
    for domain in sorted({r.domain_id or "" for r in rows}):
        upgraded = make_store(id_type="text", domain_id=domain or None)
        fresh = make_store(table_name=FRESH, id_type="text", domain_id=domain or None)
        found = 0
        for query in QUERIES:
            got = [(h.id, round(h.score, 9)) for h in await upgraded.search(query_text=query, mode="text", k=10)]
            want = [(h.id, round(h.score, 9)) for h in await fresh.search(query_text=query, mode="text", k=10)]
            assert got == want, query
            found += len(got)
        assert found >= 3, domain  # the queries find rows in every domain


@pytest.mark.parametrize("domains", [(None,), ("a", "b")], ids=["no-domain", "two-domains"])
async def test_a_0_1_table_opens_upgrades_and_keeps_every_row(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str, scifact_dir: Path,
    domains: tuple[str | None, ...],
) -> None:
    rows = scifact_rows(scifact_dir, domains=domains)
    await create_v010_table(admin, schema, rows)
    before = await rows_of(admin, schema)
    store = make_store(id_type="text")
    query = rows[3].embedding
    assert [h.id for h in await store.search(query, k=1)] == ["doc-003"]  # vector search works on layout 1
    with pytest.raises(SchemaMismatchError, match=r"layout 1.*await store\.upgrade\(\).*pgvecstore upgrade"):
        await store.search(query_text="white matter", mode="text")
    with pytest.raises(SchemaMismatchError, match=r"store\.upgrade\(\)"):
        await store.search(query, mode="hybrid", query_text="white matter")
    assert await comment(admin, schema) is None  # opening wrote nothing

    result = await store.upgrade()
    assert (result.from_layout, result.to_layout, result.rows_counted) == (1, 3, 50)
    assert "counted the text statistics of 50 rows" in result.steps
    assert await comment(admin, schema) == "pgvecstore layout 3"
    assert await rows_of(admin, schema) == before
    assert await admin.fetchval(
        "SELECT is_generated FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 "
        "AND column_name = 'content_tsv'", schema, TABLE) == "NEVER"
    for column in ("embedding", "metadata", "content_tsv"):
        assert await admin.fetchval(
            "SELECT attstorage FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2",
            f'"{schema}"."{TABLE}"', column) == b"m", column
    assert [h.id for h in await store.search(query, k=1)] == ["doc-003"]
    assert await store.index_info() == "hnsw"
    assert len(await store.search(query, mode="hybrid", query_text="white matter", k=5)) == 5
    await assert_exact(admin, schema)
    await fresh_copy(make_store, rows)
    assert await statistics(admin, schema, TABLE) == await statistics(admin, schema, FRESH)
    await assert_same_text_scores(make_store, rows)

    again = await store.upgrade()  # twice in a row: the second does nothing
    assert (again.changed, again.steps, again.rows_counted, again.from_layout) == (False, (), 0, 3)
    assert await rows_of(admin, schema) == before


@pytest.mark.parametrize("domains", [(None,), ("a", "b")], ids=["no-domain", "two-domains"])
async def test_a_0_2_table_upgrades_and_scores_as_a_fresh_one(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str, scifact_dir: Path,
    domains: tuple[str | None, ...],
) -> None:
    """A layout-2 table (term-frequency column, statistics whose lengths are token counts) serves vector search
    and says text search needs upgrade(); after it, the column is gone and the statistics and text scores are
    those of a fresh table of the same rows."""
    rows = scifact_rows(scifact_dir, domains=domains)
    await create_v010_table(admin, schema, rows)
    await make_v020(admin, schema, TABLE)
    before = await rows_of(admin, schema)
    store = make_store(id_type="text")
    assert [h.id for h in await store.search(rows[3].embedding, k=1)] == ["doc-003"]
    with pytest.raises(SchemaMismatchError, match=r"layout 2.*await store\.upgrade\(\)"):
        await store.search(query_text="white matter", mode="text")
    await admin.execute(f'COMMENT ON TABLE "{schema}"."{TABLE}" IS NULL')  # as 0.2.0 left it: read from its parts
    result = await store.upgrade()
    assert (result.from_layout, result.to_layout, result.rows_counted) == (2, 3, 50)
    assert "dropped the term-frequency column" in result.steps
    assert await comment(admin, schema) == "pgvecstore layout 3"
    assert await rows_of(admin, schema) == before
    await assert_exact(admin, schema)
    await fresh_copy(make_store, rows)
    assert await statistics(admin, schema, TABLE) == await statistics(admin, schema, FRESH)
    await assert_same_text_scores(make_store, rows)


async def test_an_interrupted_upgrade_resumes(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str, scifact_dir: Path
) -> None:
    """Stopped after its first step (the progress callback raises), then cancelled, the upgrade leaves a table that
    serves vector search and says text search waits for it; the next run counts again and finishes it."""
    rows = scifact_rows(scifact_dir, domains=("a", "b"))
    await create_v010_table(admin, schema, rows)
    before = await rows_of(admin, schema)
    store = make_store(id_type="text")
    seen: list[tuple[int, int]] = []

    def stop_at_first(done: int, total: int) -> None:
        seen.append((done, total))
        raise Interrupt

    with pytest.raises(Interrupt):
        await store.upgrade(batch_size=10, progress=stop_at_first)
    assert seen == [(10, 50)]
    assert await comment(admin, schema) == "pgvecstore layout 1, upgrading to 3"
    assert len(await store.search(rows[0].embedding, k=3)) == 3
    with pytest.raises(SchemaMismatchError, match=r"upgrade to layout 3 is in progress.*upgrade\(\)"):
        await store.search(query_text="white matter", mode="text")

    def cancel_at_first(done: int, total: int) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(store.upgrade(batch_size=10, progress=cancel_at_first))
    assert await comment(admin, schema) == "pgvecstore layout 1, upgrading to 3"

    result = await store.upgrade(batch_size=10)
    assert (result.from_layout, result.rows_counted) == (1, 50)
    assert await comment(admin, schema) == "pgvecstore layout 3"
    assert await rows_of(admin, schema) == before
    await assert_exact(admin, schema)
    await fresh_copy(make_store, rows)
    await assert_same_text_scores(make_store, rows)


async def test_writers_during_the_count_leave_exact_statistics(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str, scifact_dir: Path
) -> None:
    """After an interrupted upgrade (triggers on, count unfinished) and while the count runs (a writer task),
    inserts, content, metadata and domain updates, deletes of rows the count has or has not read yet, and a whole
    domain emptied and filled again leave the statistics equal to a recount once the upgrade finishes. Deletes of
    rows not counted yet take the statistics below zero, and those entries must stay (not be pruned as empty)."""
    rows = scifact_rows(scifact_dir, domains=("a", "b"))
    await create_v010_table(admin, schema, rows)
    owner = make_store(id_type="text")
    writers = {d: make_store(id_type="text", domain_id=d) for d in ("a", "b")}

    def stop(done: int, total: int) -> None:
        raise Interrupt

    with pytest.raises(Interrupt):
        await owner.upgrade(batch_size=10, progress=stop)  # the triggers count writes; the rows are not counted
    a, b = writers["a"], writers["b"]
    await a.add_vectors([rows[20].embedding], ids=["doc-020"], contents=["river stone garden"])  # new text
    await b.update_metadata(["doc-021"], [{"moved": True}])  # same text: the statistics do not move
    await a.delete_vectors(["doc-022", "doc-002"])
    await b.add_vectors([rows[1].embedding], ids=["new-1"], contents=["a brand new candle"])
    await admin.execute(f'UPDATE "{schema}"."{TABLE}" SET domain_id = \'b\' WHERE id = \'doc-024\'')  # moved
    b_ids = [r[0] for r in await admin.fetch(f'SELECT id FROM "{schema}"."{TABLE}" WHERE domain_id = \'b\'')]
    await b.delete_vectors(b_ids)  # domain b emptied: its counts go below zero until the count is added
    terms, docs = await statistics(admin, schema, TABLE)
    assert {d[0]: d[1] for d in docs}["b"] < 0 and any(df < 0 for lexeme, domain, df in terms if domain == "b")
    await b.add_vectors([rows[2].embedding], ids=["b-again"], contents=["candle river"])

    async def write_while_upgrading(done: asyncio.Event) -> None:
        i = 0
        while not done.is_set():
            store = writers["ab"[i % 2]]
            await store.add_vectors([rows[i % 50].embedding], ids=[f"w-{i}"], contents=[f"lantern meadow {i}"])
            await store.delete_vectors([f"doc-{49 - i % 20:03d}"])
            await store.update_metadata([f"doc-{30 + i % 15:03d}"], [{"i": i}])
            i += 1
            await asyncio.sleep(0)

    finished = asyncio.Event()
    writer = asyncio.create_task(write_while_upgrading(finished))
    try:
        await owner.upgrade(batch_size=2)
    finally:
        finished.set()
        await writer
    await assert_exact(admin, schema)
    assert await owner.search(query_text="lantern meadow", mode="text")


async def test_recompute_terms_counts_the_statistics_again(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str, scifact_dir: Path
) -> None:
    """upgrade(recompute_terms=True) on a current table counts its statistics again from the rows (here after
    they were damaged by hand), online, in steps."""
    rows = scifact_rows(scifact_dir, n=20)
    await create_v010_table(admin, schema, rows)
    store = make_store(id_type="text")
    await store.upgrade()
    t = f'"{schema}"."{TABLE}_text'
    await admin.execute(f'UPDATE {t}_terms" SET df = df + 7 WHERE lexeme = \'cell\'')
    await admin.execute(f'UPDATE {t}_docs" SET total_len = 1')
    seen: list[tuple[int, int]] = []
    result = await store.upgrade(recompute_terms=True, batch_size=6, progress=lambda d, n: seen.append((d, n)))
    assert result.rows_counted == 20 and "counted the text statistics of 20 rows" in result.steps
    assert seen == [(6, 20), (12, 20), (18, 20), (20, 20)]
    assert await comment(admin, schema) == "pgvecstore layout 3"
    await assert_exact(admin, schema)
    await fresh_copy(make_store, rows)
    await assert_same_text_scores(make_store, rows)


async def test_enable_text_search_finishes_an_interrupted_upgrade_offline(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str, scifact_dir: Path
) -> None:
    rows = scifact_rows(scifact_dir, n=20)
    await create_v010_table(admin, schema, rows)
    store = make_store(id_type="text")

    def stop(done: int, total: int) -> None:
        raise Interrupt

    with pytest.raises(Interrupt):
        await store.upgrade(batch_size=5, progress=stop)
    assert await store.enable_text_search() is True
    assert await comment(admin, schema) == "pgvecstore layout 3"
    await assert_exact(admin, schema)
    assert await store.search(query_text="cells", mode="text")
    assert not (await store.upgrade()).changed


async def test_enable_text_search_converts_a_0_2_table_offline(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str, scifact_dir: Path
) -> None:
    rows = scifact_rows(scifact_dir, n=20, domains=("a", "b"))
    await create_v010_table(admin, schema, rows)
    await make_v020(admin, schema, TABLE)
    store = make_store(id_type="text")
    assert await store.enable_text_search() is True
    assert await comment(admin, schema) == "pgvecstore layout 3"
    await assert_exact(admin, schema)
    assert not (await store.upgrade()).changed
    await fresh_copy(make_store, rows)
    await assert_same_text_scores(make_store, rows)


async def test_two_upgrades_at_once_count_once(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str, scifact_dir: Path
) -> None:
    rows = scifact_rows(scifact_dir, n=30)
    await create_v010_table(admin, schema, rows)
    first, second = await asyncio.gather(make_store(id_type="text").upgrade(batch_size=5),
                                         make_store(id_type="text").upgrade(batch_size=5))
    assert sorted([first.rows_counted, second.rows_counted]) == [0, 30]
    assert sorted([first.changed, second.changed]) == [False, True]  # the second waited, then found it done
    await assert_exact(admin, schema)


async def test_an_invalid_text_index_is_built_again_and_the_configuration_kept(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str, scifact_dir: Path
) -> None:
    """A GIN index left INVALID (as by an interrupted CREATE INDEX CONCURRENTLY) is dropped and built again; the
    0.1 column's text-search configuration ('simple' here) is the one the row trigger keeps using."""
    rows = scifact_rows(scifact_dir, n=12)
    await create_v010_table(admin, schema, rows, config="simple")
    index = f"{TABLE}_content_tsv_gin_idx"
    await admin.execute(
        f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '\"{schema}\".\"{index}\"'::regclass")
    store = make_store(id_type="text")
    result = await store.upgrade()
    assert "dropped an invalid text-search index" in result.steps
    assert "built the text-search index concurrently" in result.steps
    assert await admin.fetchval(
        f"SELECT indisvalid FROM pg_index WHERE indexrelid = '\"{schema}\".\"{index}\"'::regclass") is True
    # 'simple' keeps stop words: "the" is counted as a term.
    assert await admin.fetchval(
        f'SELECT df FROM "{schema}".{TABLE}_text_terms WHERE lexeme = \'the\'') is not None
    assert await store.search(query_text="the", mode="text")


async def test_a_current_table_without_a_record_gets_one_and_nothing_else(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str
) -> None:
    """A table with every part of layout 3 but no comment is read as layout 3, and upgrade() only records it."""
    store = make_store(dimensions=3, id_type="text")
    await store.add_vectors([[1.0, 0.0, 0.0]], ids=["x"], contents=["a lantern by the river"])
    await admin.execute(f'COMMENT ON TABLE "{schema}"."{TABLE}" IS NULL')
    before = await statistics(admin, schema, TABLE)
    reopened = make_store(id_type="text")
    assert [h.id for h in await reopened.search(query_text="lantern", mode="text")] == ["x"]
    result = await reopened.upgrade()
    assert (result.from_layout, result.rows_counted, result.steps) == (3, 0, ("recorded layout 3",))
    assert await comment(admin, schema) == "pgvecstore layout 3"
    assert await statistics(admin, schema, TABLE) == before
    assert not (await reopened.upgrade()).changed


@pytest.fixture
async def tenant_role(admin: asyncpg.Connection, pg_dsn: str) -> AsyncIterator[tuple[str, str]]:
    """A login role that is not the owner and does not bypass row-level security, and its DSN."""
    role, password = f"tenant_{uuid.uuid4().hex[:10]}", secrets.token_hex(16)
    await admin.execute(f"CREATE ROLE \"{role}\" LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '{password}'")
    yield role, dsn_as(pg_dsn, role, password)
    await admin.execute(f'DROP OWNED BY "{role}"')
    await admin.execute(f'DROP ROLE "{role}"')


async def test_row_level_security_tenants_read_their_rows_after_the_upgrade(
    make_store: StoreMaker, admin: asyncpg.Connection, schema: str, scifact_dir: Path,
    tenant_role: tuple[str, str],
) -> None:
    role, dsn = tenant_role
    rows = scifact_rows(scifact_dir, domains=("a", "b"))
    await create_v010_table(admin, schema, rows, row_security=True)
    await admin.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
    await admin.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON "{schema}"."{TABLE}" TO "{role}"')
    tenant = make_store(connection_string=dsn, id_type="text", domain_id="a")
    with pytest.raises(PermissionDeniedError, match=r"only the owner of table .* may upgrade"):
        await tenant.upgrade()
    assert await comment(admin, schema) is None  # the refused upgrade changed nothing

    result = await make_store(id_type="text").upgrade()
    assert result.rows_counted == 50
    hits = await tenant.search(query_text="cells matter", mode="text", k=50)
    assert hits and {h.id for h in hits} <= {r.id for r in rows if r.domain_id == "a"}
    assert await tenant.count() == 25
    conn = await asyncpg.connect(dsn)
    try:  # the statistics tables have the tenant policy: a tenant reads its own domain's statistics only
        await conn.execute("SELECT set_config('pgvecstore.domain_id', 'a', false)")
        assert {r[0] for r in await conn.fetch(f'SELECT domain_key FROM "{schema}"."{TABLE}_text_docs"')} == {"a"}
    finally:
        await conn.close()
    await assert_exact(admin, schema)
    await fresh_copy(make_store, rows)
    await assert_same_text_scores(make_store, rows)


def test_the_upgrade_command(pg_dsn: str, schema: str, scifact_dir: Path) -> None:
    """``pgvecstore upgrade`` upgrades a 0.1 table (progress on stderr), then says there is nothing to do."""

    async def build() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await create_v010_table(conn, schema, scifact_rows(scifact_dir, n=12))
        finally:
            await conn.close()

    asyncio.run(build())

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pgvecstore.cli", "upgrade", "--dsn", pg_dsn, "--schema", schema, "--table",
             TABLE, *args], capture_output=True, text=True, timeout=120, check=False)

    first = cli("--batch-size", "5")
    assert first.returncode == 0, first.stderr
    assert f"{schema}.{TABLE}: layout 1 -> 3" in first.stdout
    assert "counted the text statistics of 12 rows" in first.stdout
    second = cli("--json")
    assert second.returncode == 0, second.stderr
    assert '"steps": []' in second.stdout and '"to_layout": 3' in second.stdout
    bad = cli("--batch-size", "0")
    assert bad.returncode == 2 and "--batch-size" in bad.stderr

