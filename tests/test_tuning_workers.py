"""``lepton tune`` as real subprocesses: two workers share one SQLite study, and a search killed
mid-way resumes where it stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from tests._tuning_helpers import write_config

pytestmark = pytest.mark.slow

LEPTON = str(Path(sys.executable).parent / "lepton")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


def _finished(storage: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name="search", storage=storage)
    return [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]


def test_two_worker_processes_share_one_sqlite_study(tmp_path: Path) -> None:
    config = write_config(tmp_path, trials=6)
    args = [LEPTON, "tune", str(config), "--resume", "--no-final", "-q"]
    workers = [
        subprocess.Popen(args, cwd=tmp_path, env=ENV, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err[-3000:]
    storage = f"sqlite:///{tmp_path / 'runs' / 'search' / 'study.db'}"
    finished = _finished(storage)
    assert 6 <= len(finished) <= 7  # both stop at the shared budget (one may overshoot by one)
    assert len({t.number for t in finished}) == len(finished)
    # the final step on the shared study: nothing left to run, the best config is trained
    done = subprocess.run(
        [*args[:-2], "--json", "-q"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["final"]["metrics"]["test"]["accuracy"] >= 0.0
    assert result["best_number"] in {t.number for t in finished}


def test_a_killed_search_resumes_where_it_stopped(tmp_path: Path) -> None:
    config = write_config(tmp_path, trials=5, extra="  pruner: none\n")
    storage = f"sqlite:///{tmp_path / 'runs' / 'search' / 'study.db'}"
    proc = subprocess.Popen(
        [LEPTON, "tune", str(config), "--no-final", "-q"],
        cwd=tmp_path,
        env=ENV,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        time.sleep(1)
        if (tmp_path / "runs" / "search" / "study.db").exists():
            try:
                if len(_finished(storage)) >= 2:
                    break
            except Exception:
                continue
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {t.number: t.params for t in _finished(storage)}
    assert 2 <= len(before) < 5
    resumed = subprocess.run(
        [LEPTON, "tune", str(config), "--resume", "--no-final", "--json", "-q"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = {t.number: t.params for t in _finished(storage)}
    assert len(after) == 5
    assert all(after[n] == p for n, p in before.items())  # earlier trials kept as they were
