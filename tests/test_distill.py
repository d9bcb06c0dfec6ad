"""``distill`` on real tiny models: a BERT teacher saved as a Lepton model folder and a smaller
student, the kit's MLP for the cache and the loss; what is refused before training; and
``compare`` setting the student, with and without distillation, beside its teacher."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import lepton_platform as lp
from lepton_platform.errors import ConfigError
from lepton_platform.strategies.distill import HAS_LABEL, TEACHER_LOGITS, Distill, _Student
from lepton_platform.testing.tiny import tiny_job
from tests._adapter_helpers import save_pretrained_bert, write_reviews

TRAIN = {"epochs": 2, "lr": 2e-3, "batch_size": 16, "progress": False}


@pytest.fixture(autouse=True)
def _offline(lepton_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A 2-layer BERT teacher fine-tuned on reviews (a Lepton model folder) and a 1-layer BERT
    student with the same tokenizer."""
    root = tmp_path_factory.mktemp("distill")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("LEPTON_CACHE_DIR", str(root / "cache"))
        data = write_reviews(root / "reviews.txt", rows=120)
        teacher = lp.transfer(
            domain="text",
            data=str(data),
            backbone="hf-text",
            pretrained=str(save_pretrained_bert(root / "big", seed=0, layers=2)),
            strategy="finetune",
            train={**TRAIN, "epochs": 3},
            output_dir=str(root / "teacher"),
            bootstrap=0,
        )
        yield {
            "root": root,
            "data": data,
            "teacher": teacher,
            "student": save_pretrained_bert(root / "small", seed=3, layers=1),
        }


def distil(corpus: dict[str, Any], folder: str, **params: Any) -> Any:
    return lp.transfer(
        domain="text",
        data=str(corpus["data"]),
        backbone="hf-text",
        pretrained=str(corpus["student"]),
        strategy="distill",
        strategy_params={"teacher": str(corpus["teacher"].artifact), **params},
        train=TRAIN,
        output_dir=str(corpus["root"] / folder),
        bootstrap=0,
    )


def test_a_student_learns_from_a_teacher_folder(corpus: dict[str, Any]) -> None:
    result = distil(corpus, "student", weight=0.7, temperature=3.0)
    teacher = corpus["teacher"]
    details = result.details
    assert details["teacher"] == str(teacher.artifact)
    teacher_model = lp.load(teacher.artifact).model
    assert details["teacher_parameters"] == sum(p.numel() for p in teacher_model.parameters())
    assert details["student_parameters"] == result.parameters["model"]
    assert details["student_parameters"] < details["teacher_parameters"]
    assert details["teacher_rows"] == {"train": teacher.data_summary["rows"]["train"]}
    # the cached teacher outputs on validation are the teacher's own predictions there
    assert details["teacher_validation_accuracy"] == pytest.approx(
        teacher.metrics["validation"]["accuracy"]
    )
    # the saved student is the 1-layer model alone (no projection, no teacher inside)
    student = lp.load(result.artifact)
    names = list(student.model.state_dict())
    assert not [n for n in names if "encoder.layer.1." in n or "teacher" in n]
    assert student.predict(["good food"])[0].label in ("0", "1")


def test_the_teacher_runs_once_over_the_data_whatever_the_epochs() -> None:
    """The teacher's outputs are computed in one pass over train, validation and the
    unlabelled target, and cached: not at every epoch, nor again in a second run."""
    job = tiny_job(epochs=3)
    teacher = copy.deepcopy(job.model)
    teacher.backbone.calls = 0
    batch = job.config.eval_batch_size or job.config.batch_size
    rows = len(job.train), len(job.validation), len(job.unlabelled_target)
    passes = sum(math.ceil(n / batch) for n in rows)
    outcome = Distill(teacher=teacher, weight=0.5).run(job)
    assert teacher.backbone.calls == passes
    assert outcome.details["teacher_rows"] == {"train": rows[0], "unlabelled_target": rows[2]}
    Distill(teacher=teacher, weight=0.5).run(tiny_job(epochs=2))
    assert teacher.backbone.calls == passes  # read from the cache


def test_the_loss_mixes_cross_entropy_and_the_softened_kl_per_the_formula() -> None:
    job = tiny_job()
    weight, temperature = 0.3, 2.0
    strategy = Distill(teacher=job.model, weight=weight, temperature=temperature)
    student = _Student(job.model.backbone, None)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 3))
    teacher = rng.normal(size=(6, 3))
    labels = np.array([0, 2, 1, 1, 0, 0])
    labelled = np.array([1, 1, 1, 1, 0, 0], dtype=np.float32)  # two unlabelled target rows
    student.batch = {
        TEACHER_LOGITS: torch.as_tensor(teacher, dtype=torch.float32),
        HAS_LABEL: torch.as_tensor(labelled),
    }
    loss = strategy._loss(job, student, 3)(
        torch.as_tensor(logits, dtype=torch.float32), torch.as_tensor(labels)
    )

    def log_softmax(x: np.ndarray) -> np.ndarray:
        shifted = x - x.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    ce = -log_softmax(logits)[np.arange(6), labels]
    p_t = np.exp(log_softmax(teacher / temperature))
    kl = (p_t * (np.log(p_t) - log_softmax(logits / temperature))).sum(axis=1)
    # CE on the 4 labelled rows (their mean, weighed by their share), KL on all 6
    expected = (1 - weight) * ce[:4].mean() * 4 / 6 + weight * temperature**2 * kl.mean()
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_feature_distillation_trains_a_projection_that_is_not_kept() -> None:
    job = tiny_job(epochs=2)
    keys = set(job.model.state_dict())
    teacher = copy.deepcopy(job.model)
    before = copy.deepcopy(job.model.state_dict())
    outcome = Distill(teacher=teacher, weight=0.0, feature_weight=1.0).run(job)
    assert set(outcome.model.state_dict()) == keys
    changed = [k for k, v in outcome.model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("backbone.") for k in changed)
    assert outcome.details["feature_weight"] == 1.0


def test_the_control_is_the_student_without_its_teacher() -> None:
    strategy = lp.create_strategy("distill", teacher="runs/teacher/model", weight=0.6)
    control = strategy.control()
    assert control == {**strategy.config(), "weight": 0.0, "feature_weight": 0.0}
    assert lp.create_strategy("distill", **control).control() is None


# -- refused before training -------------------------------------------------------------------


def test_a_teacher_with_other_labels_is_refused_before_training(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    three = tmp_path / "three.txt"
    lines = corpus["data"].read_text().splitlines()
    three.write_text("\n".join(f"{line[:-1]}{i % 3}" for i, line in enumerate(lines)) + "\n")
    with pytest.raises(ConfigError, match="one label space"):
        lp.transfer(
            domain="text",
            data=str(three),
            backbone="hf-text",
            pretrained=str(corpus["student"]),
            strategy="distill",
            strategy_params={"teacher": str(corpus["teacher"].artifact)},
            train=TRAIN,
            output_dir=str(tmp_path / "out"),
        )
    assert not (tmp_path / "out").exists()


def test_a_teacher_of_another_domain_is_refused(corpus: dict[str, Any], tmp_path: Path) -> None:
    images = lp.create_domain("image").example_dataset(24, ["0", "1"])
    with pytest.raises(ConfigError, match=r"'text' model.*'image' domain"):
        lp.transfer(
            domain="image",
            data=images,
            backbone="resnet18",
            backbone_options=lp.get_backbone("resnet18").tiny_options,
            strategy="distill",
            strategy_params={"teacher": str(corpus["teacher"].artifact)},
            train=TRAIN,
            output_dir=str(tmp_path / "out"),
        )
    assert not (tmp_path / "out").exists()


def test_a_student_that_prepares_its_inputs_otherwise_is_refused(corpus: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="prepares its inputs otherwise"):
        lp.transfer(
            domain="text",
            data=str(corpus["data"]),
            backbone="hf-text",
            pretrained=str(corpus["student"]),
            backbone_options={"max_length": 16},
            strategy="distill",
            strategy_params={"teacher": str(corpus["teacher"].artifact)},
            train=TRAIN,
        )


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"weight": 1.5}, r"weight must be in \[0.0, 1.0\]"),
        ({"temperature": 0}, "temperature must be in"),
        ({"teacher": 3}, "teacher must be a Lepton model folder or a TransferModel"),
    ],
)
def test_bad_parameters_are_refused(params: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        lp.create_strategy("distill", **params)


def test_without_a_teacher_or_a_source_model_it_says_what_to_give() -> None:
    job = tiny_job()
    job.source_head = None
    with pytest.raises(ConfigError, match="Lepton model folder"):
        lp.create_strategy("distill").check_job(job)


# -- compare: the student with and without distillation beside the teacher ---------------------


def test_compare_sets_the_student_beside_its_teacher_with_size_and_speed(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    teacher = corpus["teacher"].artifact
    comparison = lp.compare(
        [{"name": "distill", "params": {"teacher": str(teacher)}, "label": "distilled"}],
        seeds=[0],
        baselines=False,
        domain="text",
        data=str(corpus["data"]),
        backbone="hf-text",
        pretrained=str(corpus["student"]),
        train={**TRAIN, "epochs": 1},
        output_dir=str(tmp_path / "cmp"),
        bootstrap=200,
    )
    names = {r.name: r for r in comparison.rows}
    assert set(names) == {"distilled", "distilled control", "teacher"}
    student, control, ref = names["distilled"], names["distilled control"], names["teacher"]
    assert ref.kind == "reference" and student.teacher == control.teacher == "teacher"
    teacher_model = lp.load(teacher).model
    assert ref.parameters == sum(p.numel() for p in teacher_model.parameters())
    assert student.parameters == control.parameters < ref.parameters
    for row in (student, control, ref):
        assert row.examples_per_second > 0 and row.model_size_mb > 0
    # the teacher row is the teacher on the test split, as it scored when it was trained
    assert ref.mean("accuracy") == pytest.approx(corpus["teacher"].metrics["test"]["accuracy"])
    assert "teacher" in student.differences and "distilled control" in student.differences
    assert "teacher" in control.differences
    markdown = comparison.to_markdown()
    assert "| teacher (reference) |" in markdown and "predict (examples/s)" in markdown
    assert not [w for w in comparison.warnings if "teacher" in w]
