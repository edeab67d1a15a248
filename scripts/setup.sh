#!/usr/bin/env bash
# Creates .venv and installs kronos-bot with its dev extra, CPU torch first.
#
# Why torch first: with no torch installed, `pip install kronos-bot` would let pip pick torch from PyPI,
# which on Linux is a multi-GB CUDA build. Installing the CPU build first satisfies the package's torch
# range, so pip installs nothing more for it.
#
# Torch source, in order:
#   1. already in .venv at the wanted version -> nothing to do (the script is idempotent);
#   2. a local wheel (pip's find-links / wheel cache, no network) -> used offline;
#   3. the official CPU wheel index ($TORCH_INDEX_URL, default https://download.pytorch.org/whl/cpu).
# Override: TORCH_VERSION=2.13.0, TORCH_INDEX_URL=..., PYTHON=python3.11, VENV=.venv.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
STAMP="$VENV/.kronos-bot-installed"

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python >= 3.11 or set PYTHON=..."
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || die "Python >= 3.11 is required ($("$PYTHON" --version 2>&1) found); set PYTHON=python3.11"

# Up to date already? (stamp newer than pyproject.toml and this script)
if [[ -f "$STAMP" && "$STAMP" -nt pyproject.toml && "$STAMP" -nt "$0" && -x "$VENV/bin/kronos-bot" ]]; then
    say "environment is up to date ($VENV)"
    exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV" || die "could not create $VENV (on Debian/Ubuntu: apt-get install python3-venv)"
fi
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --upgrade "pip>=24" || die "could not upgrade pip"

installed_torch=$("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)
if [[ "$installed_torch" == "$TORCH_VERSION"* ]]; then
    say "torch $installed_torch already installed"
else
    say "installing CPU torch $TORCH_VERSION"
    # The wheel itself from local files only (fails at once where there is none), then its small
    # pure-Python dependencies from the usual index.
    if "$PY" -m pip install --quiet --no-index --no-deps "torch==$TORCH_VERSION" 2>/dev/null \
        && "$PY" -m pip install --quiet "torch==$TORCH_VERSION"; then
        say "torch installed from the local wheel cache"
    else
        say "no local torch wheel; using the CPU wheel index $TORCH_INDEX_URL"
        "$PY" -m pip install --quiet --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION" \
            || die "could not install CPU torch $TORCH_VERSION from $TORCH_INDEX_URL"
    fi
fi
torch_build=$("$PY" -c 'import torch; print(torch.__version__, "cuda" if torch.version.cuda else "cpu")') \
    || die "torch does not import"
say "torch: $torch_build"

say "installing kronos-bot with the dev extra"
"$PY" -m pip install --quiet -e ".[dev]" || die "pip install -e .[dev] failed"

after=$("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))')
[[ "$after" == "$installed_torch" || "$after" == "$TORCH_VERSION"* ]] \
    || die "installing the package replaced torch ($after); check the torch range in pyproject.toml"

"$VENV/bin/kronos-bot" --version >/dev/null || die "the kronos-bot entry point does not run"
touch "$STAMP"
say "done: activate with 'source $VENV/bin/activate' or use 'make run' / 'make test'"
