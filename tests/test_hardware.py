"""The speed defaults decided from the hardware (``train.matmul_precision: auto``,
``train.channels_last: auto``): what the probes measure, that their choices are remembered per
machine and never trusted when damaged, that a probe leaves the model and every random
generator as they were, and what the trainer does with a choice."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from lepton_platform.engine import hardware
from lepton_platform.engine.finetune import Trainer
from lepton_platform.engine.predict import predict
from lepton_platform.models import Backbone, LayerGroup, Preprocessor, TransferModel
from lepton_platform.settings import TrainConfig
from lepton_platform.strategies.probe import FeaturePreprocessor
from tests._engine_helpers import NUM_FEATURES, make_dataset, make_model, make_task

CPU = torch.device("cpu")


@pytest.fixture
def fresh_cache(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An empty Lepton cache and no choice remembered in this process."""
    monkeypatch.setenv("LEPTON_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(hardware, "_memo", {})
    return tmp_path / "hardware.json"


class ConvNet(nn.Module):
    """A convolution with batch norm and dropout over a 4-D ``pixels`` input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(8, 3)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        x = self.drop(torch.relu(self.norm(self.conv(inputs["pixels"]))))
        return self.out(x.mean(dim=(2, 3)))


def loss_of(model: nn.Module, batch: Any) -> torch.Tensor:
    return model(**batch).float().mean()


# -- matmul precision ----------------------------------------------------------------------------


def test_matmul_precision_given_and_by_rule() -> None:
    given = hardware.matmul_precision("highest", CPU)
    assert (given.value, given.source) == ("highest", "given")
    gpu = hardware.matmul_precision("auto", torch.device("cuda"))
    assert (gpu.value, gpu.source) == ("high", "rule")


def test_matmul_probe_is_measured_remembered_and_never_trusts_a_damaged_file(
    fresh_cache: Any,
) -> None:
    first = hardware.matmul_precision("auto", CPU)
    assert first.source == "probe"
    errors = first.measured["relative_error"]
    assert 0 < errors["highest"] < 1e-5  # float32 level for a 384-long dot product
    assert first.value in {"highest", "medium"}
    if first.value == "medium":
        assert errors["medium"] <= hardware.ERROR_FACTOR * errors["highest"]
        assert first.measured["speedup_medium"] >= hardware.MIN_GAIN
    saved = json.loads(fresh_cache.read_text())
    assert [entry["value"] for entry in saved.values()] == [first.value]

    hardware._memo.clear()  # a new process on this machine: read, not measured again
    again = hardware.matmul_precision("auto", CPU)
    assert (again.value, again.source, again.measured) == (first.value, "cached", first.measured)

    hardware._memo.clear()
    fresh_cache.write_text('{"matmul-0": ')  # truncated
    redone = hardware.matmul_precision("auto", CPU)
    assert redone.source == "probe"
    assert json.loads(fresh_cache.read_text())  # rewritten whole


def test_matmul_verdict_never_reduces_precision() -> None:
    # a bfloat16 path (CPUs with AMX): much faster, a thousand times the error
    bf16 = hardware.matmul_verdict({"highest": 4e-7, "medium": 3e-3}, gain=3.0)
    assert bf16.value == "highest" and "not float32-level" in bf16.reason
    onednn = hardware.matmul_verdict({"highest": 4e-7, "medium": 9e-7}, gain=2.2)
    assert onednn.value == "medium" and "2.20x faster" in onednn.reason
    slower = hardware.matmul_verdict({"highest": 4e-7, "medium": 9e-7}, gain=1.01)
    assert slower.value == "highest" and "not faster" in slower.reason


# -- memory layout -------------------------------------------------------------------------------


def test_channels_last_by_rule_without_a_convolution_or_a_4d_input(fresh_cache: Any) -> None:
    mlp = make_model()
    choice = hardware.channels_last("auto", mlp, mlp.backbone.example_batch, loss_of, CPU)
    assert (choice.value, choice.source) == (False, "rule")
    flat = hardware.channels_last(
        "auto", ConvNet(), lambda: {"pixels": torch.randn(2, 3)}, loss_of, CPU
    )
    assert (flat.value, flat.reason) == (False, "no 4-D input to convolve")
    assert not fresh_cache.exists()  # nothing probed, nothing remembered
    assert hardware.channels_last(True, mlp, None, loss_of, CPU).source == "given"


def test_channels_last_probe_leaves_the_model_and_the_generators_untouched(
    fresh_cache: Any,
) -> None:
    torch.manual_seed(0)
    model = ConvNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = {"pixels": torch.randn(4, 3, 16, 16)}
    rng = torch.get_rng_state()
    choice = hardware.channels_last("auto", model, lambda: batch, loss_of, CPU)
    assert choice.source == "probe" and isinstance(choice.value, bool)
    assert choice.measured["input_shapes"] == {"pixels": [4, 3, 16, 16]}
    assert choice.measured["speedup_channels_last"] > 0
    assert torch.equal(torch.get_rng_state(), rng)  # dropout in the probe drew nothing here
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # batch-norm statistics too
    assert all(p.grad is None for p in model.parameters())
    assert not hardware.uses_channels_last(model)
    # remembered per model configuration and input shape
    assert hardware.channels_last("auto", model, lambda: batch, loss_of, CPU) is choice
    other = {"pixels": torch.randn(4, 3, 8, 8)}
    assert hardware.channels_last("auto", model, lambda: other, loss_of, CPU) is not choice
    assert len(json.loads(fresh_cache.read_text())) == 2


# -- the trainer ---------------------------------------------------------------------------------


class ConvFeatures(Backbone):
    """The features reshaped into a 2-channel 1x3 image and convolved (a convolutional
    backbone over the engine tests' dataset)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, (1, 2))
        self.feature_dim = 4 * 2

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        image = inputs["features"].reshape(-1, 2, 1, NUM_FEATURES // 2)
        return torch.relu(self.conv(image)).flatten(1)

    def layer_groups(self) -> list[LayerGroup]:
        return [LayerGroup("conv", (self.conv,))]

    def preprocessor(self) -> Preprocessor:
        return FeaturePreprocessor()

    def config(self) -> dict[str, Any]:
        return {}

    def example_batch(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        return {"features": torch.randn(batch_size, NUM_FEATURES)}


def test_trainer_trains_and_predicts_in_the_layout_chosen(fresh_cache: Any) -> None:
    torch.manual_seed(0)
    backbone = ConvFeatures()
    model = TransferModel(backbone, make_task().build_head(backbone.feature_dim))
    plain = TransferModel(ConvFeatures(), make_task().build_head(backbone.feature_dim))
    config = TrainConfig(epochs=2, batch_size=16, progress=False, channels_last=True)
    trainer = Trainer(model, make_task(), config)
    assert hardware.uses_channels_last(model)
    data = make_dataset(64)
    result = trainer.fit(data, None, backbone.preprocessor())
    assert set(result.speed) == {"matmul_precision", "channels_last", "compile"}
    assert result.speed["channels_last"] == {
        "value": True, "source": "given", "reason": "train.channels_last", "measured": {}
    }  # fmt: skip
    assert result.speed["matmul_precision"]["source"] in {"probe", "cached"}
    plain.load_state_dict(model.state_dict())  # the same weights, stored NCHW
    assert not hardware.uses_channels_last(plain)
    ours = predict(model, data, backbone.preprocessor())
    theirs = predict(plain, data, backbone.preprocessor())
    np.testing.assert_allclose(ours.outputs, theirs.outputs, atol=1e-5)

    auto = Trainer(make_model(), make_task(), TrainConfig(epochs=1, progress=False))
    assert auto.speed["channels_last"].reason == "no 2-D convolution in the model"


@pytest.mark.slow
def test_compiled_training_follows_the_eager_loss_curve(fresh_cache: Any) -> None:
    curves = []
    for compiled in (False, True):
        config = TrainConfig(
            epochs=2, batch_size=16, progress=False, compile=compiled, matmul_precision="highest"
        )
        result = Trainer(make_model(seed=3), make_task(), config).fit(
            make_dataset(64), None, FeaturePreprocessor()
        )
        assert result.speed["compile"]["value"] is compiled
        curves.append([h["train_loss"] for h in result.history])
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-4)


def test_a_run_records_its_speed_defaults(tmp_path: Any, fresh_cache: Any) -> None:
    import lepton_platform as lp

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3)) + np.eye(3)[np.arange(60) % 3] * 3
    data = tmp_path / "rows.csv"
    lines = ["f1,f2,f3,label"] + [
        ",".join(f"{v:.3f}" for v in row) + f",c{i % 3}" for i, row in enumerate(x)
    ]
    data.write_text("\n".join(lines) + "\n")
    result = lp.transfer(
        domain="tabular", data=str(data), backbone="mlp",
        backbone_options={"num_features": 3, "hidden": [8]},
        train={"epochs": 1, "batch_size": 16, "progress": False},
    )  # fmt: skip
    speed = result.details["speed"]
    assert speed["channels_last"]["reason"] == "no 2-D convolution in the model"
    assert speed["matmul_precision"]["value"] in {"highest", "medium"}
    assert speed["compile"]["value"] is False
