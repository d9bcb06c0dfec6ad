"""Experiment tracking is opt-in: a run without ``train.trackers`` tracks nothing and writes
nothing outside its folder; MLflow, when asked for, logs the per-epoch metrics, the final test
metrics and the model folder into the run folder's own store. Finished runs keep the model and
drop the optimiser state and mid-run checkpoints unless ``train.keep_checkpoints_after_run``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lepton_platform as lp

MLP = {"num_features": 3, "hidden": [8]}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, lepton_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")


def write_csv(path: Path, rows: int = 90) -> Path:
    rng = np.random.default_rng(0)
    lines = ["f1,f2,f3,label"]
    for i in range(rows):
        x = rng.normal(0, 0.5, 3) + np.eye(3)[i % 3] * 3
        lines.append(",".join(f"{v:.4f}" for v in x) + f",c{i % 3}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(tmp_path: Path, name: str, **train: Any) -> lp.TransferResult:
    data = write_csv(tmp_path / "data.csv")
    config = {"epochs": 3, "lr": 0.05, "batch_size": 16, "progress": False, **train}
    return lp.transfer(
        domain="tabular", data=str(data), backbone="mlp", backbone_options=MLP, train=config,
        output_dir=tmp_path / "runs" / name,
    )  # fmt: skip


def test_nothing_is_tracked_unless_asked_and_checkpoints_go_at_the_end(tmp_path: Path) -> None:
    run(tmp_path, "plain")
    folder = tmp_path / "runs" / "plain"
    assert not list(Path.cwd().iterdir())  # no mlflow.db (nor anything) in the current folder
    training = folder / "training"
    assert (training / "metrics.jsonl").is_file()
    assert not list(training.rglob("mlflow.db")) and not list(training.rglob("tracking.json"))
    assert not list(training.rglob("events.out.tfevents*"))  # no TensorBoard either
    assert not list(training.rglob("checkpoints"))  # removed once the run finished
    assert (folder / "model" / "model.safetensors").is_file()
    assert lp.load(folder / "model").predict([[3.0, 0.0, 0.0]])[0].label == "c0"

    run(tmp_path, "kept", keep_checkpoints_after_run=True)
    kept = [p for p in (tmp_path / "runs" / "kept" / "training").rglob("checkpoints")]
    assert kept and any(p.iterdir() for p in kept)


def test_mlflow_logs_epochs_test_metrics_and_the_model_into_the_run_folder(
    tmp_path: Path,
) -> None:
    from mlflow.tracking import MlflowClient

    result = run(tmp_path, "tracked", trackers=["mlflow"])
    assert not list(Path.cwd().iterdir())  # the store is the run folder's, not the cwd's
    [store] = list((tmp_path / "runs" / "tracked" / "training").rglob("mlflow.db"))
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("lepton")
    assert experiment is not None and experiment.artifact_location.startswith(store.parent.as_uri())
    [tracked] = client.search_runs([experiment.experiment_id])
    epochs = client.get_metric_history(tracked.info.run_id, "epoch/val_loss")
    assert len(epochs) == 3
    logged = tracked.data.metrics
    test = result.metrics["test"]
    assert logged["test/accuracy"] == pytest.approx(test["accuracy"])
    numbers = {k for k, v in test.items() if isinstance(v, float)}
    assert len(numbers) >= 2 and all(logged[f"test/{k}"] == pytest.approx(test[k]) for k in numbers)
    artifacts = {a.path for a in client.list_artifacts(tracked.info.run_id, "model")}
    assert {"model/model.safetensors", "model/lepton.json"} <= artifacts


def test_wandb_logs_offline_into_the_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    run(tmp_path, "wandb", trackers=["wandb"])
    assert not list(Path.cwd().iterdir())  # nothing in the current folder
    training = tmp_path / "runs" / "wandb" / "training"
    [offline] = list(training.rglob("offline-run-*"))  # offline: nothing was sent anywhere
    [log] = list(offline.glob("*.wandb"))
    assert b"epoch/val_loss" in log.read_bytes()  # the per-epoch metrics are in its records
