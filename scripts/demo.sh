#!/usr/bin/env bash
# The main job: add vectors and search them on the embedded PostgreSQL (or DATABASE_URL). Installs into .venv first:
# only what the demo uses (the extras in `all`: cli, embeddings, langchain, llamaindex), no test tools, no root.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
pgvecstore_install all "the library, the command line, the offline embedding model with torch, LangChain, LlamaIndex"
cd "$ROOT"
exec "$VENV/bin/pgvecstore" demo "$@"
