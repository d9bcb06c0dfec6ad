"""MCC (minimum class confusion) and MixStyle (cross-domain feature-statistics mixing) on the
kit's tiny models, with real torch: the losses and the mixing against independent numpy
computations, the hooks' reach, the strategies' runs, controls and refusals."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from lepton_platform.adaptation import CORAL, MCC, MixStyle, mcc_loss, mix_statistics
from lepton_platform.adaptation._common import TargetStream
from lepton_platform.adaptation.mcc import class_confusion
from lepton_platform.adaptation.mixstyle import StyleMixer, instance_statistics
from lepton_platform.errors import ConfigError
from lepton_platform.models import Backbone, LayerGroup, Preprocessor, TransferModel
from lepton_platform.strategies.finetune import FineTune
from lepton_platform.tasks import MultiLabelClassificationTask
from lepton_platform.testing.tiny import (
    PixelPreprocessor,
    blob_images,
    blobs,
    tiny_conv_job,
    tiny_conv_model,
    tiny_job,
    tiny_model,
)

SHIFT = 2.0


def _states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- MCC: the loss ----------------------------------------------------------------------------


def _mcc_reference(logits: np.ndarray, temperature: float) -> tuple[float, np.ndarray]:
    """The paper's formula, step by step in float64 numpy."""
    z = logits / temperature
    y = np.exp(z - z.max(axis=1, keepdims=True))
    y /= y.sum(axis=1, keepdims=True)
    entropy = -(y * np.log(y)).sum(axis=1)
    w = 1.0 + np.exp(-entropy)
    w = len(y) * w / w.sum()
    c = y.T @ np.diag(w) @ y
    c = c / c.sum(axis=1, keepdims=True)
    return float((c.sum() - np.trace(c)) / y.shape[1]), c


def test_mcc_loss_matches_the_papers_formula() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [-2.0, 3.0, 0.5]])
    for temperature in (2.5, 1.0):
        expected, matrix = _mcc_reference(logits, temperature)
        got = mcc_loss(torch.tensor(logits, dtype=torch.float32), temperature)
        assert float(got) == pytest.approx(expected, rel=1e-5)
        confusion = class_confusion(torch.tensor(logits), temperature).numpy()
        np.testing.assert_allclose(confusion, matrix, rtol=1e-5)
        np.testing.assert_allclose(confusion.sum(axis=1), 1.0, rtol=1e-6)
    # the temperature matters: a sharper softmax confuses these rows less
    assert float(mcc_loss(torch.tensor(logits), 1.0)) < float(mcc_loss(torch.tensor(logits), 2.5))


def test_mcc_loss_bounds_confident_and_uniform_predictions() -> None:
    # uniform predictions: every entry of C equal, each row 1/K: loss = (K - 1) / K
    assert float(mcc_loss(torch.zeros(6, 4))) == pytest.approx(3 / 4, rel=1e-6)
    # confident one-hot predictions, every class present: almost no confusion
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    confident = 40.0 * nn.functional.one_hot(labels, 4).float()
    assert float(mcc_loss(confident)) < 1e-5
    rng = np.random.default_rng(0)
    random_logits = torch.tensor(rng.normal(0, 2, (8, 4)), dtype=torch.float32)
    assert 1e-5 < float(mcc_loss(random_logits)) < 0.75


def test_mcc_gradient_reaches_the_backbone_and_lowers_the_confusion() -> None:
    model, _ = tiny_model(seed=0)
    target = blobs(64, seed=4, shift=SHIFT)
    x = torch.tensor(np.asarray(target["features"]), dtype=torch.float32)
    model.train()
    loss = mcc_loss(model(features=x))
    loss.backward()
    for name, param in model.backbone.named_parameters():
        assert param.grad is not None and float(param.grad.abs().sum()) > 0, name
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(20):
        optimizer.zero_grad()
        step = mcc_loss(model(features=x))
        step.backward()
        optimizer.step()
    with torch.no_grad():
        assert float(mcc_loss(model(features=x))) < float(loss) - 0.05


# -- MCC: the strategy ------------------------------------------------------------------------


def _shifted_job(**config: Any) -> Any:
    job = tiny_job(epochs=3, trackers=(), **config)
    job.unlabelled_target = blobs(240, seed=4, shift=SHIFT).remove_columns(["label"])
    return job


def _accuracy(model: TransferModel, shifted: Any) -> float:
    from lepton_platform.adaptation.validators import model_outputs

    _, logits = model_outputs(model, shifted, model.backbone.preprocessor(), 64)
    return float((logits.argmax(1) == np.asarray(shifted["label"])).mean())


def test_mcc_adapts_to_an_unlabelled_shifted_target_reproducibly() -> None:
    runs = [MCC(weight=1.0).run(_shifted_job()) for _ in range(2)]
    outcome = runs[0]
    assert _states_equal(runs[0].model, runs[1].model)
    assert runs[0].details == runs[1].details
    details = outcome.details
    assert details["temperature"] == 2.5 and details["weight"] == 1.0
    assert details["selection"]["validator"] == "source-accuracy"
    assert len(details["selection"]["scores_per_epoch"]) == 3
    assert 0 < details["alignment_loss_last"] < details["alignment_loss_first"] < 2 / 3
    assert details["target_examples"] == 240
    assert "validator_source-accuracy" in outcome.history[0]
    x = torch.tensor(np.asarray(blobs(8, seed=9)["features"]), dtype=torch.float32)
    with torch.no_grad():
        logits = outcome.model.eval()(features=x)
    assert logits.shape == (8, 3) and torch.isfinite(logits).all()
    # against its control (the same training, weight 0): the target is classified better
    control = MCC(**MCC().control()).run(_shifted_job())  # type: ignore[arg-type]
    shifted = blobs(300, seed=5, shift=SHIFT)
    assert _accuracy(outcome.model, shifted) > _accuracy(control.model, shifted)


def test_mcc_control_and_registration() -> None:
    from lepton_platform.registry import create_strategy

    strategy = MCC(weight=0.5, temperature=3.0, validator="snd")
    control = strategy.control()
    assert control == {"weight": 0.0, "adabn": False, "validator": "snd", "temperature": 3.0}
    built = create_strategy("mcc", **control)
    assert isinstance(built, MCC) and built.config() == control
    assert built.control() is None  # the control has no control
    assert create_strategy("mcc", temperature=1.5).config()["temperature"] == 1.5


def test_mcc_control_is_source_only_training() -> None:
    """weight 0 is source-only training through the same template: the same weights as
    CORAL at weight 0, no alignment loss recorded."""
    mcc = MCC(weight=0.0).run(_shifted_job())
    coral = CORAL(weight=0.0).run(_shifted_job())
    assert _states_equal(mcc.model, coral.model)
    assert mcc.details["alignment_loss_first"] is None


def test_mcc_refuses_bad_parameters_and_multilabel_tasks() -> None:
    with pytest.raises(ConfigError, match="temperature"):
        MCC(temperature=0.0)
    with pytest.raises(ConfigError, match="weight"):
        MCC(weight=-1.0)
    job = tiny_job(epochs=1)
    job.task = MultiLabelClassificationTask(["a", "b", "c"])
    with pytest.raises(ConfigError, match="multi-label"):
        MCC().check_job(job)
    with pytest.raises(ConfigError, match="multi-label"):
        MCC().run(job)
    job = tiny_job(epochs=1)
    job.unlabelled_target = None
    with pytest.raises(ConfigError, match="no target data"):
        MCC().check_job(job)


# -- MixStyle: the mixing ---------------------------------------------------------------------


def _mix_reference(x: np.ndarray, mu_t: np.ndarray, sig_t: np.ndarray, lam: np.ndarray) -> Any:
    axes = tuple(range(2, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    sig = np.sqrt(x.var(axis=axes, ddof=1, keepdims=True) + 1e-6)
    lam = lam.reshape(-1, *([1] * (x.ndim - 1)))
    return (x - mu) / sig * (lam * sig + (1 - lam) * sig_t) + lam * mu + (1 - lam) * mu_t


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (4, 3, 7)])
def test_mix_statistics_interpolates_the_instance_statistics(shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen) * 2 + 1
    target = torch.randn(shape, generator=gen) * 0.5 - 3
    mu_t, sig_t = instance_statistics(target)
    dims = tuple(range(2, len(shape)))
    # lam = 1: the input comes back
    same = mix_statistics(x, mu_t, sig_t, torch.ones(shape[0]))
    torch.testing.assert_close(same, x, atol=1e-5, rtol=1e-5)
    # lam = 0: every instance and channel takes the target's mean and standard deviation
    styled = mix_statistics(x, mu_t, sig_t, torch.zeros(shape[0]))
    torch.testing.assert_close(styled.mean(dim=dims, keepdim=True), mu_t, atol=1e-5, rtol=0)
    torch.testing.assert_close(styled.std(dim=dims, keepdim=True), sig_t, atol=1e-4, rtol=1e-4)
    # any lam: the formula, computed independently
    lam = torch.tensor([0.0, 0.25, 0.7, 1.0])
    got = mix_statistics(x, mu_t, sig_t, lam)
    expected = _mix_reference(
        x.double().numpy(), mu_t.double().numpy(), sig_t.double().numpy(), lam.double().numpy()
    )
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4)


def test_mix_statistics_keeps_gradients_to_the_input_only() -> None:
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    mu_t = torch.randn(2, 3, 1, 1, requires_grad=True)
    sig_t = torch.rand(2, 3, 1, 1).add(0.5).requires_grad_()
    out = mix_statistics(x, mu_t, sig_t, torch.tensor([0.3, 0.6]))
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert mu_t.grad is None and sig_t.grad is None  # target statistics are detached


class _CountingStream(TargetStream):
    """A real target stream that counts the batches it builds."""

    built: int = 0

    def batch(self, index: int) -> dict[str, torch.Tensor]:
        self.built += 1
        return super().batch(index)


def _conv_setup(seed: int = 0) -> tuple[Backbone, _CountingStream, dict[str, torch.Tensor]]:
    """The tiny conv backbone, a counting stream of shifted target images, a source batch."""
    model, _ = tiny_conv_model(seed=0)
    pre = model.backbone.preprocessor()
    target = blob_images(48, seed=4, shift=SHIFT).remove_columns(["label"])
    source = blob_images(16, seed=1)
    batch = pre.collate([source[i] for i in range(16)])
    return model.backbone, _CountingStream(target, pre, 16, seed=seed), batch


def _install(backbone: Backbone, stream: TargetStream, p: float, seed: int = 0) -> StyleMixer:
    layers = [(o.name, o.module) for o in MixStyle().mixed_layers(backbone)]
    return StyleMixer(backbone, layers, stream, p=p, alpha=0.1, seed=seed)


def test_mixing_only_in_training_forward_passes_with_gradients() -> None:
    backbone, stream, x = _conv_setup()
    plain = copy.deepcopy(backbone)
    mixer = _install(backbone, stream, p=1.0)
    # evaluation mode: untouched, no target batch drawn
    backbone.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(backbone(**x), plain(**x), atol=0, rtol=0)
    assert stream.drawn == 0 and mixer.mixed == 0
    # training mode without gradients (AdaBN, validation in train mode): untouched
    backbone.train(), plain.train()
    with torch.no_grad():
        torch.testing.assert_close(backbone(**x), plain(**x), atol=0, rtol=0)
    assert mixer.mixed == 0 and stream.built == 0
    # a training step: mixed, with one target batch; batch-norm running statistics moved by
    # the source batch only (the target pass leaves them as they were): block1's, before any
    # mixing, are those of plain training, and every layer counted one batch more, not two
    mixed = backbone(**x)
    reference = plain(**x)
    assert mixer.mixed == 1 and stream.built == 1
    assert not torch.allclose(mixed, reference, atol=1e-3)
    bn1, plain_bn1 = backbone.block1[1], plain.block1[1]  # type: ignore[index]
    assert torch.equal(bn1.running_mean, plain_bn1.running_mean)
    assert torch.equal(bn1.running_var, plain_bn1.running_var)
    counts = [int(m.num_batches_tracked) for m in backbone.batchnorm_layers()]
    assert counts == [int(m.num_batches_tracked) for m in plain.batchnorm_layers()] == [2, 2]
    # hooks removed: plain training again
    mixer.close()
    torch.testing.assert_close(backbone(**x), plain(**x))


def test_the_layers_take_the_target_statistics_mixed_by_one_lambda() -> None:
    """After block1, each source instance's channel means are lam * its own + (1 - lam) * the
    target instance's, the same lam for every channel of the instance."""
    backbone, stream, x = _conv_setup()
    plain = copy.deepcopy(backbone).train()
    mixer = _install(backbone, stream, p=1.0)
    seen: list[torch.Tensor] = []
    block1 = backbone.block1  # type: ignore[attr-defined]
    block1.register_forward_hook(lambda m, a, out: seen.append(out.detach()))
    backbone.train()
    backbone(**x)
    assert mixer.mixed == 1 and len(seen) == 2  # the target pass, then the mixed source pass
    target = stream.batch(0)
    with torch.no_grad():
        mu_s, _ = instance_statistics(plain.block1(x["pixels"]))  # type: ignore[operator]
        mu_t, _ = instance_statistics(plain.block1(target["pixels"]))  # type: ignore[operator]
    mu_t = mu_t[torch.arange(16) % mu_t.shape[0]]
    mu_out, _ = instance_statistics(seen[1])
    gap = (mu_s - mu_t).flatten(1)
    implied = ((mu_out - mu_t).flatten(1) / gap).where(gap.abs() > 0.05, torch.nan)
    assert int(torch.isfinite(implied).sum()) > 16
    lam = implied.nanmean(dim=1, keepdim=True)
    assert float((implied - lam).abs().nan_to_num(0.0).max()) < 1e-3  # one lam per instance
    assert float(lam.min()) > -1e-3 and float(lam.max()) < 1 + 1e-3
    assert float(lam.std()) > 0.1  # drawn per instance


def test_mixer_is_seeded_and_p0_draws_nothing() -> None:
    outputs = []
    for seed in (0, 0, 1):
        backbone, stream, x = _conv_setup(seed)
        _install(backbone, stream, p=1.0, seed=seed)
        backbone.train()
        outputs.append(backbone(**x).detach())
    torch.testing.assert_close(outputs[0], outputs[1], atol=0, rtol=0)
    assert not torch.allclose(outputs[0], outputs[2])
    backbone, stream, x = _conv_setup()
    mixer = _install(backbone, stream, p=0.0)
    backbone.train()
    for _ in range(3):
        backbone(**x)
    assert mixer.batches == 3 and mixer.mixed == 0 and stream.built == 0


# -- MixStyle: the strategy -------------------------------------------------------------------


def test_mixstyle_runs_reproducibly_and_its_control_is_plain_training() -> None:
    runs = [MixStyle(p=0.5).run(tiny_conv_job(epochs=3, trackers=())) for _ in range(2)]
    assert _states_equal(runs[0].model, runs[1].model)
    details = runs[0].details
    assert details == runs[1].details
    assert details["mixed_layers"] == ["block1", "block2"]
    assert details["training_batches"] == 24  # 3 epochs of 240 rows in batches of 32
    assert 0 < details["mixed_batches"] < 24
    assert len(details["selection"]["scores_per_epoch"]) == 3
    assert not runs[0].model.backbone._forward_hooks  # the hooks are gone after training
    control = MixStyle(**MixStyle(p=0.5).control()).run(tiny_conv_job(epochs=3, trackers=()))  # type: ignore[arg-type]
    assert control.details["mixed_batches"] == 0
    assert not _states_equal(control.model, runs[0].model)
    # p = 0: exactly the template's source-only training (CORAL at weight 0 on the same job)
    plain = CORAL(weight=0.0).run(tiny_conv_job(epochs=3, trackers=()))
    assert _states_equal(control.model, plain.model)


def test_mixstyle_everywhere_with_adabn() -> None:
    outcome = MixStyle(p=1.0, layers="block2", adabn=True).run(tiny_conv_job(epochs=1, trackers=()))
    assert outcome.details["mixed_layers"] == ["block2"]
    assert outcome.details["mixed_batches"] == outcome.details["training_batches"] == 8
    assert outcome.details["adabn_examples"] == 120


def test_mixstyle_control_and_registration() -> None:
    from lepton_platform.registry import create_strategy

    strategy = MixStyle(p=0.3, alpha=0.2, layers=["block2"], adabn=True)
    control = strategy.control()
    assert control == {
        "p": 0.0,
        "alpha": 0.2,
        "layers": ["block2"],
        "adabn": True,
        "validator": "source-accuracy",
    }
    built = create_strategy("mixstyle", **control)
    assert isinstance(built, MixStyle) and built.config() == control and built.control() is None
    with pytest.raises(ConfigError, match="alpha"):
        MixStyle(alpha=0.0)
    with pytest.raises(ConfigError, match="p must be"):
        MixStyle(p=1.5)


class _Transformer(Backbone):
    """A one-layer transformer encoder: outputs (N, L, D), 3-D but no convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.encoder = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
        self.feature_dim = 8

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.encoder(self.embed(inputs["tokens"])).mean(dim=1)
        return out

    def layer_groups(self) -> list[LayerGroup]:
        return [LayerGroup("embed", (self.embed,)), LayerGroup("encoder", (self.encoder,))]

    def preprocessor(self) -> Preprocessor:
        return PixelPreprocessor()

    def config(self) -> dict[str, Any]:
        return {}

    def example_batch(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        return {"tokens": torch.randn(batch_size, 5, 4)}


class _Conv1d(Backbone):
    """A 1-D convolution (feature map (N, C, L)) then a linear projection."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(2, 6, 3, padding=1), nn.BatchNorm1d(6), nn.ReLU())
        self.proj = nn.Linear(6, 4)
        self.feature_dim = 4

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.proj(self.conv(inputs["signal"]).mean(dim=-1))
        return out

    def layer_groups(self) -> list[LayerGroup]:
        return [LayerGroup("conv", (self.conv,)), LayerGroup("proj", (self.proj,))]

    def preprocessor(self) -> Preprocessor:
        return PixelPreprocessor()

    def config(self) -> dict[str, Any]:
        return {}

    def example_batch(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        return {"signal": torch.randn(batch_size, 2, 10)}


def _model(backbone: Backbone) -> TransferModel:
    return TransferModel(backbone, nn.Linear(backbone.feature_dim, 3))


def test_mixstyle_refuses_backbones_without_conv_feature_maps() -> None:
    mlp, _ = tiny_model()
    with pytest.raises(ConfigError, match=r"TwoLayerBN .*\['block1', 'block2'\]"):
        MixStyle().check(mlp, pretrained=False)
    with pytest.raises(ConfigError, match=r"_Transformer .*\['embed', 'encoder'\]"):
        MixStyle().check(_model(_Transformer()), pretrained=False)
    job = tiny_job(epochs=1)
    with pytest.raises(ConfigError, match="convolutional feature maps"):
        MixStyle().run(job)
    assert job.model.backbone.calls == 1  # type: ignore[attr-defined]  # the shape probe only


def test_mixstyle_layer_names_are_checked() -> None:
    conv, _ = tiny_conv_model()
    with pytest.raises(ConfigError, match=r"\['block3'\] do not exist .*\['block1', 'block2'\]"):
        MixStyle(layers=["block1", "block3"]).check(conv, pretrained=False)
    one_d = _model(_Conv1d())
    assert [o.name for o in MixStyle().mixed_layers(one_d.backbone)] == ["conv"]
    with pytest.raises(ConfigError, match=r"\['proj'\] .* no convolutional feature map"):
        MixStyle(layers=["proj"]).check(one_d, pretrained=False)
    with pytest.raises(ConfigError, match="layers is empty"):
        MixStyle(layers=[])


def test_the_tiny_conv_job_is_a_learnable_task() -> None:
    outcome = FineTune().run(tiny_conv_job(epochs=2, trackers=()))
    assert _accuracy(outcome.model, blob_images(90, seed=2)) > 0.9
