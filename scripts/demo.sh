#!/usr/bin/env bash
# The main job: add vectors and search them on the embedded PostgreSQL (or DATABASE_URL). Installs into .venv first.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
exec "$VENV/bin/pgvecstore" demo "$@"
