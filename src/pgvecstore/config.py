"""Store configuration: every option, its default and its validation, checked once at construction."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from pgvecstore import covering
from pgvecstore.compact import (
    DEFAULT_RERANK_FACTOR,
    MAX_COLUMN_DIMENSIONS,
    QUANTIZATIONS,
    RERANK_FACTOR_RANGE,
    VECTOR_TYPES,
    check_index,
)
from pgvecstore.errors import InvalidOptionError, did_you_mean
from pgvecstore.filter_limits import MAX_FILTER_CONDITIONS, MAX_FILTER_VALUES
from pgvecstore.identifiers import (
    INDEXED_METADATA_TYPES,
    LOGICAL_COLUMNS,
    derived_name,
    indexed_metadata_column_name,
    text_terms_column_name,
    validate_identifier,
    validate_indexed_metadata_key,
    validate_text_search_config,
)
from pgvecstore.metric import Metric
from pgvecstore.primary_key import parse_primary_key
from pgvecstore.search_tuning import validate_search_options

# Every statement of a store's pool is stopped after this many seconds unless the option says otherwise (None:
# no limit). Index builds, enable_text_search and clear() lift it inside their own transactions.
DEFAULT_STATEMENT_TIMEOUT = 60.0

# Read replicas (docs/replicas.md): a replica further behind than this many seconds is skipped; a read after a
# write waits at most this long for a replica to replay the write before it runs on the primary.
DEFAULT_MAX_REPLICA_LAG = 5.0
DEFAULT_READ_YOUR_WRITES_TIMEOUT = 1.0

METRICS = tuple(m.value for m in Metric)
INDEX_TYPES = ("none", "hnsw", "ivfflat")
ID_TYPES = ("uuid", "text")
METADATA_INDEXES = ("none", "gin")
MAX_DIMENSIONS = 16000

# Valid ranges of pgvector's index and query parameters (pgvector 0.8).
INDEX_PARAM_RANGES: dict[str, dict[str, tuple[int, int]]] = {
    "hnsw": {"m": (2, 100), "ef_construction": (4, 1000)},
    "ivfflat": {"lists": (1, 32768)},
}
HNSW_DEFAULTS = {"m": 16, "ef_construction": 64}


def redact_dsn(dsn: str | None) -> str | None:
    """The connection string with any password replaced by ``***`` (URL and key=value forms).

    A URL's password is everything between the user name's ``:`` and the last ``@``, so a password with an
    unencoded ``/``, ``#``, ``?``, ``:`` or ``@`` is hidden whole (at worst, part of the host is hidden too).
    """
    if dsn is None:
        return None
    redacted = dsn
    scheme = redacted.find("://")
    if scheme >= 0:
        start = scheme + 3
        at = redacted.rfind("@", start)
        if at >= 0:
            userinfo = redacted[start:at]
            colon = userinfo.find(":")
            if colon >= 0:
                redacted = f"{redacted[:start]}{userinfo[:colon]}:***{redacted[at:]}"
    redacted = re.sub(r"(?i)(password\s*=\s*)('[^']*'|[^\s&]+)", r"\1***", redacted)
    return redacted


_URL_SPECIALS = {"/": "%2F", "#": "%23", "?": "%3F", "@": "%40"}


def check_dsn(dsn: str) -> None:
    """Refuse a URL whose user name or password holds an unencoded ``/ # ? @``: drivers then read part of the
    password as the host or port and quote it in their errors. Key=value strings are not checked."""
    scheme = dsn.find("://")
    if scheme < 0:
        return
    start = scheme + 3
    at = dsn.rfind("@", start)
    if at < 0:
        return
    userinfo = dsn[start:at]
    found = [char for char in _URL_SPECIALS if char in userinfo]
    if found:
        encoded = ", ".join(f"{char} as {_URL_SPECIALS[char]}" for char in found)
        raise InvalidOptionError(
            f"the connection string {redact_dsn(dsn)} has {', '.join(repr(c) for c in found)} in its user name or "
            f"password: percent-encode them ({encoded}), e.g. with urllib.parse.quote(password, safe='')"
        )


def _check_int(option: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOptionError(f"{option} must be an integer between {low} and {high}, got {value!r}")
    if not low <= value <= high:
        raise InvalidOptionError(f"{option} must be between {low} and {high}, got {value}")
    return value


def _check_choice(option: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        hint = did_you_mean(value, choices, cutoff=0.5, list_known=False) if isinstance(value, str) else ""
        raise InvalidOptionError(
            f"{option} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}{hint}"
        )
    return value


def _check_bool(option: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidOptionError(f"{option} must be True or False, got {value!r}")
    return value


@dataclass(frozen=True)
class StoreConfig:
    """Validated options of a `PgVectorStore`. Build it with `StoreConfig.from_options(...)`.

    ``dimensions`` may be left out for a table that exists: the store reads it from the vector column.
    """

    dimensions: int | None = None
    connection_string: str | None = field(default=None, repr=False)
    metric: str = Metric.COSINE
    schema: str = "edubot"
    table_name: str = "knowledge_embeddings"
    pool_min_size: int = 2
    pool_max_size: int = 10
    auto_create_table: bool = True
    id_type: str = "uuid"
    columns: Mapping[str, str] = field(default_factory=dict)
    index_type: str = "none"
    auto_create_index: bool = False
    min_rows_for_index: int = 1000
    index_params: Mapping[str, int] = field(default_factory=dict)
    search_params: Mapping[str, Any] = field(default_factory=dict)
    domain_id: str | None = None
    row_level_security: bool = False
    batch_size: int = 5000
    command_timeout: float | None = None
    connect_timeout: float = 10.0
    statement_timeout: float | None = DEFAULT_STATEMENT_TIMEOUT
    max_filter_conditions: int = MAX_FILTER_CONDITIONS
    max_filter_values: int = MAX_FILTER_VALUES
    statement_cache_size: int = 100
    transaction_pooler: bool | None = None
    connect_kwargs: Mapping[str, Any] = field(default_factory=dict, repr=False)
    text_search: bool = True
    text_search_config: str | None = None
    text_search_column: str | None = None
    vector_type: str | None = None
    quantization: str | None = None
    rerank_factor: int = DEFAULT_RERANK_FACTOR
    indexed_metadata: Mapping[str, str] = field(default_factory=dict)
    covering_metadata: tuple[str, ...] = ()
    metadata_index: str = "none"
    metadata_statistics: int | None = None
    primary_key: str | None = None
    read_replicas: tuple[str, ...] = field(default=(), repr=False)
    max_replica_lag: float = DEFAULT_MAX_REPLICA_LAG
    read_your_writes: bool = True
    read_your_writes_timeout: float = DEFAULT_READ_YOUR_WRITES_TIMEOUT

    # -- construction --------------------------------------------------------------------------------------
    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None = None, /, **kwargs: Any) -> StoreConfig:
        """Build and validate a config from a dict and/or keyword options (keywords win)."""
        merged: dict[str, Any] = dict(options or {})
        merged.update(kwargs)
        known = [f.name for f in fields(cls)]
        for name in merged:
            if name not in known:
                raise InvalidOptionError(f"unknown option {name!r}{did_you_mean(str(name), known)}")
        return cls(**merged)

    @classmethod
    def build(
        cls,
        config: StoreConfig | Mapping[str, Any] | None = None,
        /,
        *,
        defaults: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> StoreConfig:
        """A config from a `StoreConfig` or a dict of options, overridden by keyword `options`; `defaults` fill
        only what neither gives (the adapters' text ids and table names)."""
        if isinstance(config, StoreConfig):
            if not options:
                return config
            base = config.options()
        elif config is None or isinstance(config, Mapping):
            base = {**(defaults or {}), **dict(config or {})}
        else:
            raise InvalidOptionError(
                f"config must be a StoreConfig or a dict of options, got {type(config).__name__}"
            )
        return cls.from_options(base, **options)

    def options(self) -> dict[str, Any]:
        """Every option as a dict (what `from_options` takes)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __post_init__(self) -> None:
        if self.dimensions is not None:
            _check_int("dimensions", self.dimensions, 1, MAX_DIMENSIONS)
        if self.connection_string is not None and not isinstance(self.connection_string, str):
            raise InvalidOptionError("connection_string must be a string such as 'postgresql://user@host:5432/db'")
        object.__setattr__(self, "metric", Metric(_check_choice("metric", self.metric, METRICS)))
        validate_identifier(self.schema, "schema")
        validate_identifier(self.table_name, "table_name")
        self._check_pool()
        _check_bool("auto_create_table", self.auto_create_table)
        _check_choice("id_type", self.id_type, ID_TYPES)
        object.__setattr__(self, "columns", self._validated_columns(self.columns))
        _check_choice("index_type", self.index_type, INDEX_TYPES)
        _check_bool("auto_create_index", self.auto_create_index)
        _check_int("min_rows_for_index", self.min_rows_for_index, 0, 2**62)
        object.__setattr__(self, "index_params", validate_index_params(self.index_type, self.index_params))
        object.__setattr__(self, "search_params", validate_search_options(self.search_params))
        self._check_tenancy()
        _check_int("batch_size", self.batch_size, 1, 1_000_000)
        _check_int("statement_cache_size", self.statement_cache_size, 0, 100_000)
        if self.transaction_pooler is not None and not isinstance(self.transaction_pooler, bool):
            raise InvalidOptionError(
                f"transaction_pooler must be True, False or None (None: True when statement_cache_size=0), "
                f"got {self.transaction_pooler!r}"
            )
        _check_int("max_filter_conditions", self.max_filter_conditions, 1, 1_000_000)
        _check_int("max_filter_values", self.max_filter_values, 1, 100_000_000)
        for option in ("command_timeout", "connect_timeout", "statement_timeout"):
            value = getattr(self, option)
            if value is None and option != "connect_timeout":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise InvalidOptionError(f"{option} must be a positive number of seconds, got {value!r}")
        object.__setattr__(self, "connect_kwargs", validate_connect_kwargs(self.connect_kwargs))
        self._check_text_search()
        self._check_compact()
        self._check_metadata_indexes()
        object.__setattr__(self, "primary_key", parse_primary_key(self.primary_key))
        self._check_replicas()

    def _check_metadata_indexes(self) -> None:
        _check_choice("metadata_index", self.metadata_index, METADATA_INDEXES)
        if self.metadata_statistics is not None:
            _check_int("metadata_statistics", self.metadata_statistics, 1, 10_000)
        declared = self.indexed_metadata
        if not isinstance(declared, Mapping):
            raise InvalidOptionError(
                f"indexed_metadata must be a mapping of metadata keys to types such as {{'year': 'int'}}, "
                f"got {declared!r}"
            )
        taken = {column: f"the column of {logical!r}" for logical, column in self.columns.items()}
        tsv_column = self.resolved_text_search_column
        taken[tsv_column] = "the text-search column"
        taken[text_terms_column_name(tsv_column)] = "the text-search term column"
        result: dict[str, str] = {}
        for key, kind in declared.items():
            validate_indexed_metadata_key(key, "indexed_metadata")
            if not isinstance(kind, str) or kind not in INDEXED_METADATA_TYPES:
                hint = did_you_mean(kind, INDEXED_METADATA_TYPES) if isinstance(kind, str) else ""
                raise InvalidOptionError(
                    f"indexed_metadata[{key!r}]: unknown type {kind!r}; use one of "
                    f"{', '.join(repr(t) for t in INDEXED_METADATA_TYPES)}{hint}"
                )
            column = indexed_metadata_column_name(key)
            if column in taken:
                raise InvalidOptionError(
                    f"indexed_metadata[{key!r}]: its column {column!r} is already {taken[column]}; map that column "
                    "to another name with the 'columns' option, or index another key"
                )
            result[key] = kind
        object.__setattr__(self, "indexed_metadata", result)
        covered = covering.validated_keys(self.covering_metadata, result)
        object.__setattr__(self, "covering_metadata", covered)
        # Without vector_type the column's type comes from the table, if there is one: only what no type can hold
        # is refused here; set-up checks the type it creates or finds.
        covering.check_dimensions(covered, self.vector_type or "halfvec", self.dimensions)

    def _check_replicas(self) -> None:
        """read_replicas (DSNs, stored as a tuple), max_replica_lag, read_your_writes and its timeout."""
        replicas: object = self.read_replicas
        if isinstance(replicas, str) or not isinstance(replicas, list | tuple):
            raise InvalidOptionError(
                "read_replicas must be a list of connection strings such as ['postgresql://user@replica1/db'], "
                f"got {type(replicas).__name__}"
            )
        for position, dsn in enumerate(replicas):
            if not isinstance(dsn, str) or not dsn.strip():
                raise InvalidOptionError(
                    f"read_replicas[{position}] must be a non-empty connection string, got {type(dsn).__name__}"
                )
            check_dsn(dsn)
        repeated = sorted({str(redact_dsn(dsn)) for dsn in replicas if list(replicas).count(dsn) > 1})
        if repeated:
            raise InvalidOptionError(f"read_replicas names {', '.join(repeated)} more than once")
        object.__setattr__(self, "read_replicas", tuple(replicas))
        for option in ("max_replica_lag", "read_your_writes_timeout"):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86_400:
                raise InvalidOptionError(f"{option} must be a number of seconds above 0 (at most 86400), got {value!r}")
        _check_bool("read_your_writes", self.read_your_writes)

    def _check_pool(self) -> None:
        _check_int("pool_min_size", self.pool_min_size, 0, 1000)
        _check_int("pool_max_size", self.pool_max_size, 1, 1000)
        if self.pool_min_size > self.pool_max_size:
            raise InvalidOptionError(
                f"pool_min_size ({self.pool_min_size}) must not exceed pool_max_size ({self.pool_max_size})"
            )

    def _check_tenancy(self) -> None:
        if self.domain_id is not None:
            if not isinstance(self.domain_id, str) or not self.domain_id:
                raise InvalidOptionError(f"domain_id must be a non-empty string or None, got {self.domain_id!r}")
            if len(self.domain_id) > 100:
                raise InvalidOptionError(
                    f"domain_id must be at most 100 characters (the column is VARCHAR(100)), got {len(self.domain_id)}"
                )
            if "\x00" in self.domain_id:
                raise InvalidOptionError("domain_id must not contain NUL characters")
        _check_bool("row_level_security", self.row_level_security)
        if self.row_level_security and self.domain_id is None:
            raise InvalidOptionError(
                "row_level_security=True needs a domain_id: the policy lets a store see only its own domain's rows. "
                "Administrative access to every row goes through the table owner with row_level_security=False"
            )

    def _check_text_search(self) -> None:
        _check_bool("text_search", self.text_search)
        if self.text_search_config is not None:
            validate_text_search_config(self.text_search_config, "text_search_config")
        if self.text_search_column is not None:
            validate_identifier(self.text_search_column, "text_search_column")
        tsv_column = self.resolved_text_search_column
        for derived in (tsv_column, text_terms_column_name(tsv_column)):
            if derived in self.columns.values():
                logical = next(name for name, column in self.columns.items() if column == derived)
                raise InvalidOptionError(
                    f"text_search_column={tsv_column!r}: column {derived!r} (which full-text search keeps) is "
                    f"already the column of {logical!r}; name another text_search_column"
                )

    def _check_compact(self) -> None:
        """vector_type, quantization and rerank_factor, and the index pgvector can build with them."""
        if self.vector_type is not None:
            _check_choice("vector_type", self.vector_type, VECTOR_TYPES)
            limit = MAX_COLUMN_DIMENSIONS[self.vector_type]
            if self.dimensions is not None and self.dimensions > limit:
                raise InvalidOptionError(
                    f"vector_type={self.vector_type!r} holds at most {limit} dimensions, got {self.dimensions}"
                )
        if self.quantization is not None:
            _check_choice("quantization", self.quantization, QUANTIZATIONS)
        _check_int("rerank_factor", self.rerank_factor, *RERANK_FACTOR_RANGE)
        check_index(self.index_type, self.vector_type or "vector", self.quantization, self.dimensions)

    @staticmethod
    def _validated_columns(columns: object) -> dict[str, str]:
        if not isinstance(columns, Mapping):
            raise InvalidOptionError(f"columns must be a mapping of logical names to column names, got {columns!r}")
        result = {name: name for name in LOGICAL_COLUMNS}
        for logical, column in columns.items():
            if logical not in LOGICAL_COLUMNS:
                raise InvalidOptionError(
                    f"columns: unknown logical column {logical!r}{did_you_mean(str(logical), LOGICAL_COLUMNS)}"
                )
            result[logical] = validate_identifier(column, f"columns[{logical!r}]")
        mapped = list(result.values())
        duplicates = sorted({c for c in mapped if mapped.count(c) > 1})
        if duplicates:
            raise InvalidOptionError(
                f"columns: {', '.join(map(repr, duplicates))} is mapped to more than one logical column"
            )
        return result

    # -- derived -------------------------------------------------------------------------------------------
    @property
    def resolved_text_search_column(self) -> str:
        """The tsvector column of full-text search: `text_search_column`, else ``<content column>_tsv``."""
        return self.text_search_column or derived_name(self.columns["content"], "tsv")

    @property
    def pooled_transactions(self) -> bool:
        """Whether the store talks to PostgreSQL through a transaction pooler (``transaction_pooler``; left out,
        a ``statement_cache_size`` of 0, which such a pooler needs, says so): its settings then travel inside each
        transaction instead of at connect time (see `pgvecstore.connection.transaction_settings`)."""
        if self.transaction_pooler is not None:
            return self.transaction_pooler
        return self.statement_cache_size == 0

    def resolved_dsn(self) -> str | None:
        """The explicit connection string, else DATABASE_URL, else None (meaning: use the embedded server)."""
        return self.connection_string or os.environ.get("DATABASE_URL") or None

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "connection_string"}
        shown["connection_string"] = redact_dsn(self.connection_string)
        shown["connect_kwargs"] = {key: "..." for key in self.connect_kwargs}  # may hold a password
        shown["read_replicas"] = tuple(redact_dsn(dsn) for dsn in self.read_replicas)
        return "StoreConfig(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


# asyncpg's connection arguments a store passes on from `connect_kwargs` (asyncpg.connect's, and two of its
# pools'); the others are the store's own, set by the option named here.
CONNECT_KWARGS = frozenset({
    "user", "password", "passfile", "ssl", "direct_tls",
    "server_settings", "target_session_attrs", "krbsrvname", "gsslib", "max_cached_statement_lifetime",
    "max_cacheable_statement_size", "max_queries", "max_inactive_connection_lifetime",
})
STORE_CONNECT_OPTIONS = {  # where to connect is the connection string's (and each read replica's) to say
    "dsn": "connection_string", "host": "connection_string", "port": "connection_string",
    "database": "connection_string", "service": "connection_string", "servicefile": "connection_string",
    "timeout": "connect_timeout", "command_timeout": "command_timeout",
    "statement_cache_size": "statement_cache_size", "min_size": "pool_min_size", "max_size": "pool_max_size",
}
# Server settings the store sets itself (its sessions run in UTC for created_at; the others are options).
STORE_SERVER_SETTINGS = {"statement_timeout": "the statement_timeout option", "timezone": "none: the store runs "
                         "its sessions in UTC (created_at)", "pgvecstore.domain_id": "the domain_id option",
                         "plan_cache_mode": "none: the store plans each of its statements for its own values"}


def validate_connect_kwargs(kwargs: object) -> dict[str, Any]:
    """Check `connect_kwargs` (asyncpg's connection arguments for the pools a store opens); an argument the store
    sets itself, or an unknown one, is an error naming what to use instead."""
    if not isinstance(kwargs, Mapping):
        raise InvalidOptionError(f"connect_kwargs must be a dict of asyncpg connection arguments, got {kwargs!r}")
    for name in kwargs:
        if name in STORE_CONNECT_OPTIONS:
            raise InvalidOptionError(
                f"connect_kwargs[{name!r}]: the store sets it; use the {STORE_CONNECT_OPTIONS[name]!r} option"
            )
        if name not in CONNECT_KWARGS:
            raise InvalidOptionError(
                f"connect_kwargs[{name!r}] is not an asyncpg connection argument the store passes on"
                f"{did_you_mean(str(name), sorted(CONNECT_KWARGS))}"
            )
    settings = kwargs.get("server_settings") or {}
    if not isinstance(settings, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in settings.items()):
        raise InvalidOptionError("connect_kwargs['server_settings'] must be a dict of setting names to strings")
    for name in settings:
        if name.lower() in STORE_SERVER_SETTINGS:
            raise InvalidOptionError(
                f"connect_kwargs['server_settings'][{name!r}]: the store sets it (use "
                f"{STORE_SERVER_SETTINGS[name.lower()]})"
            )
    return dict(kwargs)


def validate_index_params(index_type: str, params: object) -> dict[str, int]:
    """Check index parameters against pgvector's ranges; unknown names and bad values name the parameter."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise InvalidOptionError(f"index_params must be a mapping, got {params!r}")
    allowed = {name for ranges in INDEX_PARAM_RANGES.values() for name in ranges}
    if index_type in INDEX_PARAM_RANGES:
        allowed = set(INDEX_PARAM_RANGES[index_type])
    ranges = {**INDEX_PARAM_RANGES["hnsw"], **INDEX_PARAM_RANGES["ivfflat"]}
    result: dict[str, int] = {}
    for name, value in params.items():
        if name not in allowed:
            raise InvalidOptionError(
                f"index_params: unknown parameter {name!r} for index_type {index_type!r}"
                f"{did_you_mean(str(name), allowed)}"
            )
        low, high = ranges[name]
        result[name] = _check_int(f"index_params.{name}", value, low, high)
    if "m" in result and "ef_construction" in result and result["ef_construction"] < 2 * result["m"]:
        raise InvalidOptionError(
            f"index_params.ef_construction ({result['ef_construction']}) must be at least 2 * m ({2 * result['m']})"
        )
    return result


def validate_search_params(params: object) -> dict[str, Any]:
    """Check query-time parameters (see `pgvecstore.search_tuning.SearchOptions`); errors name the option."""
    return validate_search_options(params)
