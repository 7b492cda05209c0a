"""The table's primary key (the ``primary_key`` option): ``id`` (ids unique in the table) or ``domain_id, id`` (ids
unique per tenant, ``domain_id`` NOT NULL: the key Citus needs to distribute the table by ``domain_id``).

Keys are tuples of logical column names. See docs/citus.md.
"""

from __future__ import annotations

from pgvecstore.errors import InvalidOptionError

ID_KEY: tuple[str, ...] = ("id",)
DOMAIN_KEY: tuple[str, ...] = ("domain_id", "id")
PRIMARY_KEYS = {"id": ID_KEY, "domain_id, id": DOMAIN_KEY}


def show_key(key: tuple[str, ...]) -> str:
    """The option's spelling of a key: ``'id'`` or ``'domain_id, id'``."""
    return ", ".join(key)


def parse_primary_key(value: object) -> str | None:
    """The ``primary_key`` option in its canonical spelling (None stays None: read from the table, else ``id``);
    anything but the two keys is an `InvalidOptionError` naming the option."""
    if value is None:
        return None
    if isinstance(value, str):
        spelled = ", ".join(part.strip() for part in value.split(","))
        if spelled in PRIMARY_KEYS:
            return spelled
    hint = " (domain_id comes first: tenants' rows sit together)" if value == "id, domain_id" else ""
    raise InvalidOptionError(
        f"primary_key must be 'id' or 'domain_id, id' (or None: read from an existing table, 'id' for a new one), "
        f"got {value!r}{hint}"
    )


def require_domain(key: tuple[str, ...], domain_id: str | None, table: str, action: str) -> None:
    """Refuse `action` (a write, or rows addressed by id) of a store without ``domain_id`` on a table keyed by
    ``domain_id, id``: its rows need a domain, and an id alone names one row per tenant."""
    if key == DOMAIN_KEY and domain_id is None:
        raise InvalidOptionError(
            f"{action} needs a domain_id: table {table} has the primary key (domain_id, id), where an id is unique "
            "only within its tenant. Give the store domain_id='<tenant>'; without one it may only search, count, "
            "get by filter, delete by filter and clear, across all tenants"
        )
