# Sourced by the other scripts: make sure .venv exists, then `pgvecstore_install EXTRAS` installs this checkout
# with those extras (demo.sh: all; test.sh: all,dev) at the exact versions of scripts/constraints.txt (the scripts'
# own pins; pyproject.toml gives only ranges). Installs only when pyproject.toml or scripts/constraints.txt changed
# since the last install of those extras (or of all,dev, which includes every other set). Needs no root; installs no
# system package.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"
CONSTRAINTS="$ROOT/scripts/constraints.txt"
if [ ! -x "$VENV/bin/python" ]; then
    echo "pgvecstore: creating the virtualenv $VENV" >&2
    "$PYTHON_BIN" -m venv "$VENV"
fi

# The stamp of an install of EXTRAS: the hash of pyproject.toml and scripts/constraints.txt it was made from. The
# full set (all,dev) keeps the historical name .pgvecstore-installed.
pgvecstore_stamp() {
    if [ "$1" = "all,dev" ]; then echo "$VENV/.pgvecstore-installed"; else echo "$VENV/.pgvecstore-installed-$1"; fi
}

pgvecstore_install() {
    local extras="$1" what="$2"
    local want stamp full
    want="$(cat "$ROOT/pyproject.toml" "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)"
    stamp="$(pgvecstore_stamp "$extras")"
    full="$(pgvecstore_stamp "all,dev")"
    if { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; } || { [ -f "$full" ] && [ "$(cat "$full")" = "$want" ]; }
    then
        return 0
    fi
    echo "pgvecstore: installing pgvecstore[$extras] ($what) into $VENV" >&2
    echo "pgvecstore: the first run downloads and installs torch and the rest: it takes a few minutes" >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # torch is pinned (torch==2.13.0) by scripts/constraints.txt, not by the package (torch>=2.6 there); pip
    # installs the build it finds first (see docs/quickstart.md: install torch from the index of your choice first
    # to pick CPU or CUDA).
    "$VENV/bin/python" -m pip install -c "$CONSTRAINTS" -e "$ROOT[$extras]"
    echo "$want" > "$stamp"
    echo "pgvecstore: installed pgvecstore[$extras] into $VENV" >&2
}
