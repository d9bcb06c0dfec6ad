"""``lepton run`` and ``lepton compare`` under ``accelerate launch`` with two CPU processes (gloo),
as the README says to start them, in real subprocesses: only the main process writes the run
folder, the run ends ``finished`` in ``lepton runs``, and the metrics equal one process's with
the same global batch."""

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

BIN = Path(sys.executable).parent
CONFIG = """\
domain: tabular
data:
  sources: [data.csv]
  split: {validation: 0.2, test: 0.2, seed: 0}
backbone: {name: mlp, options: {num_features: 3, hidden: [16], dropout: 0.0}}
strategy: finetune
train: {epochs: 3, lr: 0.05, batch_size: 16, monitor: accuracy}
evaluation: {bootstrap: 50}
compare: {strategies: [finetune, linear-probe], seeds: [0, 1]}
"""


def write_problem(folder: Path) -> None:
    rng = np.random.default_rng(0)
    lines = ["f1,f2,f3,label"]
    for i in range(160):
        label = i % 4
        centre = np.array([[0, 0, 0], [3, 0, 0], [0, 3, 0], [0, 0, 3]][label], dtype=float)
        x = centre + rng.normal(scale=1.0, size=3)
        lines.append(",".join(f"{v:.4f}" for v in x) + f",c{label}")
    (folder / "data.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "cfg.yaml").write_text(CONFIG, encoding="utf-8")


def env() -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
        "ACCELERATE_USE_CPU": "1",
    }


def one_process(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "lepton"), *args],
        cwd=folder, env=env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def two_processes(folder: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """The README's command: ``accelerate launch --multi_gpu --num_processes 2 -m
    lepton_platform.cli.main ...`` with ``ACCELERATE_USE_CPU=1``."""
    command = [
        str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(port), "-m", "lepton_platform.cli.main", *args,
    ]  # fmt: skip
    return subprocess.run(
        command, cwd=folder, env=env(), capture_output=True, text=True, timeout=900
    )


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def result(folder: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "runs" / name / "result.json").read_text())
    return data


def test_lepton_run_under_accelerate_launch_matches_one_process(tmp_path: Path) -> None:
    single, double = tmp_path / "one", tmp_path / "two"
    for folder in (single, double):
        folder.mkdir()
        write_problem(folder)
    ok(one_process(single, "run", "cfg.yaml", "--quiet"))
    launched = ok(two_processes(double, 29541, "run", "cfg.yaml", "--quiet", "--json"))
    printed = json.loads(launched.stdout)  # one JSON document: only the main process prints
    assert printed["run"].endswith("runs/cfg")

    a, b = result(single, "cfg"), result(double, "cfg")
    for split in ("validation", "test"):
        for key in ("accuracy", "f1", "balanced_accuracy"):
            assert a["metrics"][split][key] == pytest.approx(b["metrics"][split][key], abs=1e-6)
    for x, y in zip(a["history"], b["history"], strict=True):
        assert x["train_loss"] == pytest.approx(y["train_loss"], abs=1e-5)
        assert x["val_loss"] == pytest.approx(y["val_loss"], abs=1e-5)
    status = json.loads((double / "runs" / "cfg" / "status.json").read_text())
    assert status["state"] == "finished" and status["attempts"] == 1
    listed = json.loads(ok(one_process(double, "runs", "--json")).stdout)
    assert [(r["name"], r["state"]) for r in listed] == [("cfg", "finished")]
    assert (double / "runs" / "cfg" / "model" / "lepton.json").is_file()
    assert (double / "runs" / "cfg" / "report.html").is_file()


def test_lepton_compare_under_accelerate_launch_matches_one_process(tmp_path: Path) -> None:
    single, double = tmp_path / "one", tmp_path / "two"
    for folder in (single, double):
        folder.mkdir()
        write_problem(folder)
    ok(one_process(single, "compare", "cfg.yaml", "--quiet"))
    ok(two_processes(double, 29543, "compare", "cfg.yaml", "--quiet"))
    a = json.loads((single / "runs" / "cfg-compare" / "comparison.json").read_text())
    b = json.loads((double / "runs" / "cfg-compare" / "comparison.json").read_text())
    assert [r["name"] for r in a["rows"]] == [r["name"] for r in b["rows"]] == [
        "finetune", "linear-probe", "scratch",
    ]  # fmt: skip
    for x, y in zip(a["rows"], b["rows"], strict=True):
        assert x["mean"] == pytest.approx(y["mean"], abs=1e-6), x["name"]
    listed = json.loads(ok(one_process(double, "runs", "--json")).stdout)
    assert [(r["name"], r["state"], r["kind"]) for r in listed] == [
        ("cfg-compare", "finished", "compare")
    ]


LORA = """\
domain: tabular
data:
  sources: [data.csv]
  split: {validation: 0.2, test: 0.2, seed: 0}
backbone:
  name: mlp
  options: {num_features: 3, hidden: [16, 16], dropout: 0.0}
  pretrained: runs/source/model
strategy: {name: lora, params: {rank: 2}}
train: {epochs: 3, lr: 0.05, batch_size: 16}
evaluation: {bootstrap: 50}
"""


def test_lora_under_accelerate_launch_matches_one_process(tmp_path: Path) -> None:
    """peft's adapters under DDP: the same losses and metrics as one process, the merged
    model and the adapter saved once, by the main process."""
    single, double = tmp_path / "one", tmp_path / "two"
    for folder in (single, double):
        folder.mkdir()
        write_problem(folder)
        source = CONFIG.replace("hidden: [16]", "hidden: [16, 16]")
        (folder / "source.yaml").write_text(source, encoding="utf-8")
        ok(one_process(folder, "run", "source.yaml", "--quiet"))
        (folder / "lora.yaml").write_text(LORA, encoding="utf-8")
    ok(one_process(single, "run", "lora.yaml", "--quiet"))
    ok(two_processes(double, 29545, "run", "lora.yaml", "--quiet"))
    a, b = result(single, "lora"), result(double, "lora")
    assert a["details"]["adapted_modules"] == b["details"]["adapted_modules"] == ["blocks.1.0"]
    assert b["details"]["trainable_parameters"] < b["details"]["backbone_parameters"]
    for x, y in zip(a["history"], b["history"], strict=True):
        assert x["train_loss"] == pytest.approx(y["train_loss"], abs=1e-5)
    assert a["metrics"]["test"]["accuracy"] == pytest.approx(b["metrics"]["test"]["accuracy"])
    model = double / "runs" / "lora" / "model"
    assert (model / "model.safetensors").is_file()
    assert (model / "adapter" / "adapter_model.safetensors").is_file()
    status = json.loads((double / "runs" / "lora" / "status.json").read_text())
    assert status["state"] == "finished"


EXIT_CHECK = """\
import atexit, sys
import torch.distributed as dist

def report():  # registered before Lepton's hook, so it runs after it
    sys.stderr.write(f"rank {rank} in a process group at exit: {dist.is_initialized()}\\n")

atexit.register(report)
from lepton_platform.engine.distributed import broadcast, processes
rank = processes().process_index
assert broadcast(rank * 10 + 7) == 7 and processes().num_processes == 2
"""


def test_a_launched_process_leaves_its_process_group_before_it_exits(tmp_path: Path) -> None:
    """Left to the interpreter's exit, gloo's threads now and then abort a finished process
    (SIGABRT, 'terminate called without an active exception'); Lepton leaves the group in an
    exit hook. The script's own hook, run after Lepton's, sees the group gone."""
    (tmp_path / "check.py").write_text(EXIT_CHECK, encoding="utf-8")
    command = [
        str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", "29547", "check.py",
    ]  # fmt: skip
    done = ok(
        subprocess.run(command, cwd=tmp_path, env=env(), capture_output=True, text=True,
                       timeout=300)
    )  # fmt: skip
    for rank in (0, 1):
        assert f"rank {rank} in a process group at exit: False" in done.stderr, done.stderr
