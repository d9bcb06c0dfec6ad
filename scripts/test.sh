#!/usr/bin/env bash
# Set up a fresh clone (virtual environment, core, plugins, example plugin, test extras; all
# from the package registries) and run the tests. Extra arguments go to pytest, e.g.
#   bash scripts/test.sh -m slow        # the slow end-to-end tests (CI runs them too)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [ "$#" -eq 0 ]; then set -- -m "not slow"; fi
python -m pytest "$@"
