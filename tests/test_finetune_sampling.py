"""How the fine-tune engine draws training batches: the balanced sampler, batches grouped by
length, and multi-label targets."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import pytest
import torch

from lepton_platform.engine._loop_utils import BatchPlan, balanced_weights
from lepton_platform.engine.finetune import TrainConfig, Trainer
from lepton_platform.errors import ConfigError
from lepton_platform.models import TransferModel
from lepton_platform.strategies.probe import FeatureBackbone, FeaturePreprocessor
from lepton_platform.tasks import ClassificationTask, MultiLabelClassificationTask


def test_balanced_sampler_draws_each_class_equally_often() -> None:
    labels = [0] * 900 + [1] * 100
    plan = BatchPlan(1000, 50, seed=3, shuffle=True, weights=balanced_weights(labels))
    drawn = Counter(labels[i] for b in plan.global_batches(0) for i in b)
    assert sum(drawn.values()) == 1000
    assert 440 < drawn[1] < 560  # 10% of the data, half of the draws
    again = BatchPlan(1000, 50, seed=3, shuffle=True, weights=balanced_weights(labels))
    assert all(
        np.array_equal(a, b)
        for a, b in zip(plan.global_batches(0), again.global_batches(0), strict=True)
    )
    assert not np.array_equal(
        np.concatenate(plan.global_batches(0)), np.concatenate(plan.global_batches(1))
    )


def test_length_grouping_keeps_every_example_once_and_pads_little() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 120, size=1003)
    grouped = BatchPlan(1003, 16, seed=0, shuffle=True, lengths=lengths).global_batches(0)
    plain = BatchPlan(1003, 16, seed=0, shuffle=True).global_batches(0)
    assert sorted(np.concatenate(grouped).tolist()) == list(range(1003))
    assert all(len(b) == 16 for b in grouped[:-1])
    assert int(lengths[grouped[0]].max()) == int(lengths.max())  # the longest batch first

    def padded(batches: list[np.ndarray]) -> int:
        return sum(len(b) * int(lengths[b].max()) for b in batches)

    assert padded(grouped) < 0.6 * padded(plain)


class _LengthPreprocessor(FeaturePreprocessor):
    output_columns = ("features", "length")
    length_column = "length"

    def collate(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return super().collate([{"features": e["features"]} for e in examples])


def _vectors(n: int, labels: list[Any], feature: Any) -> datasets.Dataset:
    rng = np.random.default_rng(0)
    return datasets.Dataset.from_dict(
        {
            "features": rng.normal(size=(n, 4)).astype(np.float32).tolist(),
            "label": labels,
            "length": rng.integers(1, 50, n).tolist(),
        },
        features=datasets.Features(
            {
                "features": datasets.Sequence(datasets.Value("float32")),
                "label": feature,
                "length": datasets.Value("int64"),
            }
        ),
    )


def test_trainer_groups_by_the_preprocessors_length_column() -> None:
    task = ClassificationTask(["a", "b"])
    model = TransferModel(FeatureBackbone(4), task.build_head(4))
    train = _vectors(40, [i % 2 for i in range(40)], datasets.ClassLabel(names=["a", "b"]))
    config = TrainConfig(epochs=1, batch_size=8, progress=False, sampler="balanced")
    fit = Trainer(model, task, config).fit(train, None, _LengthPreprocessor())
    assert fit.global_step == 5
    with pytest.raises(Exception, match="lacks"):
        Trainer(model, task, config).fit(
            train.remove_columns("length"), None, _LengthPreprocessor()
        )


def test_multilabel_rows_train_as_zero_one_vectors() -> None:
    names = ["red", "round", "small"]
    rows = [[0], [1, 2], [], [0, 1, 2]] * 10
    train = _vectors(40, rows, datasets.List(datasets.ClassLabel(names=names)))
    task = MultiLabelClassificationTask(names)
    model = TransferModel(FeatureBackbone(4), task.build_head(4))
    trainer = Trainer(model, task, TrainConfig(epochs=2, batch_size=8, progress=False))
    trainer.fit(train, None, FeaturePreprocessor())
    logits, labels = trainer.predict(train, FeaturePreprocessor())
    assert logits.shape == (40, 3) and labels is not None and labels.shape == (40, 3)
    assert labels[1].tolist() == [0.0, 1.0, 1.0] and labels[2].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ConfigError, match="single-label"):
        Trainer(model, task, TrainConfig(epochs=1, progress=False, sampler="balanced")).fit(
            train, None, FeaturePreprocessor()
        )


def test_rows_already_holding_zero_one_vectors_are_used_as_they_are() -> None:
    names = ["red", "round", "small"]
    vectors = [[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 1]] * 5
    train = _vectors(20, vectors, datasets.List(datasets.Value("int8"), length=3))
    task = MultiLabelClassificationTask(names)
    model = TransferModel(FeatureBackbone(4), task.build_head(4))
    trainer = Trainer(model, task, TrainConfig(epochs=1, batch_size=8, progress=False))
    trainer.fit(train, None, FeaturePreprocessor())
    _, labels = trainer.predict(train, FeaturePreprocessor())
    assert labels is not None and labels.tolist() == vectors


@pytest.mark.parametrize(("rows", "processes", "kept"), [(33, 1, 32), (34, 1, 34), (35, 2, 32),
                                                          (36, 2, 36), (64, 2, 64)])  # fmt: skip
def test_a_final_batch_of_one_row_per_process_is_dropped(
    rows: int, processes: int, kept: int
) -> None:
    plan = BatchPlan(rows, 32, seed=0, shuffle=True, num_processes=processes)
    batches = plan.global_batches(0)
    assert sum(len(b) for b in batches) == kept == BatchPlan.trained_rows(rows, 32, processes)
    assert len(plan) == len(batches)
    for batch in batches:
        assert all(len(BatchPlan.share(batch, r, processes)) >= 2 for r in range(processes))


def test_batch_norm_trains_when_one_row_is_left_over() -> None:
    """33 rows in batches of 32: the one-row remainder would break batch-norm's training step."""
    from lepton_platform.strategies.finetune import FineTune
    from lepton_platform.testing.tiny import tiny_job

    job = tiny_job(epochs=1)
    job.train = job.train.select(range(33))
    outcome = FineTune().run(job)
    assert outcome.fit is not None and outcome.fit.global_step == 1
