#!/usr/bin/env bash
# Mutation testing (issue 20; not in CI): scripts/mutation.sh filters|tenancy|planner [...]. Installs cosmic-ray
# into a virtualenv of its own (.venv/mutation) and runs scripts/mutation.py with it; the tests run with the
# project's interpreter: $PGVECSTORE_PYTHON, else .venv (installed as scripts/test.sh does). Reports go to
# build/mutation/<scope>.md. On a shared machine: nice -n 19 scripts/mutation.sh filters tenancy.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PGVECSTORE_PYTHON:-}" ]; then
    source "$ROOT/scripts/bootstrap.sh"
    pgvecstore_install all,dev "the library with every extra, and the test tools"
    export PGVECSTORE_PYTHON="$VENV/bin/python"
fi
MUTATION="$ROOT/.venv/mutation"
MUTATION_STAMP="$MUTATION/.pgvecstore-installed"
MUTATION_WANT="cosmic-ray==8.7.0"
if [ ! -f "$MUTATION_STAMP" ] || [ "$(cat "$MUTATION_STAMP")" != "$MUTATION_WANT" ]; then
    echo "pgvecstore: installing $MUTATION_WANT into $MUTATION" >&2
    "${PYTHON:-python3}" -m venv "$MUTATION"
    "$MUTATION/bin/python" -m pip install --quiet "$MUTATION_WANT"
    echo "$MUTATION_WANT" > "$MUTATION_STAMP"
fi
exec "$MUTATION/bin/python" "$ROOT/scripts/mutation.py" "$@"
