"""Configuration is validated at construction, and every mistake names its option."""

from __future__ import annotations

from typing import cast

import pytest

from pgvecstore import PgVectorStore, StoreConfig, VectorStoreFactory
from pgvecstore.config import redact_dsn
from pgvecstore.identifiers import derived_name, quote_ident
from pgvecstore.sql import ddl, queries
from pgvecstore.sql.table import TableRef


def test_defaults_match_the_seed_backend() -> None:
    config = StoreConfig.from_options(dimensions=384)
    assert config.metric == "cosine"
    assert config.schema == "edubot"
    assert config.table_name == "knowledge_embeddings"
    assert (config.pool_min_size, config.pool_max_size) == (2, 10)
    assert config.auto_create_table is True
    assert config.id_type == "uuid"
    assert config.index_type == "none"
    assert config.auto_create_index is False
    assert config.min_rows_for_index == 1000
    assert config.domain_id is None
    assert dict(config.columns) == {
        name: name
        for name in ("id", "embedding", "content", "metadata", "domain_id", "document_id", "chunk_index", "created_at")
    }


def test_dict_and_keywords_are_accepted_and_keywords_win() -> None:
    config = StoreConfig.from_options({"dimensions": 3, "metric": "euclidean"}, metric="inner_product")
    assert config.dimensions == 3
    assert config.metric == "inner_product"
    store = PgVectorStore({"dimensions": 8, "table_name": "docs"})
    assert store.config.table_name == "docs"


def test_unknown_option_suggests_the_closest_name() -> None:
    with pytest.raises(ValueError, match=r"unknown option 'dimension'.*did you mean 'dimensions'"):
        StoreConfig.from_options(dimension=3)
    with pytest.raises(ValueError, match=r"unknown option 'tabel_name'.*'table_name'"):
        PgVectorStore(dimensions=3, tabel_name="x")


def test_dimensions_are_optional_and_bounded() -> None:
    assert StoreConfig.from_options(metric="cosine").dimensions is None  # read from an existing table
    for bad in (0, 16001, -5, 3.5, "384", True):
        with pytest.raises(ValueError, match="dimensions"):
            StoreConfig.from_options(dimensions=bad)
    assert StoreConfig.from_options(dimensions=16000).dimensions == 16000


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("metric", "cosin", r"metric must be one of .*did you mean 'cosine'"),
        ("metric", "dot", "metric must be one of"),
        ("id_type", "int", "id_type must be one of"),
        ("index_type", "hnws", r"index_type .*did you mean 'hnsw'"),
        ("pool_min_size", -1, "pool_min_size"),
        ("pool_max_size", 0, "pool_max_size"),
        ("auto_create_table", "yes", "auto_create_table must be True or False"),
        ("auto_create_index", 1, "auto_create_index must be True or False"),
        ("min_rows_for_index", -1, "min_rows_for_index"),
        ("domain_id", "", "domain_id"),
        ("domain_id", "x" * 101, "domain_id must be at most 100"),
        ("batch_size", 0, "batch_size"),
        ("connect_timeout", 0, "connect_timeout"),
        ("schema", "my schema", r"schema='my schema' is not a valid PostgreSQL name"),
        ("schema", 'a"; DROP TABLE x; --', "schema=.* is not a valid PostgreSQL name"),
        ("table_name", "1table", "table_name='1table' is not a valid PostgreSQL name"),
        ("table_name", "t" * 64, "longer than PostgreSQL's 63-byte name limit"),
        ("columns", {"embeding": "vec"}, r"unknown logical column 'embeding'.*did you mean 'embedding'"),
        ("columns", {"id": "bad-name"}, r"columns\['id'\]='bad-name' is not a valid PostgreSQL name"),
        ("columns", {"id": "content"}, "'content' is mapped to more than one logical column"),
        ("index_params", {"m": 1}, "index_params.m must be between 2 and 100"),
        ("index_params", {"m": 16, "ef_construction": 20}, r"ef_construction \(20\) must be at least 2 \* m"),
        ("index_params", {"lists": 0}, "index_params.lists must be between 1 and 32768"),
        ("index_params", {"ef_constrution": 64}, r"unknown parameter 'ef_constrution'.*'ef_construction'"),
        ("search_params", {"ef_search": 0}, "search_params.ef_search must be between 1 and 1000"),
        ("search_params", {"probe": 3}, r"unknown parameter 'probe'.*'probes'"),
    ],
)
def test_bad_values_name_the_option(option: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StoreConfig.from_options(dimensions=4, **{option: value})


def test_index_params_are_checked_against_the_chosen_index_type() -> None:
    with pytest.raises(ValueError, match="unknown parameter 'lists' for index_type 'hnsw'"):
        StoreConfig.from_options(dimensions=4, index_type="hnsw", index_params={"lists": 10})
    config = StoreConfig.from_options(dimensions=4, index_type="ivfflat", index_params={"lists": 10})
    assert config.index_params == {"lists": 10}


def test_password_never_appears_in_repr_or_errors() -> None:
    dsn = "postgresql://alice:s3cr3t-pw@db.example.com:5432/app"
    store = PgVectorStore(connection_string=dsn, dimensions=4)
    assert "s3cr3t-pw" not in repr(store)
    assert "s3cr3t-pw" not in repr(store.config)
    assert "alice:***@db.example.com" in repr(store.config)
    assert redact_dsn("host=db user=bob password=hunter2 dbname=x") == "host=db user=bob password=*** dbname=x"


def test_factory_knows_pgvector_and_lists_backends_on_a_typo() -> None:
    store = VectorStoreFactory().create(backend="pgvector", dimensions=4)
    assert isinstance(store, PgVectorStore)
    with pytest.raises(ValueError, match=r"unknown backend 'pgvectr'.*'pgvector'.*known backends: pgvector"):
        VectorStoreFactory().create(backend="pgvectr", dimensions=4)
    with pytest.raises(ValueError, match="unknown backend 'faiss'"):
        VectorStoreFactory().create(backend="faiss", dimensions=4)


def test_identifiers_are_always_quoted_and_index_names_fit() -> None:
    assert quote_ident('we"ird') == '"we""ird"'
    long_table = "t" * 63
    name = derived_name(long_table, "embedding_hnsw_idx")
    assert len(name.encode()) <= 63
    assert name.endswith("_embedding_hnsw_idx")
    assert name != derived_name("t" * 62 + "u", "embedding_hnsw_idx")
    table = TableRef.from_config(StoreConfig.from_options(dimensions=5, columns={"embedding": "vec"}))
    assert '"vec" vector(5)' in ddl.create_table(table, 5, "english")
    assert table.index_name("hnsw") == "knowledge_embeddings_vec_hnsw_idx"


def test_a_transaction_pooler_gets_its_settings_in_each_transaction_not_at_connect_time() -> None:
    from pgvecstore.connection import startup_settings, transaction_settings

    dsn = "postgresql://app@pooler:6432/db"
    direct = StoreConfig(statement_timeout=2.5)
    assert not direct.pooled_transactions
    sent = startup_settings(dsn, direct, tenant="t1")
    assert sent["statement_timeout"] == "2500" and sent["pgvecstore.domain_id"] == "t1"
    assert sent["hnsw.iterative_scan"] == "strict_order" and sent["timezone"] == "UTC"
    assert sent["plan_cache_mode"] == "force_custom_plan"  # so an exact scan needs no transaction to set it
    assert transaction_settings(direct) == {}

    for pooled in (StoreConfig(statement_timeout=2.5, statement_cache_size=0),
                   StoreConfig(statement_timeout=2.5, transaction_pooler=True)):
        assert pooled.pooled_transactions
        # Only what a pooler forwards (PgBouncer tracks application_name and TimeZone).
        assert startup_settings(dsn, pooled, tenant="t1") == {"application_name": "pgvecstore", "timezone": "UTC"}
        assert transaction_settings(pooled) == {"statement_timeout": "2500"}
    assert transaction_settings(StoreConfig(statement_timeout=None, transaction_pooler=True)) == {}
    assert not StoreConfig(statement_cache_size=0, transaction_pooler=False).pooled_transactions
    with pytest.raises(ValueError, match="transaction_pooler must be True, False or None"):
        StoreConfig(transaction_pooler="yes")


def test_which_connections_plan_each_statement_for_its_own_values() -> None:
    """Direct connections start with plan_cache_mode; without a statement cache every statement is unnamed and
    planned afresh; a pooler with a cache, or an application's pool, gives no such promise."""
    import asyncpg

    from pgvecstore.pool import PoolRegistry

    assert PoolRegistry(StoreConfig()).plans_each_statement
    assert PoolRegistry(StoreConfig(statement_cache_size=0)).plans_each_statement
    assert not PoolRegistry(StoreConfig(transaction_pooler=True)).plans_each_statement
    given = cast(asyncpg.Pool, object())  # an application's pool: the registry only notes that one was given
    assert not PoolRegistry(StoreConfig(), given).plans_each_statement


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"timeout": 3}, "use the 'connect_timeout' option"),
    ({"statement_cache_size": 0}, "use the 'statement_cache_size' option"),
    ({"sll": True}, "did you mean 'ssl'"),
    ({"server_settings": {"statement_timeout": "1s"}}, "the statement_timeout option"),
    ({"server_settings": {"TimeZone": "Europe/Paris"}}, "runs its sessions in UTC"),
    ({"server_settings": {"plan_cache_mode": "auto"}}, "plans each of its statements for its own values"),
    ({"server_settings": {"work_mem": 7}}, "a dict of setting names to strings"),
    (["ssl"], "must be a dict"),
])
def test_connect_kwargs_name_what_to_use_instead(kwargs: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StoreConfig(connect_kwargs=kwargs)  # type: ignore[arg-type]


def test_connect_kwargs_are_passed_on_and_never_shown() -> None:
    from pgvecstore.connection import startup_settings, user_arguments

    config = StoreConfig(connect_kwargs={"password": "s3cret", "ssl": "require", "max_queries": 10,
                                         "server_settings": {"application_name": "mine", "work_mem": "8MB"}})
    assert "s3cret" not in repr(config)
    assert user_arguments(config) == {"password": "s3cret", "ssl": "require"}  # max_queries is the pool's
    sent = startup_settings("postgresql://h/db", config)
    assert sent["application_name"] == "mine" and sent["work_mem"] == "8MB" and sent["timezone"] == "UTC"


def test_primary_key_is_validated_and_spelled_one_way() -> None:
    assert StoreConfig.from_options(dimensions=3).primary_key is None  # read from the table, 'id' for a new one
    assert StoreConfig.from_options(dimensions=3, primary_key="id").primary_key == "id"
    for spelling in ("domain_id, id", "domain_id,id", " domain_id ,  id "):
        assert StoreConfig.from_options(dimensions=3, primary_key=spelling).primary_key == "domain_id, id"
    for bad in ("id, domain_id", "domain_id", "", "(domain_id, id)", ["domain_id", "id"], True, 1):
        with pytest.raises(ValueError, match="primary_key must be 'id' or 'domain_id, id'") as raised:
            StoreConfig.from_options(dimensions=3, primary_key=bad)
        assert repr(bad) in str(raised.value)
    with pytest.raises(ValueError, match="domain_id comes first"):
        StoreConfig.from_options(dimensions=3, primary_key="id, domain_id")
    assert TableRef.from_config(StoreConfig.from_options(primary_key="domain_id, id")).primary_key == (
        "domain_id", "id")
    assert TableRef.from_config(StoreConfig.from_options()).primary_key == ("id",)


def test_the_domain_key_table_and_its_upsert_name_quoted_mapped_columns() -> None:
    config = StoreConfig.from_options(dimensions=3, primary_key="domain_id, id", columns={"domain_id": "Tenant"})
    t = TableRef.from_config(config)
    create = ddl.create_table(t, 3)
    assert '"Tenant" VARCHAR(100) NOT NULL' in create
    assert 'PRIMARY KEY ("Tenant", "id")' in create and "UUID NOT NULL DEFAULT gen_random_uuid()" in create
    assert all('"Tenant"' not in statement.split(" ON ")[1] for statement in ddl.support_indexes(t)), (
        "the primary key's index serves tenant scoping"
    )
    upsert = queries.upsert_from_staging(t, "stage").sql
    assert 'ON CONFLICT ("Tenant", "id") DO UPDATE SET' in upsert
    assert '"Tenant" = EXCLUDED' not in upsert and '"id" = EXCLUDED' not in upsert
