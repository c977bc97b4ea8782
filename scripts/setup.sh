#!/usr/bin/env bash
# Set up canao in ./.venv on a fresh machine (offline-capable: PyPI only).
# torch is installed first from the pinned local CPU wheel, so that nothing
# later resolves a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e ".[test]"
echo "canao installed in $(pwd)/.venv"
