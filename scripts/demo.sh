#!/usr/bin/env bash
# The main job, offline: set up .venv (as scripts/test.sh does), then transfer a ResNet from
# printed digits (rendered from matplotlib's fonts) to scikit-learn's handwritten digits,
# sweeping the label budget and comparing strategies with baselines over seeds.
# Extra arguments go to examples/digits/demo.py (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python examples/digits/demo.py "$@"
