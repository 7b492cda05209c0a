"""`TableRef`: the quoted names of a store's table and of everything the store makes around it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pgvecstore.identifiers import (
    LOGICAL_COLUMNS,
    derived_name,
    indexed_metadata_column_name,
    quote_ident,
    text_terms_column_name,
)
from pgvecstore.primary_key import DOMAIN_KEY, ID_KEY, PRIMARY_KEYS

if TYPE_CHECKING:
    from pgvecstore.config import StoreConfig


@dataclass(frozen=True)
class TableRef:
    """Schema, table and column names of one store table (validated by `StoreConfig`), quoted on use.

    The names of its indexes and policy are derived deterministically, so every store instance finds them in
    the catalog by name.
    """

    schema: str
    name: str
    columns: Mapping[str, str]
    id_type: str = "uuid"
    text_search_column: str = "content_tsv"
    # Indexed metadata keys and their types (the `indexed_metadata` option): each has a column of its own.
    indexed_metadata: Mapping[str, str] = field(default_factory=dict)
    # The primary key, as logical columns: ("id",) or ("domain_id", "id") (`pgvecstore.primary_key`).
    primary_key: tuple[str, ...] = ID_KEY

    @classmethod
    def from_config(cls, config: StoreConfig) -> TableRef:
        return cls(
            schema=config.schema,
            name=config.table_name,
            columns=dict(config.columns),
            id_type=config.id_type,
            text_search_column=config.resolved_text_search_column,
            indexed_metadata=dict(config.indexed_metadata),
            primary_key=PRIMARY_KEYS[config.primary_key or "id"],
        )

    @classmethod
    def plain(cls, schema: str, name: str, **options: Any) -> TableRef:
        """A table with the logical column names (for tests and tools)."""
        return cls(schema, name, {c: c for c in LOGICAL_COLUMNS}, **options)

    @cached_property
    def qualified(self) -> str:
        """``"schema"."table"``, quoted."""
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"

    @property
    def display(self) -> str:
        """``schema.table`` for messages."""
        return f"{self.schema}.{self.name}"

    def col(self, logical: str) -> str:
        """The quoted column that holds logical column `logical`."""
        return quote_ident(self.columns[logical])

    @property
    def id_cast(self) -> str:
        """The SQL type of ids: ``uuid`` or ``text``."""
        return "uuid" if self.id_type == "uuid" else "text"

    # -- the primary key: its columns, and how statements carry a row's identity through their CTEs ----------
    @property
    def domain_keyed(self) -> bool:
        """Whether the key is (domain_id, id): an id is unique only within its domain."""
        return self.primary_key == DOMAIN_KEY

    @property
    def key_columns(self) -> str:
        """The key's quoted columns, comma-separated (PRIMARY KEY and ON CONFLICT targets)."""
        return ", ".join(self.col(c) for c in self.primary_key)

    def carry_key(self, alias: str = "") -> str:
        """Select-list items that carry a row's identity out of the table (read as `alias`, or unqualified):
        ``id``, and with the domain key also ``row_domain``."""
        a = f"{alias}." if alias else ""
        carried = f"{a}{self.col('id')} AS id"
        return carried + (f", {a}{self.col('domain_id')} AS row_domain" if self.domain_keyed else "")

    def carried(self, alias: str) -> str:
        """The carried identity columns of `alias` (for GROUP BY, DISTINCT ON and select lists)."""
        return f"{alias}.id" + (f", {alias}.row_domain" if self.domain_keyed else "")

    def coalesce_carried(self, left: str, right: str) -> str:
        """The carried identity of a FULL JOIN of `left` and `right`, as ``id`` (and ``row_domain``)."""
        ident = f"coalesce({left}.id, {right}.id) AS id"
        return ident + (f", coalesce({left}.row_domain, {right}.row_domain) AS row_domain" if self.domain_keyed else "")

    def same_carried(self, left: str, right: str) -> str:
        """Join condition: `left` and `right` carry the same row."""
        cond = f"{left}.id = {right}.id"
        return cond + (f" AND {left}.row_domain = {right}.row_domain" if self.domain_keyed else "")

    def is_carried(self, table_alias: str, carrier: str) -> str:
        """Join condition: the table's row `table_alias` is the row `carrier` carries."""
        cond = f"{table_alias}.{self.col('id')} = {carrier}.id"
        if self.domain_keyed:
            cond += f" AND {table_alias}.{self.col('domain_id')} = {carrier}.row_domain"
        return cond

    def same_row(self, left: str, right: str) -> str:
        """Join condition: rows `left` and `right`, both read with the table's columns, have the same key."""
        return " AND ".join(f"{left}.{self.col(c)} = {right}.{self.col(c)}" for c in self.primary_key)

    def index_name(self, index_type: str) -> str:
        """The name of this table's vector index of `index_type` (a kind: 'hnsw', 'ivfflat', 'hnsw_binary'),
        found by name in the catalog."""
        return derived_name(self.name, f"{self.columns['embedding']}_{index_type}_idx")

    @property
    def domain_index_name(self) -> str:
        return derived_name(self.name, f"{self.columns['domain_id']}_idx")

    @property
    def document_index_name(self) -> str:
        return derived_name(self.name, f"{self.columns['document_id']}_idx")

    @property
    def text_search_index_name(self) -> str:
        """The name of the GIN index on the text-search column (found by name in the catalog)."""
        return derived_name(self.name, f"{self.text_search_column}_gin_idx")

    @property
    def text_terms_column(self) -> str:
        """Layout 2's column of term frequencies (a pgvector sparsevec) beside the tsvector; the upgrade drops it."""
        return text_terms_column_name(self.text_search_column)

    @property
    def text_terms_table(self) -> str:
        """The table of document frequencies per (lexeme, domain), kept by the text-search triggers."""
        return derived_name(self.name, "text_terms")

    @property
    def text_docs_table(self) -> str:
        """The table of row counts and total lengths per domain, kept by the text-search triggers."""
        return derived_name(self.name, "text_docs")

    def text_object(self, kind: str) -> str:
        """The name of one of the text-search functions and triggers (`kind`: row, stats, ins, upd, del, trunc)."""
        return derived_name(self.name, f"text_{kind}")

    def indexed_column(self, key: str) -> str:
        """The quoted column of indexed metadata key `key`."""
        return quote_ident(indexed_metadata_column_name(key))

    def indexed_object(self, key: str, kind: str) -> str:
        """The name of the b-tree index (`kind` ``idx``), trigger (``trg``) or function (``fill``) of an indexed
        metadata key's column."""
        return derived_name(self.name, f"{indexed_metadata_column_name(key)}_{kind}")

    @property
    def metadata_gin_index_name(self) -> str:
        """The name of the GIN index on the metadata column (the ``metadata_index="gin"`` option)."""
        return derived_name(self.name, f"{self.columns['metadata']}_gin_idx")

    def in_schema(self, name: str) -> str:
        """``"schema"."name"``: another object of the table's schema, quoted."""
        return f"{quote_ident(self.schema)}.{quote_ident(name)}"

    @property
    def policy_name(self) -> str:
        """The name of the table's tenant-isolation policy (found by name in pg_policy)."""
        return derived_name(self.name, "tenant_isolation")

    @property
    def lock_key(self) -> str:
        """Text hashed into the advisory-lock key that serialises DDL on this table across processes."""
        return f"pgvecstore:{self.schema}.{self.name}"
