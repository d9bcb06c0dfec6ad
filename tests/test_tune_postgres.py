"""Two ``lepton tune`` workers on one study in a real PostgreSQL server (Debian's ``postgresql``
package; ``.ci/run`` installs it where missing), started here on loopback in a temporary folder
and stopped after: no duplicated settings, no lost trials, the final model trained once. The
test skips when no server can be started."""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from tests._tuning_helpers import write_config

pytestmark = pytest.mark.slow

LEPTON = str(Path(sys.executable).parent / "lepton")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of its own (trust authentication on 127.0.0.1), as a SQLAlchemy 2
    URL; skips when the binaries are missing or the server does not start."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    prefix: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="lepton-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder)
            pytest.skip("running as root and there is no postgres user to run the server as")
        os.chown(folder, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()
    started = False
    try:
        init = subprocess.run(
            [*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
             "--no-sync"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if init.returncode != 0:
            pytest.skip(f"initdb failed: {init.stderr[-500:]}")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        start = subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "server.log"),
             "-w", "-t", "60", "start"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if start.returncode != 0:
            log = (folder / "server.log").read_text(errors="replace")[-500:]
            pytest.skip(f"the PostgreSQL server did not start: {start.stderr[-300:]} {log}")
        started = True
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            subprocess.run(
                [*prefix, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
                capture_output=True, timeout=120, check=False,
            )  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_on_one_postgresql_study(tmp_path: Path, postgres_url: str) -> None:
    config = write_config(tmp_path, trials=6, extra="  sampler: random\n  pruner: none\n")
    args = [LEPTON, "tune", str(config), "--resume", "--storage", postgres_url, "--json", "-q"]
    workers = [
        subprocess.Popen(args, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=900)
        assert worker.returncode == 0, err[-3000:]
        results.append(json.loads(out))

    study = optuna.load_study(study_name="search", storage=postgres_url)
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert 6 <= len(finished) <= 7  # both stop at the shared budget (one may overshoot by one)
    settings = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(settings)) == len(settings), settings  # no duplicated parameter sets
    # no lost trials: every trial finished, or was refused as a duplicate without training
    for t in trials:
        assert t.state.name != "RUNNING"
        if t.state.name == "FAIL":
            assert "duplicate_of" in t.user_attrs, t.user_attrs
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    # the final model: trained by one worker, from the study's best trial
    trained = [r for r in results if r["final"] is not None]
    assert len(trained) == 1
    assert trained[0]["best_number"] == study.best_trial.number
    assert (tmp_path / "runs" / "search" / "final" / "model" / "lepton.json").is_file()
