#!/usr/bin/env bash
# Run the whole test suite (lint + pytest) against a real PostgreSQL + pgvector: the embedded server by default,
# or PGVECSTORE_TEST_DSN. Installs what it needs into .venv on first use. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
"$VENV/bin/ruff" check .
"$VENV/bin/python" -m pytest -q "$@"
