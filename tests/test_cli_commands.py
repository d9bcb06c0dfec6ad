"""The ``lepton`` commands as real subprocesses, on bad input: clear messages, exit code 1, no
traceback, nothing written. (Real runs are in test_cli_run.py, marked slow.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lepton_platform import __version__
from lepton_platform._io import atomic_write_json
from lepton_platform.api.config import load_config
from lepton_platform.api.runs import RunFolder

LEPTON = str(Path(sys.executable).parent / "lepton")


def lepton(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [LEPTON, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def refused(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("lepton: error: ")
    for needle in needles:
        assert needle in result.stderr


CONFIG = """\
domain: tabular
data: {sources: [data.csv], split: {validation: 0.25, test: 0.25}}
backbone: {name: mlp, options: {num_features: 2, hidden: [4]}}
train: {epochs: 1}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "data.csv").write_text("a,b,label\n1,2,x\n3,4,y\n", encoding="utf-8")
    (tmp_path / "cfg.yaml").write_text(CONFIG, encoding="utf-8")
    return tmp_path


def test_version(tmp_path: Path) -> None:
    result = lepton("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"lepton {__version__}"


def test_run_refuses_a_file_that_is_not_yaml(project: Path) -> None:
    (project / "bad.yaml").write_text("domain: tabular\n  data: [x\n")
    refused(lepton("run", "bad.yaml", cwd=project), "bad.yaml: not valid YAML at line 2")
    assert not (project / "runs").exists()


def test_run_names_unknown_keys_strategies_and_missing_paths(project: Path) -> None:
    refused(
        lepton("run", "cfg.yaml", "--set", "train.epoch=3", cwd=project),
        "train.epoch: unknown key; did you mean 'epochs'?",
    )
    refused(
        lepton("run", "cfg.yaml", "--set", "strategy=lpft", cwd=project),
        "strategy: 'lpft' is not registered; did you mean 'lp-ft'?",
    )
    refused(
        lepton("run", "cfg.yaml", "--set", "data.sources.0.path=gone.csv", cwd=project),
        "data.sources[0].path: 'gone.csv' does not exist",
    )
    refused(lepton("run", "cfg.yaml", "--set", "train.lr", cwd=project), "expected KEY=VALUE")
    refused(lepton("run", "absent.yaml", cwd=project), "absent.yaml: no such config file")
    assert not (project / "runs").exists()


def test_run_refuses_an_existing_run_folder(project: Path) -> None:
    existing = RunFolder.open(project / "runs" / "cfg", {"strategy": {"name": "finetune"}})
    existing.mark("running")
    existing.fail(KeyboardInterrupt())
    before = sorted(p.name for p in existing.path.iterdir())
    refused(
        lepton("run", "cfg.yaml", cwd=project),
        "runs/cfg already exists (state: interrupted)",
        "--resume",
        "--overwrite",
    )
    assert sorted(p.name for p in existing.path.iterdir()) == before
    both = lepton("run", "cfg.yaml", "--resume", "--overwrite", cwd=project)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_resume_with_another_config_is_refused(project: Path) -> None:
    config = load_config(project / "cfg.yaml")
    run = RunFolder.open(project / "runs" / "cfg", config.snapshot())
    run.mark("running")
    run.close()
    refused(
        lepton("run", "cfg.yaml", "--resume", "--set", "train.lr=0.5", cwd=project),
        "--resume refused",
        "train.lr: 0.001 in the run, 0.5 now",
    )
    refused(lepton("run", "other.yaml", "--resume", cwd=project), "no such config file")


def test_runs_lists_past_runs_newest_first(tmp_path: Path) -> None:
    for name, started, value in (("first", "2026-01-01", 0.25), ("second", "2026-03-01", 0.5)):
        run = RunFolder.open(tmp_path / "runs" / name, {"strategy": {"name": "lp-ft"}})
        run.mark("running", command="run", started=started)
        atomic_write_json(
            run.path / "result.json",
            {"metrics": {"test": {"accuracy": value}}, "headline": {"key": "accuracy"}},
        )
        run.finish()
    result = lepton("runs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "NAME", "STATE", "STARTED", "KIND", "STRATEGY", "METRIC", "VALUE", "DISK"
    ]  # fmt: skip
    assert lines[1].split()[0] == "second" and lines[1].split()[-3] == "0.5000"
    assert lines[2].split()[0] == "first"
    as_json = json.loads(lepton("runs", "runs", "--json", cwd=tmp_path).stdout)
    assert [r["name"] for r in as_json] == ["second", "first"]
    assert as_json[0]["metric"] == "accuracy" and as_json[0]["value"] == 0.5
    refused(lepton("runs", "nowhere", cwd=tmp_path), "nowhere: no such folder of runs")


def test_evaluate_and_predict_refuse_bad_arguments(project: Path) -> None:
    refused(lepton("evaluate", "model", "gone.csv", cwd=project), "DATA: 'gone.csv' does not exist")
    refused(
        lepton("evaluate", "model", "data.csv", "--metrics", "acuracy", cwd=project),
        "--metrics: 'acuracy' is not registered; did you mean 'accuracy'",
    )
    refused(
        lepton("compare", "cfg.yaml", "--strategies", "finetune,lpft", cwd=project),
        "compare.strategies: 'lpft' is not registered; did you mean 'lp-ft'?",
    )
    refused(lepton("compare", "cfg.yaml", "--seeds", "a,b", cwd=project), "--seeds")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=-1", "train.lr: Input should be greater than 0, got -1"),
        ("train.epochs=0", "train.epochs: Input should be greater than or equal to 1, got 0"),
        ("train.epochs=true", "train.epochs: Input should be a valid integer, got True"),
    ],
)
def test_bad_train_values_are_refused_before_any_folder(
    project: Path, override: str, message: str
) -> None:
    refused(lepton("run", "cfg.yaml", "--set", override, cwd=project), message)
    refused(lepton("compare", "cfg.yaml", "--set", override, cwd=project), message)
    assert not (project / "runs").exists()


def test_compare_hints_name_flags_it_accepts(project: Path) -> None:
    run = RunFolder.open(project / "runs" / "cfg-compare", {"strategy": {"name": "finetune"}})
    run.mark("running")
    run.fail(KeyboardInterrupt())
    result = lepton("compare", "cfg.yaml", cwd=project)
    refused(result, "runs/cfg-compare already exists (state: interrupted)", "--resume")
    help_text = lepton("compare", "--help", cwd=project).stdout
    assert "--resume" in help_text and "--overwrite" in help_text
