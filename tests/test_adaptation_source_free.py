"""Source-free adaptation (SHOT, pseudo-label self-training) on real source models: the kit's
tiny model trained on source blobs, adapted to a target whose noise feature moved (its labels
kept aside for the assertions only), and end to end through ``lp.transfer`` from a saved
Lepton model folder."""

from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

import lepton_platform as lp
from lepton_platform.adaptation._common import TargetLabelsIgnored
from lepton_platform.adaptation.pseudolabel import PseudoLabel
from lepton_platform.adaptation.shot import (
    EPSILON,
    SHOT,
    _Terms,
    centroid_pseudo_labels,
    information_maximisation,
)
from lepton_platform.artifacts import read_weights
from lepton_platform.engine.callbacks import Callback
from lepton_platform.errors import ConfigError, DataError
from lepton_platform.strategies.base import TransferJob, snapshot
from lepton_platform.strategies.finetune import FineTune
from lepton_platform.strategies.jobs import Engine
from lepton_platform.testing.tiny import blobs, tiny_job

#: The target moves the fourth feature (noise on the source) by this much: the source model,
#: near perfect on the source, errs on about one target row in eight.
SHIFT = (0.0, 0.0, 0.0, 4.0)
QUIET: dict[str, Any] = {"trackers": ()}


@pytest.fixture(autouse=True)
def _quiet(lepton_cache: Path) -> None:
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def shifted(n: int, seed: int, shift: tuple[float, ...] = SHIFT) -> datasets.Dataset:
    """Blobs (labelled) with ``shift`` added to every row."""
    source = blobs(n, seed)
    x = np.asarray(source["features"], dtype=np.float32) + np.asarray(shift, dtype=np.float32)
    return datasets.Dataset.from_dict(
        {"features": x.tolist(), "label": source["label"]}, features=source.features
    )


@functools.cache
def _source_state(seed: int) -> dict[str, torch.Tensor]:
    job = tiny_job(epochs=8, lr=0.05, seed=seed, **QUIET)
    FineTune().run(job)
    return snapshot(job.model)


def source_job(
    seed: int = 0, epochs: int = 3, target: datasets.Dataset | None = None
) -> TransferJob:
    """A job whose model is the trained source model (a fresh head: the strategy must load the
    source head itself) and whose unlabelled target is the shifted blobs without labels."""
    job = tiny_job(epochs=epochs, lr=0.01, seed=seed, **QUIET)
    job.model.load_state_dict(_source_state(seed))
    job.source_head = snapshot(job.model.head)
    for param in job.model.head.parameters():
        torch.nn.init.zeros_(param)
    job.pretrained_state = snapshot(job.model.backbone)
    job.unlabelled_target = (
        shifted(240, 10 + seed).remove_columns(["label"]) if target is None else target
    )
    return job


def accuracy(job: TransferJob, model: torch.nn.Module, data: datasets.Dataset) -> float:
    logits, _ = job.predict(model, data.remove_columns(["label"]))
    return float((logits.argmax(1) == np.asarray(data["label"])).mean())


def source_accuracy(seed: int, data: datasets.Dataset) -> float:
    job = source_job(seed)
    job.model.load_state_dict(_source_state(seed))
    return accuracy(job, job.model, data)


def same_state(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- the pieces, against independent computations ---------------------------------------------


def test_information_maximisation_matches_numpy() -> None:
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.98, 0.01, 0.01]])
    entropy = np.mean([-np.sum(row * np.log(row + EPSILON)) for row in p])
    mean = p.mean(axis=0)
    spread = -np.sum(mean * np.log(mean + EPSILON))
    probabilities = torch.tensor(p, dtype=torch.float64)
    assert float(information_maximisation(probabilities)) == pytest.approx(entropy - spread)
    assert float(information_maximisation(probabilities, 0.5)) == pytest.approx(
        entropy - 0.5 * spread
    )
    # one-hot and diverse: entropy 0, diversity log(3); all rows alike: no diversity gain
    assert float(information_maximisation(torch.eye(3))) == pytest.approx(-np.log(3), abs=1e-4)
    alike = torch.tensor([[0.6, 0.3, 0.1]] * 4)
    assert float(information_maximisation(alike)) == pytest.approx(0.0, abs=1e-6)


def test_shot_training_loss_is_im_plus_beta_cross_entropy() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.5, 0.2], [0.3, 0.1, 0.9]])
    labels = torch.tensor([0, 2, 2])
    z = logits.numpy().astype(np.float64)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    entropy = np.mean(-np.sum(p * np.log(p + EPSILON), axis=1))
    mean = p.mean(axis=0)
    spread = -np.sum(mean * np.log(mean + EPSILON))
    cross_entropy = -np.mean(np.log(p[np.arange(3), labels.numpy()]))
    terms = _Terms()
    loss = SHOT(beta=0.3, diversity=0.7).objective(terms)(logits, labels)
    assert float(loss) == pytest.approx(entropy - 0.7 * spread + 0.3 * cross_entropy, rel=1e-5)
    assert terms.batches == 1
    assert terms.totals()[2] == pytest.approx(cross_entropy, rel=1e-5)  # pseudo_label_ce


def test_centroid_pseudo_labels_on_hand_made_features() -> None:
    # two clusters, along x and along y; row 4 is predicted 0 but lies in the y cluster, row 5
    # is predicted 1 but lies in the x cluster (its norm does not matter: features are
    # L2-normalised); class 2 is never the arg-max, so it is no candidate
    features = np.array([[1, 0], [0.9, 0.2], [0, 1], [0.2, 0.9], [0.1, 2], [3, 0.3]])
    probabilities = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.7, 0.2, 0.1],
            [0.1, 0.8, 0.1],
            [0.2, 0.7, 0.1],
            [0.5, 0.4, 0.1],
            [0.3, 0.6, 0.1],
        ]
    )
    labels = centroid_pseudo_labels(features, probabilities)
    assert labels.tolist() == [0, 0, 1, 1, 1, 0]
    assert centroid_pseudo_labels(features * 7.0, probabilities).tolist() == labels.tolist()


def _reference(features: np.ndarray, p: np.ndarray) -> np.ndarray:
    """SHOT's ``obtain_label`` after the authors' code (scipy's cosine cdist), without the
    appended bias feature; a class left empty by the first assignment has no centroid."""
    x = features / np.linalg.norm(features, axis=1, keepdims=True)
    k = p.shape[1]
    labelset = np.where(np.eye(k)[p.argmax(1)].sum(axis=0) > 0)[0]
    centroids = p.T @ x / (1e-8 + p.sum(axis=0)[:, None])
    first = labelset[cdist(x, centroids[labelset], "cosine").argmin(axis=1)]
    hard = np.eye(k)[first]
    centroids = hard.T @ x / (1e-8 + hard.sum(axis=0)[:, None])
    present = np.unique(first)
    out: np.ndarray = present[cdist(x, centroids[present], "cosine").argmin(axis=1)]
    return out


@pytest.mark.parametrize("seed", range(5))
def test_centroid_pseudo_labels_match_the_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, (4, 6))
    truth = rng.integers(0, 4, 200)
    features = np.abs(centres[truth] + rng.normal(0, 1.5, (200, 6)))
    logits = rng.normal(0, 1, (200, 4)) + 2 * np.eye(4)[truth]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert centroid_pseudo_labels(features, p).tolist() == _reference(features, p).tolist()


def test_engine_hooks_loss_and_relabel() -> None:
    """The two engine hooks SHOT drives: a training loss of the strategy's own, and labels
    replaced between epochs (refused outside that moment, or when they do not fit)."""
    job = tiny_job(epochs=2, **QUIET)
    seen: list[list[int]] = []

    class Relabel(Callback):
        def on_epoch_start(self, trainer: Any, epoch: int) -> None:
            trainer.relabel(np.full(len(job.train), epoch + 1))

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        seen.append(sorted(set(labels.tolist())))
        return logits.sum() * 0 + 7.0  # constant: the history must show it

    trainer = job.trainer(loss=loss, callbacks=[Relabel()])
    with pytest.raises(ConfigError, match="between epochs"):
        trainer.relabel([0] * len(job.train))
    fit = trainer.fit(job.train, job.validation, job.preprocessor)
    assert [h["train_loss"] for h in fit.history] == [7.0, 7.0]
    assert seen[0] == [1] and seen[-1] == [2]  # epoch 0 trained on label 1, epoch 1 on 2
    assert "val_loss" in fit.history[0]  # validation keeps the task's loss

    class Wrong(Callback):
        def on_train_start(self, trainer: Any) -> None:
            trainer.relabel([0, 1])

    with pytest.raises(DataError, match="one integer label per training row"):
        tiny_job(epochs=1, **QUIET).trainer(callbacks=[Wrong()]).fit(
            job.train, None, job.preprocessor
        )


# -- the strategies on a real source model -----------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_shot_and_pseudo_label_beat_the_source_model_on_a_shifted_target(seed: int) -> None:
    test = shifted(300, 20 + seed)
    before = source_accuracy(seed, test)
    assert source_accuracy(seed, blobs(300, 30)) > 0.97  # a good source model ...
    assert before < 0.93  # ... that the shift hurts
    for strategy in (SHOT(), PseudoLabel()):
        job = source_job(seed)
        assert "label" not in job.unlabelled_target.column_names  # type: ignore[union-attr]
        strategy.check_job(job)
        outcome = strategy.run(job)
        after = accuracy(job, outcome.model, test)
        assert after > before + 0.05, (strategy.name, before, after)


def test_shot_keeps_the_source_head_and_reports() -> None:
    job = source_job(epochs=2)
    head = {k: v.clone() for k, v in job.source_head.items()}  # type: ignore[union-attr]
    backbone = snapshot(job.model.backbone)
    outcome = SHOT().run(job)
    assert same_state(outcome.model.head.state_dict(), head)
    assert not same_state(outcome.model.backbone.state_dict(), backbone)
    assert all(p.requires_grad for p in outcome.model.parameters())
    details = outcome.details
    assert details["target_examples"] == 240 and details["trained_rows"] == 240
    assert [r["epoch"] for r in details["per_epoch"]] == [0, 1]
    first, second = details["per_epoch"]
    assert first["prediction_agreement"] == 1.0  # the first epoch predicts with the source
    assert 0.5 < first["pseudo_label_agreement"] < 1.0  # the centroids correct some rows
    assert second["pseudo_labels_changed"] is not None
    for record in details["per_epoch"]:
        assert record["loss"] == pytest.approx(
            record["entropy"] - record["diversity"] + 0.3 * record["pseudo_label_ce"], rel=1e-6
        )
    scores = [s["snd"] for s in details["selection"]["scores_per_epoch"]]
    assert details["selection"]["validator"] == "snd"
    assert details["selection"]["chosen_epoch"] == int(np.argmax(scores))
    assert {"validator_snd", "shot_entropy", "pseudo_label_agreement"} <= set(outcome.history[0])


def test_pseudo_label_reports_each_round() -> None:
    outcome = PseudoLabel(threshold=0.8, rounds=2, validator="none").run(source_job(epochs=2))
    rounds = outcome.details["rounds_report"]
    assert [r["round"] for r in rounds] == [0, 1]
    for r in rounds:
        assert 32 <= r["kept"] <= 240
        assert sum(r["class_histogram"].values()) == r["kept"]
        assert set(r["class_histogram"]) == {"a", "b", "c"}
        assert r["mean_confidence_kept"] >= 0.8
        assert r["selection"]["chosen_epoch"] == 1  # none: the last epoch
    assert rounds[0]["agreement_with_source"] == 1.0
    assert [h["round"] for h in outcome.history] == [0, 0, 1, 1]


def test_target_labels_are_never_read() -> None:
    """The same target with a wrong label column gives exactly what it gives without one."""
    inputs = shifted(240, 10)
    wrong = inputs.map(lambda row: {"label": 0})
    for make in (lambda: SHOT(), lambda: PseudoLabel(threshold=0.8)):
        clean = make().run(source_job(epochs=2, target=inputs.remove_columns(["label"])))
        with pytest.warns(TargetLabelsIgnored, match="ignored"):
            labelled = make().run(source_job(epochs=2, target=wrong))
        assert same_state(clean.model.state_dict(), labelled.model.state_dict())
        assert clean.details == labelled.details


def test_one_seed_repeats_exactly() -> None:
    for make in (lambda: SHOT(), lambda: PseudoLabel(threshold=0.8)):
        first, second = make().run(source_job(epochs=2)), make().run(source_job(epochs=2))
        assert same_state(first.model.state_dict(), second.model.state_dict())
        assert first.details == second.details


class _Killed(Exception):
    pass


class _Crash(Callback):
    """Kills the run after optimiser step ``step`` of its ``stage``-th trainer (0-based)."""

    def __init__(self, step: int, stage: int = 0) -> None:
        self.step, self.stage, self.started = step, stage, -1

    def on_train_start(self, trainer: Any) -> None:
        self.started += 1

    def on_step_end(self, trainer: Any, step: int, logs: Any) -> None:
        if step == self.step and self.started == self.stage:
            raise _Killed


@pytest.mark.parametrize(
    ("make", "stage"), [(SHOT, 0), (lambda: PseudoLabel(threshold=0.8), 1)], ids=["shot", "pl"]
)
def test_killed_mid_epoch_and_resumed_ends_like_an_uninterrupted_run(
    tmp_path: Path, make: Any, stage: int
) -> None:
    """Killed after step 5 of the second epoch (SHOT: 8 steps an epoch) or of the second
    round's first epoch (pseudo-label), after the checkpoint of step 4 (one every 2 steps)."""

    def job(folder: str, crash: _Crash | None = None, resume: bool = False) -> TransferJob:
        j = source_job(epochs=2)
        j.config = j.with_config(checkpoint_every_steps=2)
        j.output_dir, j.resume = tmp_path / folder, resume
        j.engine = Engine([crash] if crash else [])
        return j

    whole = make().run(job("whole"))
    with pytest.raises(_Killed):
        make().run(job("killed", _Crash(13 if stage == 0 else 5, stage)))
    resumed = make().run(job("killed", resume=True))
    assert same_state(whole.model.state_dict(), resumed.model.state_dict())
    assert whole.details == resumed.details


# -- what is refused, and why -------------------------------------------------------------------


def test_refused_without_a_source_head() -> None:
    for strategy in (SHOT(), PseudoLabel()):
        job = source_job()
        job.source_head = None
        calls = job.model.backbone.calls
        with pytest.raises(ConfigError, match="Lepton model folder"):
            strategy.check_job(job)
        with pytest.raises(ConfigError, match="Lepton model folder"):
            strategy.run(job)
        assert job.model.backbone.calls == calls


def test_refused_when_too_few_target_rows_pass_the_threshold() -> None:
    weak = tiny_job(epochs=1, **QUIET)  # its source head is untrained: top probability < 0.5
    refused = r"only 0 of the 120 .* threshold 0\.9.*fewer than two per class \(6\).*Lower the"
    with pytest.raises(DataError, match=refused):
        PseudoLabel().run(weak)
    rows = np.random.default_rng(0).normal(0, 0.1, (60, 4)) + np.array([3, 0, 0, 0])  # a only
    a_only = datasets.Dataset.from_dict({"features": rows.astype(np.float32).tolist()})
    with pytest.raises(DataError, match=r"all 60 target examples .* pseudo-labelled 'a'.*collapse"):
        PseudoLabel(threshold=0.5).run(source_job(target=a_only))


def test_parameters_validators_and_controls() -> None:
    from lepton_platform.registry import create_strategy

    assert isinstance(create_strategy("shot", beta=0.5), SHOT)
    assert create_strategy("pseudo-label", rounds=3).config() == {
        "threshold": 0.9,
        "rounds": 3,
        "validator": "snd",
    }
    assert SHOT().config() == {"beta": 0.3, "diversity": 1.0, "validator": "snd"}
    assert SHOT().control() is None and PseudoLabel().control() is None
    assert SHOT.needs_source_head and PseudoLabel.needs_source_head
    with pytest.raises(ConfigError, match="source-free"):
        SHOT(validator="iwv")
    with pytest.raises(ConfigError, match="did you mean 'snd'"):
        PseudoLabel(validator="sdn")
    with pytest.raises(ConfigError, match="rounds"):
        PseudoLabel(rounds=0)
    with pytest.raises(ConfigError, match="threshold"):
        PseudoLabel(threshold=1.5)
    job = source_job()
    job.config = job.with_config(early_stopping_patience=2)
    with pytest.raises(ConfigError, match="early_stopping_patience"):
        SHOT().check_job(job)
    job = source_job()
    job.unlabelled_target = None
    with pytest.raises(ConfigError, match="no target data"):
        PseudoLabel().check_job(job)


def test_validator_none_keeps_the_last_epoch() -> None:
    outcome = SHOT(validator="none").run(source_job(epochs=2))
    assert outcome.details["selection"]["chosen_epoch"] == 1
    assert "validator_snd" not in outcome.history[0]


# -- end to end, from a saved Lepton model folder ---------------------------------------------


#: The tabular example's mlp (no batch-norm) needs a larger move of the noise feature.
TABULAR_SHIFT = (0.0, 0.0, 0.0, 6.0)


def write_rows(
    path: Path,
    n: int,
    seed: int,
    *,
    shift: tuple[float, ...] = (0.0,) * 4,
    labelled: bool = True,
    names: str = "c",
) -> Path:
    """Three classes on the first three features, the fourth noise; ``shift`` added."""
    rng = np.random.default_rng(seed)
    lines = ["f1,f2,f3,f4" + (",label" if labelled else "")]
    for i in range(n):
        label = i % 3
        x = rng.normal(0, 0.7, 4) + np.r_[np.eye(3)[label] * 3, 0.0] + np.asarray(shift)
        lines.append(",".join(f"{v:.4f}" for v in x) + (f",{names}{label}" if labelled else ""))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_transfer_with_shot_from_a_saved_source_model(tmp_path: Path) -> None:
    source = write_rows(tmp_path / "source.csv", 240, seed=1)
    target = write_rows(tmp_path / "target.csv", 240, 12, shift=TABULAR_SHIFT, labelled=False)
    target_test = write_rows(tmp_path / "target_test.csv", 240, 13, shift=TABULAR_SHIFT)
    data = [{"path": str(source), "split": "train"}, {"path": str(target_test), "split": "test"}]
    common: dict[str, Any] = {"domain": "tabular", "data": data, "backbone": "mlp", "bootstrap": 0}
    train = {"lr": 0.01, "batch_size": 32, "progress": False, "trackers": ()}
    before = lp.transfer(
        **common,
        backbone_options={"num_features": 4, "hidden": [16]},
        train={**train, "epochs": 15, "lr": 0.05},
        output_dir=tmp_path / "source",
    )
    model = tmp_path / "source" / "model"
    after = lp.transfer(
        **common,
        pretrained=str(model),
        strategy="shot",
        unlabelled_target=[{"path": str(target)}],
        train={**train, "epochs": 4},
        output_dir=tmp_path / "shot",
    )
    assert before.metrics["test"]["accuracy"] < 0.93
    assert after.metrics["test"]["accuracy"] > before.metrics["test"]["accuracy"] + 0.05
    assert after.details["selection"]["validator"] == "snd"
    assert after.details["source_model"] == str(model.absolute())
    assert after.details["target_examples"] == 240
    adapted = read_weights(tmp_path / "shot" / "model")
    assert same_state(adapted.state("head."), read_weights(model).state("head."))
    assert not same_state(adapted.state("backbone."), read_weights(model).state("backbone."))

    other = write_rows(tmp_path / "other.csv", 90, 4, names="d")
    with pytest.raises(lp.ConfigError, match=r"labels.*Lepton model folder"):
        lp.transfer(
            **{**common, "data": [{"path": str(other), "split": "train"}]},
            pretrained=str(model),
            strategy="shot",
            unlabelled_target=[{"path": str(target)}],
            train={**train, "epochs": 1},
        )


def test_copy_of_the_source_state_is_untouched() -> None:
    """The cached source model is the same for every test (a test must not train it)."""
    state = copy.deepcopy(_source_state(0))
    SHOT().run(source_job(epochs=1))
    assert same_state(state, _source_state(0))
