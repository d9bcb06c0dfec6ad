"""Run folders: refused when they exist, resumed only with the same config, overwritten only
when the new run finishes, files written whole, listed newest first."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from lepton_platform.errors import ConfigError
from lepton_platform.runs import (
    atomic_write_json,
    atomic_write_text,
    list_runs,
    open_run_folder,
)

SNAPSHOT = {"strategy": {"name": "finetune"}, "train": {"lr": 0.1, "progress": True}}


def test_a_new_run_folder_holds_the_config_snapshot(tmp_path: Path) -> None:
    run = open_run_folder(tmp_path / "runs" / "a", SNAPSHOT)
    assert yaml.safe_load((run.path / "config.yaml").read_text()) == SNAPSHOT
    run.set_status("running", command="run")
    assert run.status()["state"] == "running" and run.status()["attempts"] == 1
    assert "created" in (run.path / "run.log").read_text()


def test_an_existing_run_folder_is_refused(tmp_path: Path) -> None:
    open_run_folder(tmp_path / "a", SNAPSHOT).set_status("done")
    with pytest.raises(ConfigError, match=r"already exists \(state: done\); pass --resume"):
        open_run_folder(tmp_path / "a", SNAPSHOT)
    with pytest.raises(ConfigError, match="already finished"):
        open_run_folder(tmp_path / "a", SNAPSHOT, resume=True)


def test_resume_needs_the_same_config_and_names_what_differs(tmp_path: Path) -> None:
    open_run_folder(tmp_path / "a", SNAPSHOT).set_status("running")
    changed = {"strategy": {"name": "lp-ft"}, "train": {"lr": 0.2, "progress": False}}
    with pytest.raises(ConfigError) as info:
        open_run_folder(tmp_path / "a", changed, resume=True, ignore=["train.progress"])
    message = str(info.value)
    assert "strategy.name: 'finetune' in the run, 'lp-ft' now" in message
    assert "train.lr: 0.1 in the run, 0.2 now" in message
    assert "progress" not in message
    run = open_run_folder(
        tmp_path / "a",
        {**SNAPSHOT, "train": {"lr": 0.1, "progress": False}},
        resume=True,
        ignore=["train.progress"],
    )
    assert run.resumed
    with pytest.raises(ConfigError, match="no run at"):
        open_run_folder(tmp_path / "b", SNAPSHOT, resume=True)


def test_overwrite_keeps_the_old_run_until_the_new_one_finishes(tmp_path: Path) -> None:
    old = open_run_folder(tmp_path / "a", SNAPSHOT)
    (old.path / "result.json").write_text("{}")
    run = open_run_folder(tmp_path / "a", SNAPSHOT, overwrite=True)
    assert not (run.path / "result.json").exists()
    previous = run.previous
    assert previous is not None and (previous / "result.json").exists()
    run.finish()
    assert not previous.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def test_atomic_writes_leave_no_temporary_file(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "x" / "a.txt", "hello")
    atomic_write_json(tmp_path / "x" / "b.json", {"v": 1.5})
    assert sorted(os.listdir(tmp_path / "x")) == ["a.txt", "b.json"]
    assert json.loads((tmp_path / "x" / "b.json").read_text()) == {"v": 1.5}


def test_metrics_of_every_stage_are_collected(tmp_path: Path) -> None:
    run = open_run_folder(tmp_path / "a", SNAPSHOT)
    (run.training_dir / "probe").mkdir(parents=True)
    (run.training_dir / "metrics.jsonl").write_text('{"type": "epoch", "epoch": 0}\n')
    (run.training_dir / "probe" / "metrics.jsonl").write_text('{"epoch": 0}\n{"epoch": 1, "tr')
    path = run.collect_metrics()
    assert path is not None
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records == [
        {"type": "epoch", "epoch": 0, "stage": ""},
        {"epoch": 0, "stage": "probe"},
    ]


def test_list_runs_newest_first_with_headline_metrics(tmp_path: Path) -> None:
    for name, started, accuracy in (("old", "2026-01-01", 0.5), ("new", "2026-02-01", 0.75)):
        run = open_run_folder(tmp_path / name, SNAPSHOT)
        run.set_status("running", command="run", started=started)
        atomic_write_json(
            run.path / "result.json",
            {"metrics": {"test": {"accuracy": accuracy, "f1": 0.1}}, "seconds": 3.0},
        )
        run.set_status("done")
    (tmp_path / "not-a-run").mkdir()
    runs = list_runs(tmp_path)
    assert [r.name for r in runs] == ["new", "old"]
    assert runs[0].headline == "accuracy" and runs[0].value == 0.75
    assert runs[0].state == "done" and runs[0].strategy == "finetune"
    with pytest.raises(ConfigError, match="no such folder of runs"):
        list_runs(tmp_path / "absent")
