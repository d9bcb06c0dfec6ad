"""The fine-tune engine on a tiny MLP and a tiny in-memory dataset (CPU, one process)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch

from lepton_platform.api.job import resolve_monitor
from lepton_platform.engine.finetune import Callback, TrainConfig, Trainer
from lepton_platform.errors import ArtifactError, ConfigError, DataError, TrainingError
from tests._engine_helpers import (
    FeaturePreprocessor,
    make_dataset,
    make_model,
    make_task,
    weights,
)


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """Tiny models train fastest on one thread (the machine is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


FAST = {"progress": False, "seed": 3, "lr": 0.02, "batch_size": 8}


def fit(
    config: TrainConfig,
    *,
    out: Path | None = None,
    dropout: float = 0.0,
    noise: float = 0.1,
    **kw: Any,
) -> Any:
    model = make_model(seed=1, dropout=dropout)
    kw.setdefault("monitor", resolve_monitor(config))
    trainer = Trainer(model, make_task(), config, output_dir=out, **kw)
    result = trainer.fit(make_dataset(48), make_dataset(24, seed=5), FeaturePreprocessor(noise))
    return trainer, result


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("batch_size", -1),
        ("optimizer", "adam"),
        ("scheduler", "step"),
        ("mixed_precision", "fp8"),
        ("matmul_precision", "low"),
        ("warmup_ratio", 1.5),
        ("lr", float("nan")),
        ("max_grad_norm", 0),
        ("early_stopping_patience", 0),
        ("monitor_mode", "up"),
    ],
)
def test_config_errors_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})


def test_config_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        TrainConfig(3)  # type: ignore[misc]
    # the direction of a monitored metric comes from its registered spec, not its name
    assert resolve_monitor(TrainConfig(monitor="accuracy")).direction == "max"
    assert resolve_monitor(TrainConfig()).direction == "min"
    assert resolve_monitor(TrainConfig(monitor="accuracy", monitor_mode="min")).direction == "min"


# ----------------------------------------------------------------------------- training


def test_fit_learns_and_logs(tmp_path: Path) -> None:
    trainer, result = fit(TrainConfig(epochs=4, log_every_steps=2, **FAST), out=tmp_path)
    losses = [h["train_loss"] for h in result.history]
    assert len(result.history) == 4 and losses[-1] < losses[0] * 0.8
    assert result.global_step == 4 * 6 and not result.stopped_early
    assert result.best_epoch == min(range(4), key=lambda e: result.history[e]["val_loss"])
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x["type"] == "step"] == list(range(2, 25, 2))
    assert [x["epoch"] for x in lines if x["type"] == "epoch"] == [0.0, 1.0, 2.0, 3.0]
    logits, labels = trainer.predict(make_dataset(24, seed=5), FeaturePreprocessor())
    assert logits.shape == (24, 3) and labels is not None and labels.shape == (24,)
    loss = float(make_task().loss(torch.from_numpy(logits), torch.from_numpy(labels)))
    assert loss == pytest.approx(result.history[result.best_epoch]["val_loss"], abs=1e-6)


def test_same_seed_same_numbers() -> None:
    config = TrainConfig(epochs=2, **FAST)
    t1, r1 = fit(config, dropout=0.2)
    t2, r2 = fit(config, dropout=0.2)
    assert r1.history == r2.history
    for key, value in weights(t1.model).items():
        assert torch.equal(value, t2.model.state_dict()[key]), key
    _, r3 = fit(TrainConfig(epochs=2, **{**FAST, "seed": 4}), dropout=0.2)
    assert r3.history != r1.history


def test_grad_accumulation_matches_a_bigger_batch() -> None:
    common = {**FAST, "optimizer": "sgd", "scheduler": "constant", "max_grad_norm": None}
    # The data order depends only on (seed, epoch): a batch of 16 holds the same examples as two
    # consecutive batches of 8.
    big, _ = fit(TrainConfig(epochs=1, **{**common, "batch_size": 16}), noise=0.0)
    acc, _ = fit(
        TrainConfig(epochs=1, **{**common, "batch_size": 8}, grad_accum_steps=2), noise=0.0
    )
    for key, value in weights(big.model).items():
        assert torch.allclose(value, acc.model.state_dict()[key], atol=1e-6), key


def test_early_stopping_on_validation_keeps_best(tmp_path: Path) -> None:
    model = make_model(seed=1)
    config = TrainConfig(epochs=10, early_stopping_patience=2, **FAST)
    trainer = Trainer(model, make_task(), config, output_dir=tmp_path)
    validation = make_dataset(24, seed=5, flip=True)  # gets worse as training improves
    result = trainer.fit(make_dataset(48), validation, FeaturePreprocessor())
    assert result.stopped_early and len(result.history) == result.best_epoch + 3
    logits, labels = trainer.predict(validation, FeaturePreprocessor())
    loss = float(make_task().loss(torch.from_numpy(logits), torch.from_numpy(labels)))
    assert loss == pytest.approx(result.best_score, abs=1e-6)
    assert loss < result.history[-1]["val_loss"]


def test_monitor_a_metric() -> None:
    _, result = fit(TrainConfig(epochs=2, monitor="accuracy", **FAST))
    accuracies = [h["val_accuracy"] for h in result.history]
    assert all(0.0 <= a <= 1.0 for a in accuracies)
    assert result.best_score == max(accuracies)


def test_param_groups_and_regularizer() -> None:
    model = make_model(seed=1)
    before = weights(model)
    groups = [
        {"name": "backbone", "params": list(model.backbone.parameters()), "lr": 0.0},
        {"name": "head", "params": list(model.head.parameters()), "lr": 0.05},
    ]
    config = TrainConfig(epochs=1, scheduler="constant", **{**FAST, "lr": 0.05})
    Trainer(model, make_task(), config, param_groups=groups).fit(
        make_dataset(48), None, FeaturePreprocessor()
    )
    after = weights(model)
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbone"))
    assert not torch.equal(before["head.weight"], after["head.weight"])

    def l2(m: torch.nn.Module) -> torch.Tensor:
        return 5.0 * sum((p**2).sum() for p in m.parameters())  # type: ignore[return-value]

    plain, _ = fit(TrainConfig(epochs=2, **FAST))
    pulled, _ = fit(TrainConfig(epochs=2, **FAST), regularizer=l2)
    norm = lambda m: float(sum((p.detach() ** 2).sum() for p in m.parameters()))  # noqa: E731
    assert norm(pulled.model) < 0.7 * norm(plain.model)


def test_default_groups_skip_decay_on_biases_and_norms() -> None:
    trainer = Trainer(make_model(), make_task(), TrainConfig(weight_decay=0.1, progress=False))
    groups = {g["name"]: g for g in trainer.optimizer.optimizer.param_groups}
    assert groups["decay"]["weight_decay"] == 0.1 and groups["no_decay"]["weight_decay"] == 0.0
    assert all(p.ndim == 1 for p in groups["no_decay"]["params"])
    model = make_model()
    with pytest.raises(ConfigError, match="in param groups 'a' and 'b'"):
        Trainer(
            model,
            make_task(),
            TrainConfig(),
            param_groups=[
                {"name": "a", "params": [model.head.weight]},
                {"name": "b", "params": [model.head.weight]},
            ],
        )


def test_freeze_schedule_with_set_trainable() -> None:
    seen: dict[int, dict[str, torch.Tensor]] = {}

    class Unfreeze(Callback):
        def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
            if epoch == 0:
                trainer.set_trainable(lambda name, p: name.startswith("head"))
            else:
                trainer.set_trainable(trainer.model.parameters())

        def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Any) -> None:
            seen[epoch] = weights(trainer.model)

    model = make_model(seed=1)
    start = weights(model)
    fit_config = TrainConfig(epochs=2, **FAST)
    trainer = Trainer(model, make_task(), fit_config, callbacks=[Unfreeze()])
    trainer.fit(make_dataset(48), None, FeaturePreprocessor())
    stem = "backbone.stem.0.weight"
    assert torch.equal(seen[0][stem], start[stem])
    assert not torch.equal(seen[1][stem], start[stem])
    assert not torch.equal(seen[0]["head.weight"], start["head.weight"])


def test_schedules_warm_up_then_decay() -> None:
    lrs: list[float] = []

    class Record(Callback):
        def on_step_end(self, trainer: Trainer, step: int, logs: Any) -> None:
            lrs.append(logs["lr"])

    fit(TrainConfig(epochs=2, scheduler="linear", warmup_steps=3, **FAST), callbacks=[Record()])
    assert lrs[:4] == pytest.approx([0.005, 0.01, 0.015, 0.02])
    assert all(a >= b for a, b in itertools.pairwise(lrs[3:]))
    assert lrs[-1] < 0.003


def test_bf16_mixed_precision_runs_on_cpu() -> None:
    _, result = fit(TrainConfig(epochs=2, mixed_precision="bf16", **FAST))
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in result.history)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    _, again = fit(TrainConfig(epochs=1, mixed_precision="auto", **FAST))  # back to fp32 on CPU
    assert again.history[0]["train_loss"] > 0


# ----------------------------------------------------------------------------- bad input


def test_empty_and_bad_datasets() -> None:
    trainer = Trainer(make_model(), make_task(), TrainConfig(progress=False))
    with pytest.raises(DataError, match="training dataset is empty"):
        trainer.fit(make_dataset(8).select([]), None, FeaturePreprocessor())
    with pytest.raises(DataError, match=r"lacks the column\(s\) \['features'\]"):
        trainer.fit(make_dataset(8).rename_column("features", "x"), None, FeaturePreprocessor())
    bad = datasets.Dataset.from_dict({"features": [[0.0] * 6] * 4, "label": [0, 1, 4, 2]})
    with pytest.raises(DataError, match="label 4 outside the label space"):
        trainer.fit(bad, None, FeaturePreprocessor())
    with pytest.raises(ConfigError, match="needs a validation split"):
        Trainer(make_model(), make_task(), TrainConfig(early_stopping_patience=1)).fit(
            make_dataset(8), None, FeaturePreprocessor()
        )


def test_nan_loss_stops_naming_the_step_and_keeps_the_checkpoint(tmp_path: Path) -> None:
    class Poison(Callback):
        def on_step_end(self, trainer: Trainer, step: int, logs: Any) -> None:
            if step == 7:
                with torch.no_grad():
                    trainer.model.head.weight.fill_(float("nan"))

    config = TrainConfig(epochs=3, checkpoint_every_steps=3, **FAST)
    with pytest.raises(TrainingError, match=r"became nan at epoch 1, step 8 \(batch 1") as err:
        fit(config, out=tmp_path, callbacks=[Poison()])
    assert "step-00000006-end" in str(err.value)
    from lepton_platform.engine import checkpoint as ckpt

    last = ckpt.latest_checkpoint(tmp_path / "checkpoints")
    assert last is not None and last.name == "step-00000006-end"
    ckpt.verify_checkpoint(last)
    tensors, _ = ckpt.read_tensors(last / "model.safetensors")
    assert torch.isfinite(tensors["head.weight"]).all()


def test_unwritable_output_folder_fails_before_training(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    trainer = Trainer(make_model(), make_task(), TrainConfig(progress=False), output_dir=blocker)
    with pytest.raises(ArtifactError, match="is not writable"):
        trainer.fit(make_dataset(8), None, FeaturePreprocessor())
    assert blocker.read_text() == "not a folder"


def test_fresh_run_refuses_a_folder_with_checkpoints(tmp_path: Path) -> None:
    fit(TrainConfig(epochs=1, **FAST), out=tmp_path)
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    with pytest.raises(ConfigError, match=r"already holds checkpoints.*resume=True"):
        fit(TrainConfig(epochs=1, **FAST), out=tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before


def test_loader_workers_do_not_change_the_numbers() -> None:
    # augmentation is seeded per batch, not by whichever process runs it
    _, inline = fit(TrainConfig(epochs=1, **FAST), dropout=0.1)
    _, workers = fit(TrainConfig(epochs=1, num_workers=1, **FAST), dropout=0.1)
    assert workers.history == inline.history


def test_checkpoints_hold_the_weights_of_their_step_while_written_in_the_background(
    tmp_path: Path,
) -> None:
    """Training goes on while a checkpoint's tensors are written: each checkpoint must hold
    the weights of its own step, not later ones, and the run reports what checkpoints cost."""
    snapshots: dict[int, torch.Tensor] = {}

    class Snapshot(Callback):
        def on_step_end(self, trainer: Trainer, step: int, logs: Any) -> None:
            snapshots[step] = trainer.model.head.weight.detach().clone()

    config = TrainConfig(epochs=2, checkpoint_every_steps=2, keep_checkpoints=None, **FAST)
    _, result = fit(config, out=tmp_path, callbacks=[Snapshot()])
    from lepton_platform.engine import checkpoint as ckpt

    written = ckpt.list_checkpoints(tmp_path / "checkpoints")
    assert len(written) >= 4
    for path in written:
        ckpt.verify_checkpoint(path)  # complete, every file's checksum right
        step = int(path.name.split("-")[1])
        tensors, _ = ckpt.read_tensors(path / "model.safetensors")
        assert torch.equal(tensors["head.weight"], snapshots[step]), path.name
    assert not torch.equal(snapshots[2], snapshots[max(snapshots)])  # the weights did move
    assert result.checkpoint_s > 0 and result.checkpoint_write_s > 0
    assert result.to_json()["checkpoint_write_s"] == result.checkpoint_write_s
