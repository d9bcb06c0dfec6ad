"""The application layer: one composition root builds every job, ``data=`` takes every form a
user reaches for, a config's short forms take ``--set`` overrides, and the engine's best-model
choice (a label-free validator's included) survives a crash and resume."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest

import lepton_platform as lp
from lepton_platform.api.config import apply_overrides, load_config
from lepton_platform.api.job import build_job

ROOT = Path(__file__).resolve().parents[1]
QUIET = {"epochs": 2, "lr": 0.05, "batch_size": 16, "progress": False}
MLP = {"num_features": 3, "hidden": [8]}


pytestmark = pytest.mark.usefixtures("lepton_cache")


def write_csv(path: Path, rows: int = 90, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = ["f1,f2,f3,label"]
    for i in range(rows):
        label = i % 3
        x = rng.normal(0, 0.5, 3) + np.eye(3)[label] * 3
        lines.append(",".join(f"{v:.4f}" for v in x) + f",c{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def standard(n: int, seed: int) -> datasets.Dataset:
    """Rows already in the standard schema of the tabular domain."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    x = rng.normal(0, 0.5, (n, 3)) + np.eye(3)[labels] * 3
    features = datasets.Features(
        {
            "features": datasets.Sequence(datasets.Value("float32")),
            "label": datasets.ClassLabel(names=["c0", "c1", "c2"]),
        }
    )
    return datasets.Dataset.from_dict(
        {"features": x.astype(np.float32).tolist(), "label": labels.tolist()}, features=features
    )


def train_rows(data: Any) -> int:
    job = build_job(domain="tabular", data=data, backbone="mlp", backbone_options=MLP, train=QUIET)
    return len(job.bundle.train) + len(job.bundle.validation) + len(job.bundle.test)


def test_data_takes_a_path_paths_a_mapping_a_dataset_and_a_dataset_dict(tmp_path: Path) -> None:
    a = write_csv(tmp_path / "a.csv", 90, seed=1)
    b = write_csv(tmp_path / "b.csv", 60, seed=2)
    assert train_rows(str(a)) == 90  # one path, not a list of characters
    assert train_rows(a) == 90
    assert train_rows([str(a), str(b)]) == 150
    assert train_rows({"path": str(a)}) == 90
    assert train_rows(standard(75, seed=3)) == 75
    given = datasets.DatasetDict(
        {"train": standard(60, 4), "validation": standard(15, 5), "test": standard(15, 6)}
    )
    job = build_job(domain="tabular", data=given, backbone="mlp", backbone_options=MLP)
    assert [len(job.bundle[s]) for s in ("train", "validation", "test")] == [60, 15, 15]
    with pytest.raises(lp.ConfigError, match=r"takes no reader options.*\['label_column'\]"):
        train_rows({"dataset": standard(30, 1), "label_column": "y"})
    with pytest.raises(lp.ConfigError, match="data must be a path"):
        train_rows(42)


def test_transfer_with_a_plain_path(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "train.csv", 120)
    result = lp.transfer(
        domain="tabular", data=str(data), backbone="mlp", backbone_options=MLP, train=QUIET
    )
    assert result.headline_key == "accuracy" and result.headline() is not None
    assert result.data_summary["rows"] == {"train": 84, "validation": 18, "test": 18}


def test_set_works_on_the_short_forms_of_a_config(tmp_path: Path) -> None:
    write_csv(tmp_path / "train.csv")
    config = tmp_path / "short.yaml"
    config.write_text(
        "domain: tabular\ndata: train.csv\nbackbone: mlp\nstrategy: finetune\n", encoding="utf-8"
    )
    loaded = load_config(
        config,
        overrides=[
            "data.split.test=0.3",
            "data.on_bad_record=skip",
            "backbone.options.num_features=3",
            "strategy.params.layer_decay=0.5",
        ],
    )
    assert loaded.data.split.test == pytest.approx(0.3)  # type: ignore[attr-defined]
    assert loaded.data.on_bad_record == "skip"
    assert Path(str(loaded.data.sources[0].path)).name == "train.csv"
    assert loaded.backbone.name == "mlp" and loaded.backbone.options == {"num_features": 3}
    assert loaded.strategy.params == {"layer_decay": 0.5}
    shorthand = apply_overrides({"data": ["a.csv", "b.csv"]}, ["data.sources.1.domain=b"])
    assert shorthand == {"data": {"sources": ["a.csv", {"path": "b.csv", "domain": "b"}]}}


def test_one_function_builds_every_model_of_the_application_layer() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "lepton_platform" / "api").rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\bTransferModel\(", line)
    ]
    assert found == ["lepton_platform/api/job.py:" + found[0].split(":")[1]], found


class _Crash(Exception):
    pass


def test_a_validators_best_model_is_the_same_after_a_crash_and_resume(tmp_path: Path) -> None:
    """The label-free validator's choice is the engine's one best model: kept in the
    checkpoint, so a run that crashed and resumed returns what an uninterrupted one does."""
    from lepton_platform.engine.callbacks import Callback
    from lepton_platform.strategies.base import snapshot
    from lepton_platform.testing.tiny import tiny_job

    def job(out: Path | None, callbacks: tuple[Any, ...] = ()) -> Any:
        made = tiny_job(epochs=4, keep_checkpoints=None)
        made.output_dir = out
        made.engine = type(made.engine)(callbacks)  # type: ignore[misc]
        return made

    reference = job(tmp_path / "ref")
    start = snapshot(reference.model)
    expected = lp.create_strategy("coral", validator="snd").run(reference)

    class CrashAtEpoch(Callback):
        def on_epoch_start(self, trainer: Any, epoch: int) -> None:
            if epoch == 2:
                raise _Crash

    crashed = job(tmp_path / "run", (CrashAtEpoch(),))
    crashed.model.load_state_dict(start)
    with pytest.raises(_Crash):
        lp.create_strategy("coral", validator="snd").run(crashed)
    resumed = job(tmp_path / "run")
    resumed.model.load_state_dict(start)
    resumed.resume = True
    outcome = lp.create_strategy("coral", validator="snd").run(resumed)
    assert outcome.details["selection"] == expected.details["selection"]
    assert (tmp_path / "run" / "checkpoints" / "best" / "model.safetensors").is_file()
    for key, value in expected.model.state_dict().items():
        assert np.allclose(value.numpy(), outcome.model.state_dict()[key].numpy()), key


def test_scratch_rebuilds_a_lepton_sources_architecture_with_random_weights(
    tmp_path: Path,
) -> None:
    """``scratch`` (Python API and config alike) builds the architecture a saved Lepton model's
    manifest records, loads none of its weights, and says so in the record."""
    import torch
    from safetensors.torch import load_file

    data = write_csv(tmp_path / "train.csv", 120)
    source_options = {"num_features": 3, "hidden": [12, 5]}
    lp.transfer(
        domain="tabular",
        data=str(data),
        backbone="mlp",
        backbone_options=source_options,
        train=QUIET,
        output_dir=tmp_path / "source",
        bootstrap=0,
    )
    folder = tmp_path / "source" / "model"
    saved = {
        k.removeprefix("backbone."): v
        for k, v in load_file(str(folder / "model.safetensors")).items()
        if k.startswith("backbone.")
    }

    loaded = build_job(domain="tabular", data=str(data), backbone="mlp", pretrained=folder)
    assert loaded.backbone.load_report is not None and loaded.backbone.load_report.share == 1.0
    for key, tensor in loaded.backbone.state_dict().items():
        assert torch.equal(tensor, saved[key]), key

    config = tmp_path / "scratch.yaml"
    config.write_text(
        f"domain: tabular\ndata: {data}\nbackbone: {{name: mlp, pretrained: {folder}}}\n",
        encoding="utf-8",
    )
    cfg = load_config(config, overrides=["backbone.scratch=true"])
    kwargs = cfg.to_transfer_kwargs()
    assert kwargs["scratch"] is True
    kwargs.pop("bootstrap")
    scratch = build_job(**kwargs)
    assert scratch.backbone.config()["hidden"] == [12, 5]  # the source's architecture
    assert scratch.backbone.load_report is None
    assert scratch.transfer.pretrained_state is None
    weights = {k: v for k, v in scratch.backbone.state_dict().items() if v.is_floating_point()}
    assert weights and not any(torch.equal(v, saved[k]) for k, v in weights.items() if v.ndim > 1)
    record = scratch.record()["backbone"]
    assert (record["scratch"], record["pretrained"], record["load_report"]) == (True, None, None)
    assert loaded.record()["backbone"]["scratch"] is False
