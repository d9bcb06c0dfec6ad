"""Run folders as a Python API: refused when they exist, resumed only with the same config,
overwritten only when the new run finishes, reused after a failure before training, locked
while open, files written whole with the user's umask, listed newest first."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from lepton_platform._io import atomic_write_json, atomic_write_text
from lepton_platform.api.runs import RunFolder, list_runs
from lepton_platform.errors import ConfigError

SNAPSHOT = {"strategy": {"name": "finetune"}, "train": {"lr": 0.1, "progress": True}}


def finished(path: Path, snapshot: dict = SNAPSHOT) -> RunFolder:
    run = RunFolder.open(path, snapshot)
    run.mark("running")
    run.finish()
    return run


def test_a_new_run_folder_holds_the_config_snapshot(tmp_path: Path) -> None:
    run = RunFolder.open(tmp_path / "runs" / "a", SNAPSHOT)
    assert yaml.safe_load((run.path / "config.yaml").read_text()) == SNAPSHOT
    assert run.status()["state"] == "preparing" and run.status()["attempts"] == 1
    run.mark("running")
    status = run.status()
    assert status["state"] == "running" and status["trained"] is True
    assert status["pid"] == os.getpid()
    assert "created" in (run.path / "run.log").read_text()
    run.close()


def test_an_existing_run_folder_is_refused(tmp_path: Path) -> None:
    finished(tmp_path / "a")
    with pytest.raises(ConfigError, match=r"already exists \(state: finished\); pass --overwrite"):
        RunFolder.open(tmp_path / "a", SNAPSHOT)
    with pytest.raises(ConfigError, match="already finished"):
        RunFolder.open(tmp_path / "a", SNAPSHOT, resume=True)


def test_an_interrupted_run_points_to_resume(tmp_path: Path) -> None:
    run = RunFolder.open(tmp_path / "a", SNAPSHOT)
    run.mark("running")
    run.fail(KeyboardInterrupt())
    assert run.status()["state"] == "interrupted"
    with pytest.raises(ConfigError, match=r"state: interrupted\); pass --resume to continue it"):
        RunFolder.open(tmp_path / "a", SNAPSHOT)


def test_a_run_that_failed_before_training_is_reused(tmp_path: Path) -> None:
    run = RunFolder.open(tmp_path / "a", SNAPSHOT)
    run.fail(ConfigError("bad data"))
    assert run.status() | {"state": "failed", "trained": False} == run.status()
    again = RunFolder.open(tmp_path / "a", SNAPSHOT)  # a plain retry reuses it
    assert again.status()["attempts"] == 1 and "error" not in again.status()
    again.close()


def test_resume_needs_the_same_config_and_names_what_differs(tmp_path: Path) -> None:
    run = RunFolder.open(tmp_path / "a", SNAPSHOT)
    run.mark("running")
    run.fail(RuntimeError("killed"))
    changed = {"strategy": {"name": "lp-ft"}, "train": {"lr": 0.2, "progress": False}}
    with pytest.raises(ConfigError) as info:
        RunFolder.open(tmp_path / "a", changed, resume=True, ignore=["train.progress"])
    message = str(info.value)
    assert "strategy.name: 'finetune' in the run, 'lp-ft' now" in message
    assert "train.lr: 0.1 in the run, 0.2 now" in message
    assert "progress" not in message
    resumed = RunFolder.open(
        tmp_path / "a",
        {**SNAPSHOT, "train": {"lr": 0.1, "progress": False}},
        resume=True,
        ignore=["train.progress"],
    )
    assert resumed.resumed
    resumed.close()
    with pytest.raises(ConfigError, match="no run at"):
        RunFolder.open(tmp_path / "b", SNAPSHOT, resume=True)


def test_overwrite_keeps_the_old_run_until_the_new_one_finishes(tmp_path: Path) -> None:
    old = finished(tmp_path / "a")
    (old.path / "result.json").write_text("{}")
    run = RunFolder.open(tmp_path / "a", SNAPSHOT, overwrite=True)
    assert not (run.path / "result.json").exists()
    previous = run.previous
    assert previous is not None and (previous / "result.json").exists()
    run.finish()
    assert not previous.exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["a"]


def test_an_open_run_is_locked_against_a_second_process(tmp_path: Path) -> None:
    run = RunFolder.open(tmp_path / "a", SNAPSHOT)
    script = textwrap.dedent(f"""
        from lepton_platform.api.runs import RunFolder
        from lepton_platform.errors import ConfigError
        for kw in ({{}}, {{"resume": True}}, {{"overwrite": True}}):
            try:
                RunFolder.open({str(tmp_path / "a")!r}, {{}}, **kw)
            except ConfigError as exc:
                print(exc)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert len(out) == 3
    assert all(f"in use by process {os.getpid()} on " in line for line in out), out
    run.finish()
    again = RunFolder.open(tmp_path / "a", SNAPSHOT, overwrite=True)  # released: allowed
    again.close()


def test_files_honour_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        run = RunFolder.open(tmp_path / "a", SNAPSHOT)
        run.write_json("result.json", {"v": 1})
        run.close()
    finally:
        os.umask(old)
    for name in ("config.yaml", "status.json", "result.json", "run.log"):
        mode = stat.S_IMODE((tmp_path / "a" / name).stat().st_mode)
        assert mode == 0o644, (name, oct(mode))


def test_atomic_writes_leave_no_temporary_file(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "x" / "a.txt", "hello")
    atomic_write_json(tmp_path / "x" / "b.json", {"v": 1.5})
    assert sorted(os.listdir(tmp_path / "x")) == ["a.txt", "b.json"]
    assert json.loads((tmp_path / "x" / "b.json").read_text()) == {"v": 1.5}


def test_metrics_of_every_stage_are_collected(tmp_path: Path) -> None:
    run = RunFolder.open(tmp_path / "a", SNAPSHOT)
    (run.training_dir / "probe").mkdir(parents=True)
    (run.training_dir / "metrics.jsonl").write_text('{"type": "epoch", "epoch": 0}\n')
    (run.training_dir / "probe" / "metrics.jsonl").write_text('{"epoch": 0}\n{"epoch": 1, "tr')
    path = run.collect_metrics()
    run.close()
    assert path is not None
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records == [
        {"type": "epoch", "epoch": 0, "stage": ""},
        {"epoch": 0, "stage": "probe"},
    ]


def test_list_runs_newest_first_with_headline_metrics(tmp_path: Path) -> None:
    for name, started, accuracy in (("old", "2026-01-01", 0.5), ("new", "2026-02-01", 0.75)):
        run = RunFolder.open(tmp_path / name, SNAPSHOT)
        run.mark("running", started=started)
        atomic_write_json(
            run.path / "result.json",
            {
                "metrics": {"test": {"accuracy": accuracy, "f1": 0.1}},
                "headline": {"metric": "accuracy", "key": "accuracy", "higher_is_better": True},
                "seconds": 3.0,
            },
        )
        run.finish()
    (tmp_path / "not-a-run").mkdir()
    runs = list_runs(tmp_path)
    assert [r.name for r in runs] == ["new", "old"]
    assert runs[0].headline == "accuracy" and runs[0].value == 0.75
    assert runs[0].state == "finished" and runs[0].strategy == "finetune"
    assert runs[0].disk_mb is not None and runs[0].disk_mb > 0
    with pytest.raises(ConfigError, match="no such folder of runs"):
        list_runs(tmp_path / "absent")
