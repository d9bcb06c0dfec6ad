"""The issue's acceptance run: ``lepton compare`` with ``lora``, ``finetune`` and
``linear-probe`` on a text config, in a subprocess, with a real tiny BERT saved as a
transformers folder; the LoRA row trains under 2% of the backbone's parameters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._adapter_helpers import save_pretrained_bert, write_reviews

pytestmark = pytest.mark.slow

LEPTON = str(Path(sys.executable).parent / "lepton")

CONFIG = """\
domain: text
data:
  sources: [{path: reviews.txt}]
  split: {validation: 0.2, test: 0.2, seed: 0}
backbone: {name: hf-text, pretrained: bert}
train: {epochs: 2, lr: 0.002, batch_size: 16}
evaluation: {bootstrap: 100}
compare:
  strategies:
    - {name: lora, params: {rank: 2, lr: 0.003}, label: lora}
    - finetune
    - linear-probe
  seeds: [0]
  baselines: false
output: {root: runs, name: peft}
"""


def test_lepton_compare_runs_lora_finetune_and_linear_probe_on_text(tmp_path: Path) -> None:
    # 256 wide, 2 layers: 1.7M parameters, of which rank-2 LoRA trains about 1.1%
    save_pretrained_bert(tmp_path / "bert", hidden=256, layers=2, intermediate=1024)
    write_reviews(tmp_path / "reviews.txt", rows=120)
    (tmp_path / "peft.yaml").write_text(CONFIG, encoding="utf-8")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONWARNINGS": "ignore",
        "LEPTON_CACHE_DIR": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        [LEPTON, "compare", "peft.yaml", "--quiet", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {row["name"]: row for row in json.loads(done.stdout)["rows"]}
    assert set(rows) == {"lora", "finetune", "linear-probe"}
    lora = rows["lora"]["runs"][0]
    backbone = lora["parameters"]["backbone"]
    # the adapters and the head, counted from the architecture: r * (in + out) per layer
    h, i, r = 256, 1024, 2
    assert lora["parameters"]["trainable"] == 2 * (4 * r * (h + h) + 2 * r * (h + i)) + h * 2 + 2
    assert lora["parameters"]["trainable"] / backbone < 0.02
    finetune = rows["finetune"]["runs"][0]["parameters"]
    assert finetune["trainable"] == finetune["model"] > backbone
    for row in rows.values():
        assert 0.0 <= row["mean"] <= 1.0 and row["examples_per_second"] > 0
