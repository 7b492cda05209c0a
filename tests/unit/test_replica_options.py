"""The read-replica options (docs/replicas.md) are checked at construction, and WAL positions read right."""

from __future__ import annotations

import pytest

from pgvecstore import InvalidOptionError, PgVectorStore, StoreConfig
from pgvecstore.sql.replication import lsn_value


def test_replica_options_are_checked_naming_the_option() -> None:
    with pytest.raises(InvalidOptionError, match="read_replicas must be a list"):
        PgVectorStore(read_replicas="postgresql://replica/db")
    with pytest.raises(InvalidOptionError, match=r"read_replicas\[1\]"):
        PgVectorStore(read_replicas=["postgresql://a/db", ""])
    with pytest.raises(InvalidOptionError, match="max_replica_lag"):
        PgVectorStore(read_replicas=["postgresql://a/db"], max_replica_lag=0)
    with pytest.raises(InvalidOptionError, match="read_your_writes_timeout"):
        PgVectorStore(read_your_writes_timeout=-1)
    with pytest.raises(InvalidOptionError, match="read_your_writes must be True or False"):
        PgVectorStore(read_your_writes="yes")
    with pytest.raises(InvalidOptionError, match="more than once"):
        PgVectorStore(read_replicas=["postgresql://a/db", "postgresql://a/db"])
    with pytest.raises(InvalidOptionError, match="percent-encode"):
        PgVectorStore(read_replicas=["postgresql://u:pa/ss@replica/db"])


def test_replica_defaults_and_a_list_kept_as_a_tuple() -> None:
    config = StoreConfig(read_replicas=["postgresql://a/db", "postgresql://b/db"])
    assert config.read_replicas == ("postgresql://a/db", "postgresql://b/db")
    assert (config.max_replica_lag, config.read_your_writes, config.read_your_writes_timeout) == (5.0, True, 1.0)
    assert StoreConfig().read_replicas == ()


def test_replica_passwords_are_never_shown() -> None:
    store = PgVectorStore(read_replicas=["postgresql://app:s3cret@replica1/db"])
    assert "s3cret" not in repr(store)
    assert "postgresql://app:***@replica1/db" in repr(store)


@pytest.mark.parametrize(("text", "value"), [
    (None, 0), ("0/0", 0), ("0/16B3748", 0x16B3748), ("16/B374D848", (0x16 << 32) | 0xB374D848),
])
def test_wal_positions_compare_as_integers(text: str | None, value: int) -> None:
    assert lsn_value(text) == value
