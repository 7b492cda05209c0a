"""Behind a transaction pooler (PgBouncer in transaction mode): the store as on a direct connection, with nothing
set on the role and nothing in PgBouncer's ``ignore_startup_parameters``.

PgBouncer runs in front of a private embedded server of this module (scripts/test.sh installs it as root, and CI
must run these tests: without the binary they fail there, and skip elsewhere saying why). Server connections are
shared between clients, so a raw client's session settings stay on them: the tests leave hostile ones there.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import numpy as np
import pytest
from tests.dsn import dsn_as
from tests.servers import PrivateServer

from pgvecstore import ConnectionFailedError, PgVectorStore, QueryTimeoutError
from pgvecstore.identifiers import TENANT_SETTING

DIM = 8


def vectors(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)

POOLER_APP_ROLE = "pgvs_pooler_app"  # a non-owner role PgBouncer lets in besides postgres (row-level security)
POOLER_SERVER_CONNECTIONS = 3  # PgBouncer's default_pool_size below


@pytest.fixture
def pgbouncer(private_server: PrivateServer) -> Iterator[str]:
    """A PgBouncer in transaction pooling mode in front of the private server; its DSN (as postgres; clients log in
    as themselves: postgres or POOLER_APP_ROLE). Skipped without one, except under CI."""
    binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")
    if binary is None:
        message = "pgbouncer is not installed (apt-get install pgbouncer; scripts/test.sh installs it as root)"
        if os.environ.get("CI") or os.environ.get("PGVECSTORE_REQUIRE_POOLER"):
            pytest.fail(message)  # CI (scripts/test.sh as root) must exercise the pooler, never skip it
        pytest.skip(message)
    user = private_server.server.system_user  # PgBouncer refuses to run as root
    # Beside the private server's data: its parents are open to the server's system user.
    run_dir = private_server.server.pgdata.parent / f"pgbouncer-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir()
    port = 6400 + os.getpid() % 1000
    (run_dir / "users.txt").write_text(f'"postgres" ""\n"{POOLER_APP_ROLE}" ""\n')
    (run_dir / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"postgres = host={private_server.socket_dir} dbname=postgres\n"
        "[pgbouncer]\n"
        f"listen_addr =\nlisten_port = {port}\nunix_socket_dir = {run_dir}\n"
        f"auth_type = trust\nauth_file = {run_dir / 'users.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {POOLER_SERVER_CONNECTIONS}\nmax_client_conn = 100\n"
        # Nothing ignored: a store in transaction_pooler mode sends only what PgBouncer forwards (docs/production.md).
        f"logfile = {run_dir / 'pgbouncer.log'}\n"
    )
    if user is not None:
        shutil.chown(run_dir, user)
        for child in run_dir.iterdir():
            shutil.chown(child, user)
    proc = subprocess.Popen([binary, str(run_dir / "pgbouncer.ini")], user=user, stderr=subprocess.PIPE, text=True)
    socket = run_dir / f".s.PGSQL.{port}"
    deadline = time.monotonic() + 15
    while not socket.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            log = run_dir / "pgbouncer.log"
            proc.kill()
            pytest.fail(f"pgbouncer did not start: {log.read_text() if log.exists() else proc.communicate()[1]}")
        time.sleep(0.05)
    try:
        yield f"postgresql://postgres@/postgres?host={run_dir}&port={port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_behind_pgbouncer_transaction_mode(pgbouncer: str) -> None:
    """Through PgBouncer's transaction pooling (server sessions change between transactions), a store with
    statement_cache_size=0 writes, reads and searches concurrently without prepared-statement errors."""
    options = {"connection_string": pgbouncer, "dimensions": DIM, "schema": f"b_{uuid.uuid4().hex[:10]}",
               "id_type": "text", "pool_min_size": 4, "pool_max_size": 8, "statement_cache_size": 0}
    async with PgVectorStore(options, domain_id="t1") as store:
        data = vectors(300, seed=11)
        ids = [f"p{i}" for i in range(300)]
        await asyncio.gather(*(store.add_vectors(data[i:i + 50], ids[i:i + 50],
                                                 [{"n": n} for n in range(i, i + 50)]) for i in range(0, 300, 50)))
        results = await asyncio.gather(*(store.search(data[i], k=3, filter={"n": {"$gte": 0}}) for i in range(200)))
        assert [r[0][0] for r in results] == ids[:200]
        counts = await asyncio.gather(*(store.count({"n": {"$lt": 100}}) for _ in range(50)))
        assert set(counts) == {100}
        assert await store.update_metadata(ids[:10], [{"n": -1}] * 10) == 10
        assert await store.delete_vectors(ids[:5]) == 5
        assert await store.count() == 295


async def test_row_level_security_tenant_travels_in_each_transaction_behind_pgbouncer(
    private_server: PrivateServer, pgbouncer: str
) -> None:
    """Behind a transaction pooler the tenant a store sends when it connects never reaches the server (PgBouncer
    drops it), and a server connection may carry what another client's session left there. Here every server
    connection is left with tenant B's setting by a raw session; a non-owner store of tenant A under row-level
    security still sees, counts, reads and deletes only A's rows, because it sets its tenant inside each
    transaction."""
    schema = f"rls_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(private_server.dsn)
    await admin.execute(f'DROP ROLE IF EXISTS "{POOLER_APP_ROLE}"')
    await admin.execute(f'CREATE ROLE "{POOLER_APP_ROLE}" LOGIN NOSUPERUSER NOBYPASSRLS')
    app_dsn = dsn_as(pgbouncer, POOLER_APP_ROLE)
    try:
        owner_options = {"connection_string": private_server.dsn, "schema": schema, "dimensions": DIM,
                         "id_type": "text", "row_level_security": True, "pool_min_size": 1, "pool_max_size": 2}
        data = vectors(40, seed=21)
        ids = {"A": [f"a{i}" for i in range(20)], "B": [f"b{i}" for i in range(20)]}
        for n, tenant in enumerate("AB"):
            async with PgVectorStore(owner_options, domain_id=tenant) as owner:
                await owner.add_vectors(data[20 * n:20 * (n + 1)], ids[tenant])
        await admin.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{POOLER_APP_ROLE}"')
        await admin.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" '
                            f'TO "{POOLER_APP_ROLE}"')

        # Leave tenant B's setting on every server connection: session-level set_config in concurrent
        # transactions, one per server connection, through the pooler as the application role.
        raw = [await asyncpg.connect(app_dsn, statement_cache_size=0) for _ in range(POOLER_SERVER_CONNECTIONS)]

        async def leave_b(conn: asyncpg.Connection) -> int:
            async with conn.transaction():
                await conn.execute(f"SELECT set_config('{TENANT_SETTING}', 'B', false)")
                await asyncio.sleep(0.5)  # hold this server connection while the others take theirs
                return int(await conn.fetchval("SELECT pg_backend_pid()"))

        assert len(set(await asyncio.gather(*(leave_b(c) for c in raw)))) == POOLER_SERVER_CONNECTIONS
        # What a client that does not set its tenant per transaction gets now: tenant B's rows.
        assert await raw[0].fetchval(f'SELECT count(*) FROM "{schema}".knowledge_embeddings') == 20
        assert await raw[0].fetchval(f'SELECT min(id) FROM "{schema}".knowledge_embeddings') == "b0"
        for conn in raw:
            await conn.close()

        # No statement_timeout: then nothing but the tenant makes a plain read a transaction (the other test has one).
        app_options = {"connection_string": app_dsn, "schema": schema, "dimensions": DIM, "id_type": "text",
                       "domain_id": "A", "row_level_security": True, "statement_cache_size": 0,
                       "statement_timeout": None, "pool_min_size": 2, "pool_max_size": 4}
        async with PgVectorStore(app_options) as store:
            assert await store.count() == 20
            hits = await asyncio.gather(*(store.search(data[i], k=5) for i in range(0, 40, 4)))
            assert {hit.id for found in hits for hit in found} <= set(ids["A"])
            assert [hit.id for hit in hits[5]] != [] and hits[0][0].id == "a0"
            assert await store.get_vectors(ids["B"][:5]) == [(None, None)] * 5  # aligned with the ids: not found
            assert await store.delete_vectors(ids["B"]) == 0
            assert await store.delete_vectors(ids["A"][:2]) == 2
        remaining = await admin.fetch(f'SELECT domain_id, count(*) FROM "{schema}".knowledge_embeddings GROUP BY 1')
        assert {row[0]: row[1] for row in remaining} == {"A": 18, "B": 20}
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                            POOLER_APP_ROLE)
        await admin.execute(f'DROP OWNED BY "{POOLER_APP_ROLE}"')
        await admin.execute(f'DROP ROLE "{POOLER_APP_ROLE}"')
        await admin.close()


# -- nothing set on the role, hostile settings left on the server connections ---------------------------------------
TENANT_ROWS = 1500
QUERIES = 30
K = 10
# What a careless client leaves at session level on a shared server connection: another tenant, no iterative
# scans, a candidate list of 1, no statement timeout.
LEFT_BEHIND = {TENANT_SETTING: "B", "hnsw.iterative_scan": "off", "ivfflat.iterative_scan": "off",
               "hnsw.ef_search": "1", "statement_timeout": "0"}


@pytest.fixture
async def app_role(private_server: PrivateServer) -> AsyncIterator[asyncpg.Connection]:
    """POOLER_APP_ROLE: a login role with no settings of its own (no ALTER ROLE ... SET); yields an admin
    connection (direct, as the superuser) and drops the role and its sessions afterwards."""
    admin = await asyncpg.connect(private_server.dsn)
    await admin.execute(f'DROP ROLE IF EXISTS "{POOLER_APP_ROLE}"')
    await admin.execute(f'CREATE ROLE "{POOLER_APP_ROLE}" LOGIN NOSUPERUSER NOBYPASSRLS')
    try:
        yield admin
    finally:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                            POOLER_APP_ROLE)
        await admin.execute(f'DROP OWNED BY "{POOLER_APP_ROLE}"')
        await admin.execute(f'DROP ROLE "{POOLER_APP_ROLE}"')
        await admin.close()


async def leave_on_every_server_connection(dsn: str, settings: dict[str, str]) -> None:
    """Set `settings` at session level on each of PgBouncer's server connections (concurrent transactions hold
    them all at once), as a client that does not clean up after itself would."""
    raw = [await asyncpg.connect(dsn, statement_cache_size=0) for _ in range(POOLER_SERVER_CONNECTIONS)]

    async def leave(conn: asyncpg.Connection) -> int:
        async with conn.transaction():
            for name, value in settings.items():
                await conn.execute("SELECT set_config($1, $2, false)", name, value)
            await asyncio.sleep(0.5)  # hold this server connection while the others take theirs
            return int(await conn.fetchval("SELECT pg_backend_pid()"))

    try:
        assert len(set(await asyncio.gather(*(leave(c) for c in raw)))) == POOLER_SERVER_CONNECTIONS
    finally:
        for conn in raw:
            await conn.close()


def exact_filtered(data: np.ndarray, ids: list[str], keep: np.ndarray, query: np.ndarray, k: int) -> set[str]:
    """The k nearest rows by cosine distance among those `keep` selects (numpy, the reference answer)."""
    normed = data / np.linalg.norm(data, axis=1, keepdims=True)
    distance = 1 - normed @ (query / np.linalg.norm(query))
    distance[~keep] = np.inf
    return {ids[i] for i in np.argsort(distance)[:k]}


async def test_behind_pgbouncer_with_nothing_set_on_the_role(
    private_server: PrivateServer, pgbouncer: str, app_role: asyncpg.Connection
) -> None:
    """A non-owner role with no role settings, behind PgBouncer in transaction mode, server connections left with
    another tenant, no iterative scans, ef_search=1 and no statement timeout: the store's filtered searches return
    k rows of its own tenant with the recall they have on a direct connection (>= 0.95), and its
    statement_timeout still stops a statement stuck on a lock."""
    admin = app_role
    assert await admin.fetchval(
        "SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = $1",
        POOLER_APP_ROLE,
    ) == 0
    schema = f"pool_{uuid.uuid4().hex[:10]}"
    dim = 32
    rng = np.random.default_rng(5)
    data = {t: rng.standard_normal((TENANT_ROWS, dim)).astype(np.float32) for t in "AB"}
    groups = np.arange(TENANT_ROWS) % 20  # "g": 5% of a tenant's rows each
    ids = {t: [f"{t.lower()}{i}" for i in range(TENANT_ROWS)] for t in "AB"}
    owner_options = {"connection_string": private_server.dsn, "schema": schema, "dimensions": dim,
                     "id_type": "text", "row_level_security": True, "index_type": "hnsw",
                     "pool_min_size": 1, "pool_max_size": 2}
    try:
        for tenant in "AB":
            async with PgVectorStore(owner_options, domain_id=tenant) as owner:
                await owner.add_vectors(data[tenant], ids[tenant],
                                        [{"g": int(g), "n": i} for i, g in enumerate(groups)])
                await owner.create_index()
        await admin.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{POOLER_APP_ROLE}"')
        await admin.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" '
                            f'TO "{POOLER_APP_ROLE}"')
        app_dsn = dsn_as(pgbouncer, POOLER_APP_ROLE)
        await leave_on_every_server_connection(app_dsn, LEFT_BEHIND)

        queries = np.random.default_rng(6).standard_normal((QUERIES, dim)).astype(np.float32)
        filters = [({"g": q % 20}, groups == q % 20) for q in range(QUERIES)]
        app_options = {"schema": schema, "dimensions": dim, "id_type": "text", "domain_id": "A",
                       "row_level_security": True, "statement_timeout": 1.0, "pool_min_size": 2,
                       "pool_max_size": 3, "command_timeout": 10}  # the client's limit, should the server's fail

        async def recall(store: PgVectorStore) -> float:
            searches = (store.search(q, k=K, filter=f) for q, (f, _) in zip(queries, filters, strict=True))
            found = await asyncio.gather(*searches)
            for hits in found:
                assert len(hits) == K  # k rows whenever k rows match
                assert {hit.id for hit in hits} <= set(ids["A"])  # never another tenant's
            right = [len({h.id for h in hits} & exact_filtered(data["A"], ids["A"], keep, q, K))
                     for hits, q, (_, keep) in zip(found, queries, filters, strict=True)]
            return sum(right) / (K * QUERIES)

        async with PgVectorStore(app_options, connection_string=app_dsn, statement_cache_size=0) as pooled:
            assert pooled.config.pooled_transactions
            pooled_recall = await recall(pooled)
            assert await pooled.count() == TENANT_ROWS
            assert await pooled.count({"g": 3}) == TENANT_ROWS // 20
            # statement_timeout travels in the transaction: a search stuck behind a lock is stopped.
            async with admin.transaction():
                await admin.execute(f'LOCK TABLE "{schema}".knowledge_embeddings IN ACCESS EXCLUSIVE MODE')
                with pytest.raises(QueryTimeoutError, match="statement_timeout"):
                    await pooled.search(queries[0], k=K, filter={"g": 1})
            assert len(await pooled.search(queries[0], k=K, filter={"g": 1})) == K  # and the store goes on

        direct_dsn = dsn_as(private_server.dsn, POOLER_APP_ROLE)
        async with PgVectorStore(app_options, connection_string=direct_dsn) as direct:
            assert not direct.config.pooled_transactions
            direct_recall = await recall(direct)
        assert pooled_recall >= 0.95
        assert pooled_recall >= direct_recall - 0.01
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_a_store_that_does_not_know_it_is_pooled_is_told_what_to_set(pgbouncer: str) -> None:
    """A store left in direct-connection mode (a statement cache, or transaction_pooler=False) sends settings
    PgBouncer refuses at connect time: the error names the option that fixes it."""
    store = PgVectorStore(connection_string=pgbouncer, dimensions=DIM, schema=f"d_{uuid.uuid4().hex[:8]}",
                          statement_cache_size=100, connect_timeout=5)
    with pytest.raises(ConnectionFailedError, match="transaction_pooler=True"):
        await store.initialize()
    await store.close()
    # transaction_pooler given says so whatever the cache size: False keeps the direct-connection settings.
    explicit = PgVectorStore(connection_string=pgbouncer, dimensions=DIM, schema=store.config.schema,
                             statement_cache_size=0, transaction_pooler=False, connect_timeout=5)
    with pytest.raises(ConnectionFailedError, match="unsupported startup parameter"):
        await explicit.initialize()
    await explicit.close()
