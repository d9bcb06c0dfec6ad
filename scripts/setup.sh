#!/usr/bin/env bash
# Create .venv (Python 3.11) and install the core, every first-party plugin, the example
# third-party plugin and the test extras. Idempotent; sourced by the other scripts.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
stamp=.venv/.lepton-installed
inputs=$(cat pyproject.toml plugins/*/pyproject.toml examples/*/pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$inputs" ]; then
  python -m pip install -q --upgrade pip
  # The torch stack first, pinned: these versions install from the package registry's files.
  python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" "torchaudio==2.11.1"
  editables=(-e ".[test]")
  for d in plugins/*/ examples/*/; do
    if [ -f "$d/pyproject.toml" ]; then editables+=(-e "${d%/}[test]"); fi
  done
  python -m pip install -q "${editables[@]}"
  echo "$inputs" > "$stamp"
fi
