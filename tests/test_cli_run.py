"""``lepton run``, ``predict``, ``evaluate``, ``runs`` and ``compare`` as real subprocesses on a
tiny real problem: the example tabular plugin's MLP on a CSV written here, 2 epochs. A run
killed mid-training resumes to the same result as one never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.test_reports import assert_not_blank, render

pytestmark = pytest.mark.slow

LEPTON = str(Path(sys.executable).parent / "lepton")
CENTRES = {"low": [0.0, 0.0, 0.0], "mid": [4.0, -4.0, 0.0], "high": [8.0, 0.0, 4.0]}


def lepton(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [LEPTON, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def write_problem(folder: Path, rows: int = 150, seed: int = 0) -> None:
    """Three well-separated classes of 3-feature vectors."""
    rng = np.random.default_rng(seed)
    lines = ["f1,f2,f3,label"]
    names = list(CENTRES)
    for i in range(rows):
        name = names[i % 3]
        x = np.asarray(CENTRES[name]) + rng.normal(scale=0.7, size=3)
        lines.append(",".join(f"{v:.4f}" for v in x) + f",{name}")
    (folder / "data.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


CONFIG = """\
domain: tabular
data:
  sources: [{path: data.csv}]
  split: {validation: 0.2, test: 0.2, seed: 0}
backbone: {name: mlp, options: {num_features: 3, hidden: [16]}}
strategy: finetune
train: {epochs: 2, lr: 0.05, batch_size: 16}
evaluation: {bootstrap: 100}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    write_problem(folder)
    (folder / "tiny.yaml").write_text(CONFIG, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def finished(project: Path) -> dict[str, Any]:
    """One real run: its --json output."""
    result = ok(lepton("run", "tiny.yaml", "--quiet", "--json", cwd=project))
    assert result.stderr.strip() == "" or "Traceback" not in result.stderr
    return dict(json.loads(result.stdout))


def test_run_writes_a_complete_run_folder(project: Path, finished: dict[str, Any]) -> None:
    run = project / "runs" / "tiny"
    assert Path(finished["run"]) == Path("runs/tiny")
    for name in (
        "config.yaml",
        "run.log",
        "metrics.jsonl",
        "result.json",
        "report.md",
        "report.html",
        "status.json",
        "model/lepton.json",
        "model/model.safetensors",
    ):
        assert (run / name).is_file(), name
    assert not (run / "training" / "checkpoints").exists()  # removed once the run finished
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    speed = json.loads((run / "result.json").read_text())["details"]["speed"]
    assert speed["channels_last"]["reason"] == "no 2-D convolution in the model"  # auto
    assert speed["matmul_precision"]["source"] in {"probe", "cached"}  # auto, measured here
    epochs = [
        json.loads(line)
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if json.loads(line).get("type") == "epoch"
    ]
    assert len(epochs) == 2
    test = finished["metrics"]["test"]
    assert test["accuracy"] >= 0.8
    assert test["ci"]["low"] <= test["accuracy"] <= test["ci"]["high"]
    assert len(test["confusion_matrix"]) == 3
    assert finished["data"]["rows"] == {"train": 90, "validation": 30, "test": 30}
    report = (run / "report.md").read_text()
    assert "## Confusion matrix (test)" in report and "## Learning curves" in report


def test_the_run_report_renders_in_chromium(
    project: Path, finished: dict[str, Any], tmp_path: Path
) -> None:
    widths, screenshot = render(project / "runs" / "tiny" / "report.html", tmp_path)
    assert len(widths) == 3 and all(w > 100 for w in widths), widths
    assert_not_blank(screenshot)


def test_predict_labels_vectors_and_writes_csv(project: Path, finished: dict[str, Any]) -> None:
    inputs = [json.dumps(CENTRES[name]) for name in CENTRES]
    result = ok(
        lepton(
            "predict",
            "runs/tiny/model",
            *inputs,
            "--output",
            "preds.csv",
            "--json",
            "--quiet",
            cwd=project,
        )
    )
    rows = json.loads(result.stdout)
    assert [r["label"] for r in rows] == list(CENTRES)
    assert all(abs(sum(r["scores"].values()) - 1) < 1e-4 for r in rows)
    csv_lines = (project / "preds.csv").read_text().splitlines()
    assert csv_lines[0] == "input,label,score_high,score_low,score_mid"
    assert len(csv_lines) == 4


def test_predict_on_another_modality_fails_clearly(project: Path, finished: dict[str, Any]) -> None:
    image = project / "photo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    result = lepton("predict", "runs/tiny/model", str(image), "--output", "bad.csv", cwd=project)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "the model reads 'tabular' inputs and cannot read these" in result.stderr
    assert not (project / "bad.csv").exists()


def test_evaluate_a_saved_model_on_a_csv(project: Path, finished: dict[str, Any]) -> None:
    result = ok(
        lepton(
            "evaluate",
            "runs/tiny/model",
            "data.csv",
            "--bootstrap",
            "50",
            "--json",
            "--output",
            "eval.json",
            "--quiet",
            cwd=project,
        )
    )
    doc = json.loads(result.stdout)
    assert doc["num_examples"] == 150
    assert doc["metrics"]["accuracy"] >= 0.8
    assert doc["bootstrap"]["low"] <= doc["metrics"]["accuracy"] <= doc["bootstrap"]["high"]
    assert json.loads((project / "eval.json").read_text())["metrics"] == doc["metrics"]


def test_runs_lists_the_run(project: Path, finished: dict[str, Any]) -> None:
    rows = json.loads(ok(lepton("runs", "--json", cwd=project)).stdout)
    tiny = next(r for r in rows if r["name"] == "tiny")
    assert tiny["state"] == "finished"
    assert tiny["value"] == pytest.approx(finished["metrics"]["test"]["accuracy"])


def test_existing_run_is_refused_then_overwritten(project: Path, finished: dict[str, Any]) -> None:
    refusal = lepton("run", "tiny.yaml", cwd=project)
    assert refusal.returncode == 1 and "already exists" in refusal.stderr
    again = json.loads(
        ok(lepton("run", "tiny.yaml", "--overwrite", "--quiet", "--json", cwd=project)).stdout
    )
    # same seed, same data, same result
    assert again["metrics"]["test"]["accuracy"] == finished["metrics"]["test"]["accuracy"]
    leftovers = [p.name for p in (project / "runs").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_compare_prints_the_table_with_baselines(project: Path) -> None:
    result = ok(
        lepton(
            "compare",
            "tiny.yaml",
            "--strategies",
            "finetune,linear-probe",
            "--seeds",
            "0",
            "--set",
            "output.name=cmp",
            "--quiet",
            cwd=project,
        )
    )
    assert "| finetune |" in result.stdout
    assert "| linear-probe |" in result.stdout
    assert "| scratch (baseline) |" in result.stdout
    folder = project / "runs" / "cmp"
    doc = json.loads((folder / "comparison.json").read_text())
    assert [r["name"] for r in doc["rows"]] == ["finetune", "linear-probe", "scratch"]
    assert (folder / "comparison.md").is_file()
    assert "## Comparison with baselines" in (folder / "report.md").read_text()


KILL_CONFIG = CONFIG.replace(
    "train: {epochs: 2, lr: 0.05, batch_size: 16}",
    "train: {epochs: 8, lr: 0.05, batch_size: 4, checkpoint_every_steps: 3, keep_checkpoints: 3}",
)


def test_resume_after_a_real_kill_ends_where_an_uninterrupted_run_does(tmp_path: Path) -> None:
    write_problem(tmp_path, rows=120, seed=1)
    (tmp_path / "kill.yaml").write_text(KILL_CONFIG, encoding="utf-8")
    checkpoints = tmp_path / "runs" / "kill" / "training" / "checkpoints"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [LEPTON, "run", "kill.yaml", "--quiet"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 400
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if checkpoints.is_dir() and any(
                p.name.startswith("step-") and not p.name.endswith("-end")
                for p in checkpoints.iterdir()
            ):
                break
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    run = tmp_path / "runs" / "kill"
    assert json.loads((run / "status.json").read_text())["state"] == "running"
    assert not (run / "result.json").exists() and not (run / "model").exists()

    resumed = json.loads(
        ok(lepton("run", "kill.yaml", "--resume", "--quiet", "--json", cwd=tmp_path)).stdout
    )
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["attempts"] == 2
    assert "resumed" in (run / "run.log").read_text()

    straight = json.loads(
        ok(
            lepton(
                "run",
                "kill.yaml",
                "--set",
                "output.name=straight",
                "--quiet",
                "--json",
                cwd=tmp_path,
            )
        ).stdout
    )
    assert resumed["metrics"]["test"]["accuracy"] == straight["metrics"]["test"]["accuracy"]
    assert resumed["history"][-1]["train_loss"] == pytest.approx(
        straight["history"][-1]["train_loss"], rel=1e-6
    )
    assert len(resumed["history"]) == len(straight["history"]) == 8
