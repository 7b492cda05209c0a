# Sourced by the other scripts: make sure .venv exists and holds this checkout with all extras.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "pgvecstore: creating $VENV" >&2
    "$PYTHON_BIN" -m venv "$VENV"
fi
STAMP="$VENV/.pgvecstore-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "pgvecstore: installing pgvecstore[all,dev] into $VENV (first run takes a few minutes)" >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # torch is pinned (torch==2.13.0, the CPU build) by the embeddings extra in pyproject.toml.
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[all,dev]"
    echo "$WANT" > "$STAMP"
fi
# PgBouncer, for the tests that run the store behind a transaction-mode pooler (Debian package; needs root).
if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ] && [ "$(id -u)" = 0 ] \
        && command -v apt-get >/dev/null 2>&1; then
    echo "pgvecstore: installing pgbouncer (apt-get) for the pooler tests" >&2
    (apt-get install -y -q pgbouncer >/dev/null 2>&1 \
        || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q pgbouncer >/dev/null 2>&1)) \
        || echo "pgvecstore: could not install pgbouncer; its tests will say so" >&2
fi
