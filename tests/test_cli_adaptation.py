"""Adaptation from a YAML config: ``lepton compare`` with ``data.unlabelled_target`` runs
``dann``, ``mcc`` (labelled source, unlabelled target) and ``shot`` (source-free: the source
model and the unlabelled target only), each beside its control where it has one and the
source-only baseline, in real subprocesses on the example tabular plugin; the same config
through the Python API gives the same table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.slow

LEPTON = str(Path(sys.executable).parent / "lepton")
CENTRES = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])


def lepton(*args: str, cwd: Path) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [LEPTON, *args, "--quiet", "--json"], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def blobs(path: Path, rows: int, seed: int, shift: float, labelled: bool = True) -> None:
    rng = np.random.default_rng(seed)
    lines = ["a,b,c,label" if labelled else "a,b,c"]
    for i in range(rows):
        x = CENTRES[i % 3] * (1 + shift) + rng.normal(0, 0.8, 3) + shift
        values = ",".join(f"{v:.4f}" for v in x)
        lines.append(f"{values},c{i % 3}" if labelled else values)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


SOURCE = """\
domain: tabular
data: source.csv
backbone: {name: mlp, options: {num_features: 3, hidden: [16]}}
strategy: finetune
train: {epochs: 4, lr: 0.05, batch_size: 32}
evaluation: {bootstrap: 0}
"""

ADAPT = """\
domain: tabular
data:
  sources:
    - {path: source.csv, split: train}
    - {path: target.csv, split: test}
  unlabelled_target: [target-unlabelled.csv]
backbone: {name: mlp, pretrained: runs/source/model}
train: {epochs: 3, lr: 0.02, batch_size: 32}
evaluation: {bootstrap: 200}
compare:
  strategies: [dann, mcc, {name: shot, params: {validator: snd}}]
  seeds: [0]
  baselines: [source-only]
  source_model: runs/source/model
"""


def test_lepton_compare_adapts_from_a_config(tmp_path: Path) -> None:
    blobs(tmp_path / "source.csv", 300, seed=0, shift=0.0)
    blobs(tmp_path / "target.csv", 150, seed=1, shift=0.7)
    blobs(tmp_path / "target-unlabelled.csv", 150, seed=2, shift=0.7, labelled=False)
    (tmp_path / "source.yaml").write_text(SOURCE, encoding="utf-8")
    (tmp_path / "adapt.yaml").write_text(ADAPT, encoding="utf-8")
    lepton("run", "source.yaml", cwd=tmp_path)
    result = lepton("compare", "adapt.yaml", cwd=tmp_path)
    rows = {r["name"]: r for r in result["rows"]}
    assert list(rows) == [
        "dann",
        "mcc",
        "shot(validator=snd)",
        "dann control",
        "mcc control",
        "source-only",
    ]
    assert rows["dann"]["control"] == "dann control"
    assert rows["shot(validator=snd)"]["control"] is None  # source-only is its control
    for name in ("dann", "mcc", "shot(validator=snd)"):
        (run,) = rows[name]["runs"]
        assert run["details"]["target_examples"] == 150  # the unlabelled target was read
        assert set(rows[name]["differences"]) >= {"source-only"}
    assert rows["dann control"]["params"]["weight"] == 0.0
    # the source-free row kept the source head and chose its epoch without target labels
    shot = rows["shot(validator=snd)"]["runs"][0]["details"]
    assert shot["selection"]["validator"] == "snd"
    folder = tmp_path / "runs" / "adapt-compare"
    assert (folder / "report.html").is_file() and (folder / "comparison.json").is_file()
