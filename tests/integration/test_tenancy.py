"""Tenant isolation: a store with domain_id never sees, counts, updates or deletes another domain's rows, and with
``row_level_security=True`` PostgreSQL itself enforces it for a role that is not the table's owner.

Tenant stores here connect as a fresh LOGIN role that only has DML grants on the table (the table owner is the
superuser of the test server), because owners and superusers bypass row-level security.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable

import asyncpg
import numpy as np
import pytest
from tests.dsn import dsn_as

from pgvecstore import PermissionDeniedError, PgVectorStore, SchemaMismatchError
from pgvecstore.config import StoreConfig
from pgvecstore.identifiers import TENANT_SETTING
from pgvecstore.sql.table import TableRef

StoreMaker = Callable[..., PgVectorStore]
TABLE = "knowledge_embeddings"
DIM = 3


def vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, DIM), dtype=np.float32) + 0.01


class Tenants:
    """Makes stores that log in as one non-owner role, and grants that role DML on the test's table."""

    def __init__(self, pg_dsn: str, schema: str, admin: asyncpg.Connection, role: str, password: str) -> None:
        self.dsn = dsn_as(pg_dsn, role, password)
        self.schema = schema
        self.admin = admin
        self.role = role
        self.made: list[PgVectorStore] = []

    async def grant(self) -> None:
        """What an administrator gives an application role (after the owner created the table)."""
        await self.admin.execute(f'GRANT USAGE ON SCHEMA "{self.schema}" TO "{self.role}"')
        await self.admin.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON "{self.schema}"."{TABLE}" TO "{self.role}"')

    def store(self, **options: object) -> PgVectorStore:
        options = {"connection_string": self.dsn, "schema": self.schema, "dimensions": DIM, "id_type": "text",
                   "pool_min_size": 1, "pool_max_size": 2, **options}
        made = PgVectorStore(options)
        self.made.append(made)
        return made


@pytest.fixture
async def tenants(pg_dsn: str, schema: str, admin: asyncpg.Connection) -> AsyncIterator[Tenants]:
    """A LOGIN role unique to this test (roles are cluster-wide), dropped with its grants afterwards."""
    role = f"pgvs_tenant_{secrets.token_hex(6)}"
    password = secrets.token_hex(16)  # hex only: safe inside the DDL literal
    await admin.execute(f"CREATE ROLE \"{role}\" LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '{password}'")
    made = Tenants(pg_dsn, schema, admin, role, password)
    try:
        yield made
    finally:
        for store in made.made:
            await store.close()
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
        )
        await admin.execute(f'DROP OWNED BY "{role}"')
        await admin.execute(f'DROP ROLE "{role}"')


async def owner_store(make_store: StoreMaker, rls: bool) -> PgVectorStore:
    """The table's owner (the test server's superuser) creates the table, and with rls its policy."""
    owner = make_store(dimensions=DIM, id_type="text", domain_id="owner", row_level_security=rls)
    await owner.initialize()
    return owner


async def domains_in_table(admin: asyncpg.Connection, schema: str) -> dict[str, str | None]:
    rows = await admin.fetch(f'SELECT id, domain_id FROM "{schema}"."{TABLE}"')
    return {row[0]: row[1] for row in rows}


# -- configuration --------------------------------------------------------------------------------------------


def test_row_level_security_needs_a_domain_and_a_bool() -> None:
    with pytest.raises(ValueError, match="row_level_security=True needs a domain_id"):
        StoreConfig.from_options(dimensions=3, row_level_security=True)
    with pytest.raises(ValueError, match="row_level_security must be True or False"):
        StoreConfig.from_options(dimensions=3, domain_id="a", row_level_security="yes")
    assert StoreConfig.from_options(dimensions=3).row_level_security is False
    assert StoreConfig.from_options(dimensions=3, domain_id="a", row_level_security=True).row_level_security


# -- the isolation matrix, with and without row-level security ------------------------------------------------


@pytest.mark.parametrize("rls", [False, True], ids=["where-clauses", "row-level-security"])
async def test_tenant_a_never_touches_tenant_b(
    rls: bool, make_store: StoreMaker, tenants: Tenants, admin: asyncpg.Connection, schema: str
) -> None:
    await owner_store(make_store, rls)
    await tenants.grant()
    store_a = tenants.store(domain_id="a", row_level_security=rls)
    store_b = tenants.store(domain_id="b", row_level_security=rls)
    va, vb = vectors(3, 1), vectors(3, 2)
    ids_a, ids_b = ["a1", "a2", "a3"], ["b1", "b2", "b3"]
    # A tries to write into B through metadata: domain_id there is just a metadata key.
    await store_a.add_vectors(va, ids=ids_a, metadata=[{"tag": "x", "n": i, "domain_id": "b"} for i in range(3)])
    await store_b.add_vectors(vb, ids=ids_b, metadata=[{"tag": "x", "n": i} for i in range(3)])
    assert await domains_in_table(admin, schema) == {**dict.fromkeys(ids_a, "a"), **dict.fromkeys(ids_b, "b")}
    before_b = await admin.fetch(f'SELECT * FROM "{schema}"."{TABLE}" WHERE domain_id = $1 ORDER BY id', "b")

    # reads
    assert await store_a.count() == 3
    assert await store_a.count({"tag": "x"}) == 3
    assert await store_a.count({"id": "b1"}) == 0
    assert await store_a.count({"domain_id": "b"}) == 3  # the metadata key, inside A's own rows
    for query in vb:  # B's own vectors as queries: A still finds only its rows
        assert {row_id for row_id, _, _ in await store_a.search(query, k=10)} == set(ids_a)
    assert await store_a.search(vb[0], k=10, filter={"id": "b1"}) == []
    assert {row_id for row_id, _, _ in await store_a.search(vb[0], k=10, search_params={"ef_search": 40})} == set(
        ids_a
    )
    assert [row[0] for row in await store_a.get()] == ids_a
    assert await store_a.get(ids=ids_b) == []
    assert await store_a.get(filter={"$or": [{"id": "b1"}, {"n": {"$gte": 0}}]}, limit=10) == await store_a.get()
    got = await store_a.get_vectors(["b1", "a1", "b2"])
    assert got[0] == (None, None) and got[2] == (None, None)
    assert got[1][1] is not None and got[1][1]["n"] == 0

    # writes into B's rows
    assert await store_a.update_metadata(["b1", "b2"], [{"stolen": True}, {"stolen": True}]) == 0
    assert await store_a.delete_vectors(ids_b) == 0
    assert await store_a.delete({"id": "b1"}) == 0
    assert await store_a.delete({"$or": [{"id": {"$in": ids_b}}, {"tag": "nothing"}]}) == 0
    with pytest.raises(ValueError, match="'b2' already exists in another domain"):
        await store_a.add_vectors(vectors(2, 3), ids=["a4", "b2"], metadata=[{}, {"stolen": True}])
    assert await store_a.count() == 3, "the refused batch writes nothing, not even its valid row"

    # A's own writes work
    assert await store_a.update_metadata(["a1"], [{"tag": "y"}]) == 1
    assert await store_a.delete({"tag": "y"}) == 1
    assert await store_a.delete_vectors(["a2"]) == 1
    assert await store_a.clear() == 1

    assert await store_a.count() == 0
    assert await store_b.count() == 3
    after_b = await admin.fetch(f'SELECT * FROM "{schema}"."{TABLE}" WHERE domain_id = $1 ORDER BY id', "b")
    assert after_b == before_b, "B's rows are exactly as they were"


async def test_a_store_without_domain_sees_everything_without_rls(make_store: StoreMaker) -> None:
    """Without row-level security a store without domain_id is the administrator's view: every row. It still
    cannot replace a domain's row, since its rows carry no domain (that would move the row out of the domain)."""
    ids_a = await make_store(dimensions=DIM, domain_id="a").add_vectors(vectors(2, 1))
    await make_store(dimensions=DIM, domain_id="b").add_vectors(vectors(3, 2))
    everyone = make_store(dimensions=DIM)
    assert await everyone.count() == 5
    with pytest.raises(ValueError, match="already exists in another domain"):
        await everyone.add_vectors(vectors(1, 3), ids=[ids_a[0]])


# -- row-level security --------------------------------------------------------------------------------------


async def test_policy_is_created_once_and_found_by_name(make_store: StoreMaker, admin: asyncpg.Connection,
                                                        schema: str) -> None:
    stores = [make_store(dimensions=DIM, id_type="text", domain_id=f"d{i}", row_level_security=True)
              for i in range(3)]
    await asyncio.gather(*(store.initialize() for store in stores))
    await make_store(dimensions=DIM, id_type="text", domain_id="late", row_level_security=True).initialize()
    name = TableRef.from_config(stores[0].config).policy_name
    policies = await admin.fetch(
        "SELECT policyname, cmd, qual, with_check FROM pg_policies WHERE schemaname = $1 AND tablename = $2",
        schema, TABLE,
    )
    assert [row["policyname"] for row in policies] == [name]
    assert policies[0]["cmd"] == "ALL"
    assert TENANT_SETTING in policies[0]["qual"] and TENANT_SETTING in policies[0]["with_check"]
    enabled, forced = await admin.fetchrow(
        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = $1::regclass", f'"{schema}"."{TABLE}"'
    )
    assert enabled and not forced


async def test_postgres_enforces_isolation_on_raw_sql_through_the_pool(
    make_store: StoreMaker, tenants: Tenants, admin: asyncpg.Connection, schema: str
) -> None:
    await owner_store(make_store, rls=True)
    await tenants.grant()
    # A domain that would break SQL if it were ever pasted in: it travels as a startup parameter and a bound value.
    domain_a = "a'); SET ROLE postgres; --ü名"
    store_a = tenants.store(domain_id=domain_a, row_level_security=True)
    store_b = tenants.store(domain_id="b", row_level_security=True)
    await store_a.add_vectors(vectors(2, 1), ids=["a1", "a2"])
    await store_b.add_vectors(vectors(3, 2), ids=["b1", "b2", "b3"])
    table = f'"{schema}"."{TABLE}"'

    pool = await store_a.get_pool()
    # Outside any transaction of the store's: the session-level tenant setting applies.
    assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 2
    assert {r[0] for r in await pool.fetch(f"SELECT DISTINCT domain_id FROM {table}")} == {domain_a}
    assert await pool.fetchval(f"SELECT current_setting('{TENANT_SETTING}')") == domain_a
    assert await pool.fetchval(f"SELECT count(*) FROM {table} WHERE id = 'b1'") == 0
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        await pool.execute(f"INSERT INTO {table} (id, domain_id) VALUES ('evil', 'b')")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        await pool.execute(f"UPDATE {table} SET domain_id = 'b'")
    assert await pool.execute(f"UPDATE {table} SET metadata = '{{\"x\": 1}}'") == "UPDATE 2"
    async with pool.acquire() as conn:  # a raw session that changes its own setting is reset when released
        await conn.execute(f"SELECT set_config('{TENANT_SETTING}', 'b', false)")
    for _ in range(4):
        assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 2
    assert await pool.execute(f"DELETE FROM {table}") == "DELETE 2"

    assert await domains_in_table(admin, schema) == dict.fromkeys(["b1", "b2", "b3"], "b")
    assert await store_b.count() == 3
    assert await store_a.count() == 0


async def test_non_owner_without_domain_sees_nothing_on_an_rls_table(
    make_store: StoreMaker, tenants: Tenants
) -> None:
    owner = await owner_store(make_store, rls=True)
    await owner.add_vectors(vectors(2, 1))
    await tenants.grant()
    nobody = tenants.store()
    assert await nobody.count() == 0
    assert await nobody.get() == []
    with pytest.raises(PermissionDeniedError):  # a row without a domain fails the policy's check
        await nobody.add_vectors(vectors(1, 2), ids=["x"])
    # The owner bypasses row-level security (it is not forced): the administrator's view of every row.
    assert await make_store(dimensions=DIM, id_type="text").count() == 2


async def test_a_domain_store_without_the_option_still_carries_its_tenant(
    make_store: StoreMaker, tenants: Tenants
) -> None:
    """Stores sharing an RLS table need not all set row_level_security: a domain store always sets its tenant."""
    await owner_store(make_store, rls=True)
    await tenants.grant()
    store_a = tenants.store(domain_id="a")
    await store_a.add_vectors(vectors(2, 1), ids=["a1", "a2"])
    await tenants.store(domain_id="b").add_vectors(vectors(1, 2), ids=["b1"])
    assert await store_a.count() == 2
    assert await (await store_a.get_pool()).fetchval(f'SELECT count(*) FROM "{tenants.schema}"."{TABLE}"') == 2


async def test_non_owner_cannot_turn_on_rls_and_is_told_how(make_store: StoreMaker, tenants: Tenants) -> None:
    await owner_store(make_store, rls=False)
    await tenants.grant()
    with pytest.raises(SchemaMismatchError, match="not its owner"):
        await tenants.store(domain_id="a", row_level_security=True).initialize()


async def test_owner_with_rls_is_warned_that_it_bypasses_the_policy(
    make_store: StoreMaker, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pgvecstore"):
        await owner_store(make_store, rls=True)
    assert "bypasses row-level security" in caplog.text


async def test_a_store_that_did_not_ask_for_rls_is_not_warned(
    make_store: StoreMaker, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pgvecstore"):
        await owner_store(make_store, rls=False)
        await make_store(dimensions=DIM, id_type="text").initialize()
    assert "row-level security" not in caplog.text


async def test_rls_turned_off_by_hand_is_turned_on_again_by_a_store_that_asks_for_it(
    make_store: StoreMaker, tenants: Tenants, admin: asyncpg.Connection, schema: str
) -> None:
    """The policy is still there, but row-level security was disabled: a store with row_level_security=True
    enables it again, so the tenant role is confined again."""
    await owner_store(make_store, rls=True)
    await tenants.grant()
    table = f'"{schema}"."{TABLE}"'
    await tenants.store(domain_id="b", row_level_security=True).add_vectors(vectors(2, 2), ids=["b1", "b2"])
    await admin.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    await owner_store(make_store, rls=True)
    assert await admin.fetchval("SELECT relrowsecurity FROM pg_class WHERE oid = $1::regclass", table)
    pool = await tenants.store(domain_id="a", row_level_security=True).get_pool()
    assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 0, "tenant a sees none of b's rows"


@pytest.mark.parametrize("rls", [False, True], ids=["where-clauses", "row-level-security"])
async def test_a_tenant_re_adding_its_own_id_replaces_the_whole_row(
    rls: bool, make_store: StoreMaker, tenants: Tenants
) -> None:
    await owner_store(make_store, rls)
    await tenants.grant()
    store_a = tenants.store(domain_id="a", row_level_security=rls)
    first, second = vectors(1, 1), vectors(1, 2)
    await store_a.add_vectors(first, ids=["a1"], metadata=[{"v": 1}], contents=["old"])
    await store_a.add_vectors(second, ids=["a1"], metadata=[{"v": 2}], contents=["new"])
    [(vector, metadata)] = await store_a.get_vectors(["a1"])
    assert vector is not None and np.allclose(vector, second[0]) and not np.allclose(vector, first[0])
    assert metadata == {"v": 2}
    assert [row.content for row in await store_a.get(ids=["a1"])] == ["new"]


async def test_a_tenant_reads_only_its_own_text_statistics(
    make_store: StoreMaker, tenants: Tenants, admin: asyncpg.Connection
) -> None:
    """Row-level security covers the full-text term statistics too: the words of another tenant's rows stay
    hidden from raw SQL through the tenant's pool."""
    for domain, text in (("a", "alpha apples"), ("b", "zebra secrets")):
        owner = make_store(dimensions=DIM, id_type="text", domain_id=domain, row_level_security=True)
        await owner.add_vectors(vectors(1, 1), ids=[f"{domain}1"], contents=[text])
    t = TableRef.from_config(owner.config)
    await tenants.grant()
    for table in (t.text_terms_table, t.text_docs_table):
        await admin.execute(f'GRANT SELECT ON {t.in_schema(table)} TO "{tenants.role}"')
    pool = await tenants.store(domain_id="a", row_level_security=True).get_pool()
    for table in (t.text_terms_table, t.text_docs_table):
        domains = f"SELECT array_agg(DISTINCT domain_key ORDER BY domain_key) FROM {t.in_schema(table)}"
        assert await admin.fetchval(domains) == ["a", "b"]
        assert await pool.fetchval(domains) == ["a"], f"tenant a reads only its own rows of {table}"


async def test_an_owner_role_bypasses_the_policy_unless_it_is_forced(
    make_store: StoreMaker, tenants: Tenants, admin: asyncpg.Connection, schema: str
) -> None:
    """The single-role deployment of docs/tenancy.md: the application's role owns the table."""
    await owner_store(make_store, rls=True)
    await tenants.grant()
    table = f'"{schema}"."{TABLE}"'
    await admin.execute(f'ALTER TABLE {table} OWNER TO "{tenants.role}"')
    store_a = tenants.store(domain_id="a", row_level_security=True)
    await store_a.add_vectors(vectors(2, 1), ids=["a1", "a2"])
    await tenants.store(domain_id="b", row_level_security=True).add_vectors(vectors(1, 2), ids=["b1"])
    pool = await store_a.get_pool()
    assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 3, "the owner is not subject to the policy"
    assert await store_a.count() == 2, "the store's own WHERE clauses still apply"

    await admin.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 2
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute(f"INSERT INTO {table} (id, domain_id) VALUES ('evil', 'b')")
    # COPY FROM is refused now that the policy applies: the store falls back to its staging table.
    await store_a.add_vectors(vectors(1, 3), ids=["a3"])
    assert await store_a.count() == 3
    assert await tenants.store().count() == 0, "the owner without a domain sees nothing once forced"
