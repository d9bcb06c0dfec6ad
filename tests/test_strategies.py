"""The built-in transfer strategies on a tiny real model: what trains, what stays frozen,
what the sweep reports, and the errors raised before any training."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

import lepton_platform as lp
from lepton_platform.errors import ConfigError
from lepton_platform.strategies import TransferJob
from lepton_platform.strategies.base import snapshot
from lepton_platform.strategies.regularized import interpolate
from lepton_platform.testing.tiny import blobs, tiny_job, tiny_model

pytestmark = pytest.mark.usefixtures("lepton_cache")


def make_job(epochs: int = 3, batchnorm: bool = True, **config: Any) -> TransferJob:
    return tiny_job(epochs=epochs, batchnorm=batchnorm, **config)


def accuracy(job: TransferJob, model: Any = None) -> float:
    return job.score(model or job.model)


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {k for k, v in module.state_dict().items() if not torch.equal(v, before[k])}


def test_registered_through_the_hook_like_a_plugin() -> None:
    names = {s.name for s in lp.list_strategies()}
    assert {
        "linear-probe",
        "finetune",
        "freeze",
        "freeze-unfreeze",
        "unfreeze-milestones",
        "lp-ft",
        "l2-sp",
        "wise-ft",
        "adabn",
    } <= names
    for spec in lp.list_strategies():
        if spec.provider and spec.provider.distribution == "lepton-platform":
            assert spec.description and spec.factory


def test_linear_probe_trains_the_head_on_cached_features() -> None:
    job = make_job()
    before = snapshot(job.model.backbone)
    outcome = lp.create_strategy("linear-probe").run(job)
    assert changed(before, job.model.backbone) == set()
    assert accuracy(job) > 0.9
    assert outcome.details["chosen_on"] == "validation"
    assert float(outcome.details["l2"]) in {1e-5, 1e-4, 1e-3, 1e-2, 1e-1}
    # the second run reads the cached features: the backbone does not run again
    calls = job.model.backbone.calls
    lp.create_strategy("linear-probe").run(job)
    assert job.model.backbone.calls == calls


def test_linear_probe_engine_solver_trains_through_the_engine() -> None:
    job = make_job(epochs=5, lr=0.05)
    outcome = lp.create_strategy("linear-probe", solver="adamw").run(job)
    assert len(outcome.history) == 5
    assert accuracy(job) > 0.85


def test_finetune_moves_every_layer() -> None:
    job = make_job()
    before = snapshot(job.model)
    lp.create_strategy("finetune").run(job)
    moved = changed(before, job.model)
    assert any(k.startswith("backbone.block1") for k in moved)
    assert any(k.startswith("head") for k in moved)


def test_freeze_keeps_backbone_and_batchnorm_statistics() -> None:
    job = make_job()
    before = snapshot(job.model)
    lp.create_strategy("freeze").run(job)
    moved = changed(before, job.model)
    assert moved and all(k.startswith("head") for k in moved), moved


def test_freeze_unfreeze_trains_backbone_after_the_epoch() -> None:
    job = make_job(epochs=3)
    before = snapshot(job.model)
    outcome = lp.create_strategy("freeze-unfreeze", unfreeze_epoch=2).run(job)
    assert len(outcome.history) == 3
    assert any(k.startswith("backbone.block1") for k in changed(before, job.model))


def test_unfreeze_milestones_leaves_groups_not_reached_frozen() -> None:
    job = make_job(epochs=3)
    before = snapshot(job.model)
    lp.create_strategy("unfreeze-milestones", milestones=[2]).run(job)
    moved = changed(before, job.model)
    assert any(k.startswith("backbone.block2") for k in moved)  # output side, unfrozen
    assert not any(k.startswith("backbone.block1") for k in moved)  # never reached


def test_layer_decay_gives_smaller_rates_towards_the_input() -> None:
    from lepton_platform.strategies.base import layerwise_param_groups

    model, _ = tiny_model()
    groups = layerwise_param_groups(model, lr=1.0, decay=0.5, weight_decay=0.0)
    rates = {g["name"]: g["lr"] for g in groups}
    assert rates["head"] == 1.0
    assert rates["block2"] == pytest.approx(0.5)
    assert rates["block1"] == pytest.approx(0.25)


def test_l2_sp_keeps_the_backbone_near_theta_0() -> None:
    def distance(alpha: float) -> float:
        job = make_job(epochs=3, lr=0.05)
        theta_0 = {k: v.detach().clone() for k, v in job.model.backbone.named_parameters()}
        lp.create_strategy("l2-sp", alpha=alpha).run(job)
        return sum(
            float((p.detach() - theta_0[k]).pow(2).sum())
            for k, p in job.model.backbone.named_parameters()
        )

    assert distance(50.0) < 0.5 * distance(0.0)


def test_wise_ft_sweeps_alpha_on_validation_and_keeps_the_best() -> None:
    job = make_job(epochs=2)
    outcome = lp.create_strategy("wise-ft", alphas=[0.0, 0.5, 1.0]).run(job)
    sweep = outcome.details["sweep"]
    assert [row["alpha"] for row in sweep] == [0.0, 0.5, 1.0]
    best = max(sweep, key=lambda r: (r["validation_score"], r["alpha"]))
    assert outcome.details["alpha"] == best["alpha"]
    assert accuracy(job) == pytest.approx(best["validation_score"])


def test_interpolate_is_the_formula() -> None:
    a = {"w": torch.zeros(3), "n": torch.tensor(1)}
    b = {"w": torch.ones(3) * 4, "n": torch.tensor(7)}
    out = interpolate(a, b, 0.25)
    assert torch.allclose(out["w"], torch.full((3,), 1.0))
    assert int(out["n"]) == 7
    with pytest.raises(ConfigError, match="different keys"):
        interpolate(a, {"w": torch.ones(3)}, 0.5)


def test_adabn_reestimates_batchnorm_statistics_on_target_inputs() -> None:
    job = make_job()
    shifted = blobs(200, seed=5, shift=4.0)
    job.unlabelled_target = shifted.remove_columns("label")
    bn = job.model.backbone.block1[1]
    outcome = lp.create_strategy("adabn", train_head=False).run(job)
    with torch.no_grad():
        x = torch.tensor(shifted["features"])
        expected = job.model.backbone.block1[0](x).mean(0)
    assert torch.allclose(bn.running_mean, expected, atol=1e-4)
    assert outcome.details["examples_used"] == 200


# -- bad input: clear errors before any training -----------------------------------------------


def test_unknown_strategy_offers_the_closest_name() -> None:
    with pytest.raises(lp.UnknownNameError, match="did you mean 'lp-ft'"):
        lp.create_strategy("lpft")


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("wise-ft", {"alphas": [0.5, 1.5]}, r"alpha must be in \[0.0, 1.0\]"),
        ("l2-sp", {"alpha": -1}, "alpha must be in"),
        ("unfreeze-milestones", {"milestones": [2, 1]}, "increasing"),
        ("finetune", {"layer_dcay": 0.5}, "did you mean 'layer_decay'"),
        ("linear-probe", {"solver": "newton"}, "solver must be one of"),
    ],
)
def test_bad_parameters_are_refused_when_built(
    name: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        lp.create_strategy(name, **params)


def test_milestone_past_the_last_epoch_is_refused_before_training() -> None:
    job = make_job(epochs=2)
    before = snapshot(job.model)
    with pytest.raises(ConfigError, match="past the last epoch"):
        lp.create_strategy("unfreeze-milestones", milestones=[1, 5]).run(job)
    assert changed(before, job.model) == set()


def test_unknown_layer_group_is_refused_by_check() -> None:
    model, _ = tiny_model()
    strategy = lp.create_strategy("unfreeze-milestones", groups=["block2", "block9"])
    with pytest.raises(ConfigError, match=r"block9.*do not exist.*block1"):
        strategy.check(model, pretrained=True)


def test_adabn_without_batchnorm_and_wise_ft_without_weights_are_refused() -> None:
    model, _ = tiny_model(batchnorm=False)
    with pytest.raises(ConfigError, match="no batch-norm layers"):
        lp.create_strategy("adabn").check(model, pretrained=True)
    with pytest.raises(ConfigError, match="needs pretrained weights"):
        lp.create_strategy("wise-ft").check(copy.deepcopy(model), pretrained=False)
