"""Connection strings for tests that log in as another role (tenancy, row-level security, privileges)."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

import pytest


def dsn_as(dsn: str, user: str, password: str | None = None, *, database: str | None = None) -> str:
    """The same server as `dsn` (and the same database unless `database` names another), logged in as `user`.
    Skips the test when `dsn` is not URL-style (``postgresql://...``): only those can be rewritten here."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        pytest.skip("needs a URL-style DSN to log in as another role")
    login = quote(user, safe="") if password is None else f"{quote(user, safe='')}:{quote(password, safe='')}"
    location = parts.netloc.rsplit("@", 1)[-1]
    parts = parts._replace(netloc=f"{login}@{location}")
    return urlunsplit(parts if database is None else parts._replace(path=f"/{database}"))
