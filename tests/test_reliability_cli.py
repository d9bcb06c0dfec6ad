"""The reliability probes (issue 20) that need real ``lepton`` processes: two ``lepton run`` of
one name (the second is refused at once, naming the holder's pid), SIGTERM (``kill``,
``docker stop``, Slurm pre-emption) ending a run as ``interrupted`` with a checkpoint that
``--resume`` continues from, ``lepton predict`` refusing a model whose manifest was edited, and
a text CSV whose header names its label column ``sentiment`` training on two classes.

Slow: each ``lepton`` process pays the imports, and a run trains for real."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lepton_platform.engine import checkpoint as ckpt

pytestmark = pytest.mark.slow

LEPTON = str(Path(sys.executable).parent / "lepton")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
CENTRES = {"low": [0.0, 0.0, 0.0], "mid": [4.0, -4.0, 0.0], "high": [8.0, 0.0, 4.0]}
CONFIG = """\
domain: tabular
data:
  sources: [{{path: data.csv}}]
  split: {{validation: 0.2, test: 0.2, seed: 0}}
backbone: {{name: mlp, options: {{num_features: 3, hidden: [16]}}}}
strategy: finetune
train: {{epochs: {epochs}, lr: 0.05, batch_size: 4, checkpoint_every_steps: 3, keep_checkpoints: 2}}
evaluation: {{bootstrap: 20}}
"""


def lepton(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LEPTON, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV
    )


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [LEPTON, *args],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(what: str, condition: Callable[[], bool], process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {process.communicate()[1][-2000:]}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def write_problem(folder: Path, epochs: int) -> None:
    rng = np.random.default_rng(1)
    lines = ["f1,f2,f3,label"]
    for i in range(120):
        name = list(CENTRES)[i % 3]
        x = np.asarray(CENTRES[name]) + rng.normal(scale=0.7, size=3)
        lines.append(",".join(f"{v:.4f}" for v in x) + f",{name}")
    (folder / "data.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "run.yaml").write_text(CONFIG.format(epochs=epochs), encoding="utf-8")


def status(run: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((run / "status.json").read_text()))
    except (OSError, ValueError):
        return {}


def steps(run: Path) -> list[int]:
    found = ckpt.list_checkpoints(run / "training" / "checkpoints")
    return [int(p.name.split("-")[1]) for p in found]


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_second_run_of_one_name_is_refused_and_sigterm_leaves_it_resumable(
    tmp_path: Path,
) -> None:
    write_problem(tmp_path, epochs=60)  # far longer than the test lets it run
    run = tmp_path / "runs" / "run"
    first = start("run", "run.yaml", "--quiet", cwd=tmp_path)
    try:
        wait_for("a checkpoint", lambda: bool(steps(run)), first)
        for extra in ((), ("--overwrite",), ("--resume",)):
            began = time.monotonic()
            second = lepton("run", "run.yaml", *extra, cwd=tmp_path)
            assert second.returncode == 1, second.stderr
            assert f"is in use by process {first.pid} on " in second.stderr, second.stderr
            assert "Traceback" not in second.stderr
            assert time.monotonic() - began < 120
            assert status(run)["pid"] == first.pid and first.poll() is None
        assert not list(run.parent.glob(".run.replaced-*"))
        code = stop(first)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert code == 130
    state = status(run)
    assert state["state"] == "interrupted", state
    assert "--resume" in state["error"]
    assert not (run / "model").exists()
    checkpoints = run / "training" / "checkpoints"
    newest = ckpt.latest_checkpoint(checkpoints)  # step-N, or step-N-end at an epoch's end
    assert newest is not None
    ckpt.verify_checkpoint(newest)
    interrupted_at = steps(run)[-1]
    # a checkpoint being written when the signal came may stay half-written until the next start
    leftovers = [p for p in checkpoints.iterdir() if p.name.startswith(".")]
    written = [re.search(r"step-(\d+)", p.name) for p in leftovers]
    beyond = max([interrupted_at, *(int(m.group(1)) for m in written if m)])

    resumed = start("run", "run.yaml", "--resume", "--quiet", cwd=tmp_path)
    try:
        wait_for(
            "the resumed run to write a later checkpoint",
            lambda: (
                status(run).get("pid") == resumed.pid
                and bool(steps(run))
                and steps(run)[-1] > beyond
            ),
            resumed,
        )
        assert not [p for p in leftovers if p.exists()]  # tidied when the run was reopened
        assert stop(resumed) == 130
    finally:
        if resumed.poll() is None:
            resumed.kill()
            resumed.wait()
    log = (run / "run.log").read_text()
    assert "resumed" in log
    again = status(run)
    assert again["state"] == "interrupted" and again["attempts"] == 2


def test_predict_refuses_a_model_whose_label_names_were_edited(tmp_path: Path) -> None:
    write_problem(tmp_path, epochs=1)
    done = lepton("run", "run.yaml", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    model = tmp_path / "runs" / "run" / "model"
    point = json.dumps(CENTRES["high"])
    before = lepton("predict", str(model), point, "--json", "--quiet", cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    manifest = json.loads((model / "lepton.json").read_text())
    assert manifest["label_names"] == ["high", "low", "mid"]
    manifest["label_names"].reverse()
    (model / "lepton.json").write_text(json.dumps(manifest, indent=2))
    after = lepton("predict", str(model), point, "--json", cwd=tmp_path)
    assert after.returncode == 1
    assert "Traceback" not in after.stderr and after.stdout.strip() == ""
    assert f"{model / 'lepton.json'} was edited after the model was saved" in after.stderr


def test_a_text_csv_with_a_sentiment_header_trains_on_two_classes(tmp_path: Path) -> None:
    from lepton_text._tiny import tiny_options

    import lepton_platform as lp

    words = {"pos": ["good", "great", "nice"], "neg": ["bad", "awful", "slow"]}
    rows = ["text,sentiment"]
    for i in range(60):
        label = ("neg", "pos")[i % 2]
        rows.append(f"the food was {words[label][i % 3]},{label}")
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.warns(UserWarning, match="the labels are read from 'sentiment'"):
        result = lp.transfer(
            domain="text",
            data=str(tmp_path / "reviews.csv"),
            backbone="bert-base-uncased",
            backbone_options=tiny_options("bert"),
            train={"epochs": 1, "batch_size": 16, "lr": 1e-3, "progress": False},
            save=False,
            bootstrap=0,
        )
    assert result.task.label_names == ["neg", "pos"]
    assert result.data_summary["rows"] == {"train": 42, "validation": 9, "test": 9}
    assert set(result.data_summary["classes"]["train"]) == {"neg", "pos"}
    assert set(result.metrics["test"]["per_class"]) == {"neg", "pos"}
    assert result.model.head.out_features == 2  # type: ignore[union-attr]
