"""PostgreSQL names and the store's column vocabulary: validated, quoted, never pasted raw into SQL.

Everything here is pure: the rules for a valid name, how names are quoted, the derived names of indexes and
policies, and which logical columns a store table has. Config validation and the SQL builders both use it.
"""

from __future__ import annotations

import hashlib
import re

from pgvecstore.errors import InvalidInputError, InvalidOptionError

# Unquoted-identifier syntax of PostgreSQL, minus the '$' that some tools choke on; at most 63 bytes (NAMEDATALEN-1).
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_IDENTIFIER_BYTES = 63

# The logical columns of a store table (each may be mapped to another column name with the `columns` option).
LOGICAL_COLUMNS = (
    "id",
    "embedding",
    "content",
    "metadata",
    "domain_id",
    "document_id",
    "chunk_index",
    "created_at",
)
# The document columns: each row's text and its place in a document. Written from explicit lists or, when those
# are not given, from the metadata keys of the same name; returned as attributes of results, beside the metadata.
DOCUMENT_COLUMNS = ("content", "document_id", "chunk_index")
# Filter keys that address a column rather than a metadata key (compared as the column's type, so indexes help).
FILTER_COLUMNS = ("id", "document_id", "chunk_index", "content", "created_at")
# Logical columns written by add_vectors, in COPY order.
WRITE_COLUMNS = ("id", "embedding", "content", "metadata", "domain_id", "document_id", "chunk_index")

DEFAULT_TEXT_SEARCH_CONFIG = "english"
# The custom setting that names the tenant of a session or transaction; the row-level security policy compares
# each row's domain with it. A fixed name (never user input), so it may appear in the policy's SQL text.
TENANT_SETTING = "pgvecstore.domain_id"


def validate_identifier(name: object, option: str) -> str:
    """Return `name` if it is a valid PostgreSQL name, else raise an error that names `option`."""
    if not isinstance(name, str):
        raise InvalidOptionError(f"{option} must be a string, got {type(name).__name__}")
    if not _IDENTIFIER.fullmatch(name):  # fullmatch: "$" alone would also accept a trailing newline
        raise InvalidOptionError(
            f"{option}={name!r} is not a valid PostgreSQL name: use letters, digits and underscores, "
            "starting with a letter or underscore"
        )
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise InvalidOptionError(
            f"{option}={name!r} is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte name limit"
        )
    return name


def validate_text_search_config(name: object, option: str) -> str:
    """Return `name` if it is a valid text-search configuration name (``english`` or ``schema.name``)."""
    if not isinstance(name, str):
        raise InvalidOptionError(f"{option} must be a string such as 'english', got {type(name).__name__}")
    parts = name.split(".")
    if len(parts) > 2:
        raise InvalidOptionError(
            f"{option}={name!r} is not a valid text-search configuration name: use 'name' or 'schema.name'"
        )
    for part in parts:
        try:
            validate_identifier(part, option)
        except InvalidOptionError:
            raise InvalidOptionError(
                f"{option}={name!r} is not a valid text-search configuration name: use letters, digits and "
                "underscores ('english', 'simple', 'myschema.my_config')"
            ) from None
    return name


def quote_ident(name: str) -> str:
    """Quote an identifier for PostgreSQL (doubling any embedded quote), so it can never break out."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """A SQL string literal of an already validated name, for DDL that takes no parameters (quotes doubled)."""
    if "\\" in text or "\x00" in text:
        raise InvalidInputError(f"refusing to render {text!r} as a SQL literal")
    return "'" + text.replace("'", "''") + "'"


def int_literal(value: object, what: str) -> str:
    """Render a validated integer for DDL options that PostgreSQL does not accept as parameters."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOptionError(f"{what} must be an integer, got {value!r}")
    return str(int(value))


def text_terms_column_name(text_search_column: str) -> str:
    """Layout 2's term-frequency column beside the text-search (tsvector) column (its name stays reserved)."""
    return derived_name(text_search_column, "tf")


# The types an `indexed_metadata` key may be declared with, and the SQL type of its column. Text columns use the
# "C" collation: the filter compiler orders metadata strings by code point, and the column's b-tree must too.
INDEXED_METADATA_TYPES = {
    "text": 'text COLLATE "C"',
    "int": "bigint",
    "float": "double precision",
    "bool": "boolean",
    "timestamp": "timestamp with time zone",
}
# How the catalog (format_type) names each column type, to check a column that exists.
INDEXED_METADATA_CATALOG_TYPES = {
    "text": "text",
    "int": "bigint",
    "float": "double precision",
    "bool": "boolean",
    "timestamp": "timestamp with time zone",
}
INDEXED_METADATA_PREFIX = "meta_"


def indexed_metadata_column_name(key: str) -> str:
    """The column of an indexed metadata key: ``meta_<key>``, the key kept as written (the one rule; the key must
    be a valid name, so the column is one too, and at most 63 bytes)."""
    return f"{INDEXED_METADATA_PREFIX}{key}"


def validate_indexed_metadata_key(key: object, option: str) -> str:
    """Return `key` if it can be an indexed metadata key: a top-level key that is a valid name and not one of the
    filter's column keys."""
    if not isinstance(key, str):
        raise InvalidOptionError(f"{option}: key {key!r} must be a string")
    if "." in key:
        raise InvalidOptionError(
            f"{option}: key {key!r} is a nested (dotted) key; only top-level metadata keys can be indexed"
        )
    if key in FILTER_COLUMNS:
        raise InvalidOptionError(
            f"{option}: key {key!r} already addresses the table's {key} column in filters; it cannot be indexed"
        )
    if not _IDENTIFIER.fullmatch(key):
        raise InvalidOptionError(
            f"{option}: key {key!r} cannot be indexed: use letters, digits and underscores, starting with a letter "
            "or underscore"
        )
    column = indexed_metadata_column_name(key)
    if len(column.encode()) > MAX_IDENTIFIER_BYTES:
        raise InvalidOptionError(
            f"{option}: key {key!r} is too long: its column {column!r} passes PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte "
            "name limit"
        )
    return key


def derived_name(base: str, suffix: str) -> str:
    """A deterministic object name `base_suffix`, shortened with a hash when it would pass 63 bytes."""
    name = f"{base}_{suffix}"
    if len(name.encode()) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    keep = MAX_IDENTIFIER_BYTES - len(suffix) - len(digest) - 2
    return f"{base.encode()[:keep].decode(errors='ignore')}_{digest}_{suffix}"
