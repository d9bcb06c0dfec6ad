"""A tiny real problem for the search and ranking tests: the example tabular plugin's MLP on a
CSV of three noisy classes written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CENTRES = {"low": [0.0, 0.0, 0.0], "mid": [2.0, -2.0, 0.0], "high": [4.0, 0.0, 2.0]}


def write_csv(folder: Path, rows: int = 120, seed: int = 0, classes: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    names = list(CENTRES)[:classes]
    lines = ["f1,f2,f3,label"]
    for i in range(rows):
        name = names[i % len(names)]
        x = np.asarray(CENTRES[name]) + rng.normal(scale=1.0, size=3)
        lines.append(",".join(f"{v:.4f}" for v in x) + f",{name}")
    path = folder / "data.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_config(folder: Path, extra: str = "", trials: int = 4) -> Path:
    write_csv(folder)
    text = f"""\
domain: tabular
data:
  sources: [{{path: data.csv}}]
  split: {{validation: 0.25, test: 0.25, seed: 0}}
backbone: {{name: mlp, options: {{num_features: 3, hidden: [8]}}}}
train: {{epochs: 3, lr: 0.05, batch_size: 16, monitor: accuracy, progress: false}}
evaluation: {{bootstrap: 20}}
output: {{root: runs, name: search}}
search:
  trials: {trials}
  space:
    train.lr: {{low: 0.001, high: 0.3, log: true}}
    train.epochs: {{low: 2, high: 3}}
    strategy.name: [finetune, freeze]
    strategy.params.layer_decay: {{low: 0.5, high: 1.0, when: {{strategy.name: finetune}}}}
{extra}"""
    path = folder / "search.yaml"
    path.write_text(text, encoding="utf-8")
    return path
