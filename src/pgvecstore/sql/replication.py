"""What the store asks about replication: a replica's health and replay position, the primary's write position.

WAL positions travel as their text form (``'16/B374D848'``) and are compared in Python as integers
(`lsn_value`), so no statement depends on ``pg_lsn`` arithmetic or a driver codec for it.
"""

from __future__ import annotations

from pgvecstore.sql.params import Statement

# On a replica: whether it still follows a primary (in recovery), its lag in seconds, and how far it has
# replayed. The lag is the usual formula: 0 when it has replayed all it received, else the age of the last
# transaction it replayed (NULL when none was replayed since it started: reported as 0, nothing to be behind on).
REPLICA_HEALTH = Statement(
    "SELECT pg_is_in_recovery(), "
    "CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() IS NULL "
    "OR pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0 "
    "ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8, "
    "pg_last_wal_replay_lsn()::text"
)
# On a replica: how far it has replayed (NULL once promoted).
REPLAY_POSITION = Statement("SELECT pg_last_wal_replay_lsn()::text")
# On the primary, right after a write committed: the WAL position its commit record ends at or before.
WRITE_POSITION = Statement("SELECT pg_current_wal_lsn()::text")


def lsn_value(text: str | None) -> int:
    """A WAL position's text form (``'16/B374D848'``) as an integer; 0 for NULL."""
    if not text:
        return 0
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)

