"""DANN, CORAL and label-free selection on the kit's tiny model and shifted blobs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lepton_platform.adaptation import CORAL, DANN, coral_loss, dann_lambda, grad_reverse, select
from lepton_platform.adaptation._common import TargetLabelsIgnored
from lepton_platform.adaptation.validators import (
    ValidationData,
    density_ratios,
    model_outputs,
    score_all,
    snd_from_logits,
)
from lepton_platform.errors import ConfigError, DataError
from lepton_platform.strategies.finetune import FineTune
from lepton_platform.testing.tiny import blobs, tiny_job

SHIFT = 2.0


def test_gradient_reversal_flips_and_scales_gradients() -> None:
    x = torch.randn(5, 3, requires_grad=True)
    y = grad_reverse(x, 0.7)
    assert torch.equal(y, x)
    (y * torch.arange(3.0)).sum().backward()
    assert x.grad is not None
    assert torch.allclose(x.grad, -0.7 * torch.arange(3.0).expand(5, 3))


def test_lambda_schedule() -> None:
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(0.5) == pytest.approx(2 / (1 + np.exp(-5)) - 1)
    assert 0.999 < dann_lambda(1.0) < 1.0


def test_coral_loss_matches_hand_computation() -> None:
    s = torch.tensor([[1.0, 2.0], [3.0, 0.0], [5.0, 4.0]])
    t = torch.tensor([[0.0, 1.0], [2.0, 2.0], [1.0, 0.0]])
    # by hand: centred s = [[-2,0],[0,-2],[2,2]] -> C_s = [[4,2],[2,4]]
    #          centred t = [[-1,0],[1,1],[0,-1]] -> C_t = [[1,.5],[.5,1]]
    # diff = [[3,1.5],[1.5,3]] -> ||.||^2 = 9+9+2.25+2.25 = 22.5; / (4 * 2^2) = 1.40625
    assert float(coral_loss(s, t)) == pytest.approx(1.40625)
    assert float(coral_loss(s, s)) == 0.0


def _job(epochs: int = 4) -> tuple[object, object]:
    job = tiny_job(epochs=epochs, lr=0.01)
    job.unlabelled_target = blobs(240, seed=4, shift=SHIFT).remove_columns(["label"])
    return job, blobs(300, seed=5, shift=SHIFT)


def _gap_and_accuracy(job, model, target_test) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Proxy domain gap: cross-validated accuracy of a domain classifier on the features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    fs, _ = model_outputs(model, job.validation, job.preprocessor, 64)
    ft, logits = model_outputs(model, target_test, job.preprocessor, 64)
    x = np.concatenate([fs, ft[:90]])
    y = np.r_[np.zeros(90), np.ones(90)]
    gap = float(cross_val_score(LogisticRegression(max_iter=1000), x, y, cv=3).mean())
    accuracy = float((logits.argmax(1) == np.asarray(target_test["label"])).mean())
    return gap, accuracy


def test_dann_and_coral_reduce_the_domain_gap() -> None:
    results = {}
    for name, strategy in (("source-only", FineTune()), ("dann", DANN()), ("coral", CORAL(10.0))):
        job, target_test = _job()
        outcome = strategy.run(job)  # type: ignore[attr-defined]
        results[name] = _gap_and_accuracy(job, outcome.model, target_test)
    gap0, acc0 = results["source-only"]
    for name in ("dann", "coral"):
        gap, acc = results[name]
        assert gap < gap0 - 0.03, results
        assert acc > acc0, results


def test_validator_chooses_without_target_labels_and_reports() -> None:
    job, _ = _job(epochs=3)
    assert "label" not in job.unlabelled_target.column_names  # type: ignore[attr-defined]
    outcome = CORAL(validator="snd").run(job)  # type: ignore[arg-type]
    selection = outcome.details["selection"]
    assert selection["validator"] == "snd"
    scores = [row["snd"] for row in selection["scores_per_epoch"]]
    assert len(scores) == 3
    assert selection["chosen_epoch"] == int(np.argmax(scores))
    assert {"source-accuracy", "iwv", "snd"} <= set(selection["scores_per_epoch"][0])
    assert "validator_snd" in outcome.history[0]


def test_select_hyperparameters_by_iwv() -> None:
    job, _ = _job(epochs=2)
    chosen = select(job, {"w0.1": CORAL(0.1), "w10": CORAL(10.0)}, validator="iwv")  # type: ignore[arg-type]
    assert chosen.chosen == max(chosen.scores, key=lambda n: chosen.scores[n]["iwv"])
    assert set(chosen.scores) == {"w0.1", "w10"}


def test_snd_prefers_clustered_predictions() -> None:
    rng = np.random.default_rng(0)
    confident = np.eye(3)[rng.integers(0, 3, 60)] * 10
    diffuse = rng.normal(0, 0.5, (60, 3))
    assert snd_from_logits(confident) != snd_from_logits(diffuse)
    assert np.isfinite(snd_from_logits(diffuse))


def test_density_ratios_upweight_target_like_rows() -> None:
    rng = np.random.default_rng(0)
    source = rng.normal(0, 1, (200, 2))
    target = rng.normal(1.5, 1, (200, 2))
    w = density_ratios(source, target)
    near = source[:, 0] + source[:, 1] > 1.5
    assert w.mean() == pytest.approx(1.0, rel=0.05)
    assert w[near].mean() > 2 * w[~near].mean()


def test_adabn_combination_needs_batchnorm_and_adapts() -> None:
    job, _ = _job(epochs=1)
    outcome = DANN(adabn=True).run(job)  # type: ignore[arg-type]
    assert outcome.details["adabn_examples"] == 240
    no_bn = tiny_job(epochs=1, batchnorm=False)
    no_bn.unlabelled_target = blobs(30, seed=4, shift=SHIFT)
    with pytest.raises(ConfigError, match="no batch-norm"):
        CORAL(adabn=True).run(no_bn)


def test_target_labels_are_dropped_with_a_warning() -> None:
    job = tiny_job(epochs=1)
    job.unlabelled_target = blobs(60, seed=4, shift=SHIFT)
    with pytest.warns(TargetLabelsIgnored, match="ignored"):
        outcome = CORAL().run(job)
    assert outcome.details["target_examples"] == 60


def test_bad_targets_fail_before_training() -> None:
    job = tiny_job(epochs=1)
    job.unlabelled_target = None
    calls = job.model.backbone.calls  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="no target data"):
        DANN().run(job)
    job.unlabelled_target = blobs(10, seed=4).select([])
    with pytest.raises(DataError, match="empty"):
        DANN().run(job)
    job.unlabelled_target = blobs(20, seed=4, num_features=3)
    with pytest.warns(TargetLabelsIgnored), pytest.raises(DataError, match="same input shape"):
        CORAL().run(job)
    job.unlabelled_target = (
        blobs(20, seed=4).rename_column("features", "text").remove_columns(["label"])
    )
    with pytest.raises(DataError, match="another modality"):
        CORAL().run(job)
    assert job.model.backbone.calls - calls <= 1  # at most the one shape probe ran  # type: ignore[attr-defined]


def test_unknown_validator_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="did you mean 'snd'"):
        DANN(validator="sdn")


def test_strategies_registered() -> None:
    from lepton_platform.registry import create_strategy

    assert isinstance(create_strategy("dann", weight=0.3), DANN)
    assert create_strategy("coral", adabn=True).config()["adabn"] is True


def test_score_all_without_source_uses_snd_only() -> None:
    job, _ = _job(epochs=1)
    data = ValidationData(job.task, job.preprocessor, None, job.unlabelled_target)  # type: ignore[attr-defined]
    assert set(score_all(job.model, data)) == {"snd"}  # type: ignore[attr-defined]


def test_transfer_with_dann_says_target_labels_are_ignored() -> None:
    from lepton_platform.api.transfer import transfer
    from lepton_platform.data import DataBundle
    from lepton_platform.testing.tiny import TwoLayerBN

    bundle = DataBundle(
        train=blobs(120, seed=1),
        validation=blobs(45, seed=2),
        test=blobs(60, seed=3),
        label_names=["a", "b", "c"],
        input_columns=("features",),
    )
    with pytest.warns(TargetLabelsIgnored, match="transfer"):
        result = transfer(
            domain="tabular",
            data=bundle,
            backbone=TwoLayerBN(),
            strategy="dann",
            strategy_params={"validator": "iwv", "adabn": True},
            train={"epochs": 1, "progress": False, "trackers": ()},
            unlabelled_target=blobs(90, seed=4, shift=SHIFT),
            bootstrap=0,
        )
    assert result.details["selection"]["validator"] == "iwv"
    assert result.details["target_examples"] == 90
    assert result.strategy["name"] == "dann"
