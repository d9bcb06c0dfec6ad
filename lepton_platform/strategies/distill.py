"""``distill``: knowledge distillation (Hinton et al. 2015) from a teacher model into the job's
model, the student (any backbone of the same domain, usually smaller).

The student trains on

    (1 - weight) * CE(labels) + weight * T^2 * KL(teacher_T || student_T)

on the labelled target data, plus the KL term alone on the unlabelled target data when the job
has some; with ``feature_weight`` also a feature term, the mean squared distance between the
teacher's pooled features and a learned linear projection of the student's. The teacher's
outputs (logits, and pooled features when they are used) are computed once, through the one
prediction function, and cached by :mod:`lepton_platform.engine.features` (keyed by the
teacher's weights, the preprocessing and the data, checksummed), not at every epoch.

The teacher is a Lepton model folder (``teacher: runs/teacher/model``, loaded through the
application layer's service that the built-in factory hands the strategy), a
:class:`~lepton_platform.models.TransferModel` given in Python, or, when it is left out, the
job's own source model: the Lepton model folder its backbone's weights came from, head included
(self-distillation). Before any training the teacher must predict the job's labels (same names,
same order), come from the job's domain, and read the inputs as the student's preprocessing
prepares them: the cached teacher outputs are computed on the student's prepared data, so a
text student needs the teacher's tokenizer (an image or speech student the same transforms).

Its control (``compare`` adds it) is the same student trained the same way without the teacher
(``weight`` and ``feature_weight`` 0): what distillation adds, credited to it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lepton_platform.engine.features import extract_features
from lepton_platform.errors import ConfigError
from lepton_platform.models import Backbone, LayerGroup, Preprocessor, TransferModel
from lepton_platform.strategies.base import (
    Strategy,
    TransferJob,
    TransferOutcome,
    check_range,
    layerwise_param_groups,
    set_requires_grad,
)

if TYPE_CHECKING:
    import datasets

__all__ = ["Distill", "DistillServices", "Teacher"]

TEACHER_LOGITS = "teacher_logits"
TEACHER_FEATURES = "teacher_features"
HAS_LABEL = "has_label"


@dataclass
class Teacher:
    """A teacher model and what is checked against the student: its label names, its domain
    (the registered name; ``None`` when unknown) and where it came from."""

    model: TransferModel
    label_names: list[str]
    source: str
    domain: str | None = None

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


@dataclass(frozen=True)
class DistillServices:
    """What the strategy cannot do from its own layer, handed to it by the composition root
    (the built-in factory): load a Lepton model folder as a :class:`Teacher`, and say which
    registered domain a backbone belongs to."""

    load_teacher: Callable[[str], Teacher]
    backbone_domain: Callable[[Backbone], str | None] = field(default=lambda backbone: None)


class _TeacherOutputs(Backbone):
    """The teacher as a "backbone" whose features are its logits (and its pooled features):
    what the feature cache stores for the teacher."""

    def __init__(self, teacher: TransferModel, num_labels: int, with_features: bool) -> None:
        super().__init__()
        self.teacher = teacher
        self.num_labels = num_labels
        self.with_features = with_features
        # part of the weights' fingerprint: the two layouts of outputs never share a cache file
        self.register_buffer("layout", torch.tensor([1 if with_features else 0]))
        extra = teacher.backbone.feature_dim if with_features else 0
        self.feature_dim = num_labels + extra

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        features = self.teacher.backbone(**inputs)
        logits = self.teacher.head(features)
        if not self.with_features:
            return logits  # type: ignore[no-any-return]
        return torch.cat([logits.float(), features.float()], dim=-1)

    def layer_groups(self) -> list[LayerGroup]:
        return []

    def preprocessor(self) -> Preprocessor:
        return self.teacher.backbone.preprocessor()

    def config(self) -> dict[str, Any]:
        return {}

    def example_batch(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        return self.teacher.backbone.example_batch(batch_size)


class _WithTeacher(Preprocessor):
    """The student's prepared columns plus the teacher's cached outputs, batched beside the
    student's inputs (the student's own augmentation still applies to its inputs)."""

    def __init__(self, inner: Preprocessor, extra: Sequence[str]) -> None:
        self.inner = inner
        self.extra = tuple(extra)
        self.input_columns = tuple(inner.output_columns)
        self.output_columns = (*inner.output_columns, *self.extra)
        self.length_column = inner.length_column

    def transform(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return batch  # the data come prepared

    def augment(self, example: dict[str, Any]) -> dict[str, Any]:
        kept = {k: example.pop(k) for k in self.extra if k in example}
        out = dict(self.inner.augment(example))
        out.update(kept)
        return out

    def collate(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = dict(
            self.inner.collate(
                [{k: v for k, v in e.items() if k not in self.extra} for e in examples]
            )
        )
        for key in self.extra:
            if examples and all(key in e for e in examples):
                batch[key] = torch.as_tensor(
                    np.stack([np.asarray(e[key], dtype=np.float32) for e in examples])
                )
        return batch

    def config(self) -> dict[str, Any]:
        return {**self.inner.config(), "with_teacher": list(self.extra)}


class _Student(Backbone):
    """The student's backbone during distillation: it takes the teacher's cached outputs from
    the batch (kept for the loss of that batch) and projects its features for the feature
    term. Shares its modules with the student, so training it trains the student."""

    def __init__(self, student: Backbone, projection: nn.Module | None) -> None:
        super().__init__()
        self.student = student
        self.projection = projection
        self.feature_dim = student.feature_dim
        self.batch: dict[str, torch.Tensor] = {}

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        kept = {
            k: inputs.pop(k) for k in (TEACHER_LOGITS, TEACHER_FEATURES, HAS_LABEL) if k in inputs
        }
        features: torch.Tensor = self.student(**inputs)
        if self.projection is not None:
            kept["projected"] = self.projection(features)
        self.batch = kept
        return features

    def layer_groups(self) -> list[LayerGroup]:
        groups = list(self.student.layer_groups())
        if self.projection is not None:
            groups.append(LayerGroup("projection", (self.projection,)))
        return groups

    def preprocessor(self) -> Preprocessor:
        return self.student.preprocessor()

    def config(self) -> dict[str, Any]:
        return self.student.config()

    def example_batch(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        return self.student.example_batch(batch_size)


def _device() -> torch.device:
    """Where the teacher runs to fill the cache: this process's device."""
    from lepton_platform.engine.distributed import processes

    procs = processes()
    if procs.num_processes > 1:
        return torch.device(procs.device)
    if torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in (
        "1",
        "true",
        "yes",
    ):
        return torch.device("cuda")
    return torch.device("cpu")


class Distill(Strategy):
    """Knowledge distillation: a student trained on the labels and on a teacher's softened
    predictions (Hinton et al. 2015), and optionally on its pooled features through a learned
    projection (FitNets, Romero et al. 2015). The student keeps much of the teacher's accuracy
    at a fraction of its size and prediction time; unlabelled target data add what the teacher
    knows about them."""

    name = "distill"

    def __init__(
        self,
        teacher: str | os.PathLike[str] | TransferModel | None = None,
        weight: float = 0.5,
        temperature: float = 2.0,
        feature_weight: float = 0.0,
        lr: float | None = None,
        layer_decay: float = 1.0,
        services: DistillServices | None = None,
    ) -> None:
        if teacher is not None and not isinstance(teacher, str | os.PathLike | TransferModel):
            raise ConfigError(
                "strategy 'distill': teacher must be a Lepton model folder or a TransferModel, "
                f"got {type(teacher).__name__}"
            )
        self.teacher = teacher
        self.weight = check_range(self.name, "weight", weight, 0.0, 1.0)
        self.temperature = check_range(self.name, "temperature", temperature, 1e-3, 1e3)
        self.feature_weight = check_range(self.name, "feature_weight", feature_weight, 0.0, 1e6)
        self.lr = None if lr is None else check_range(self.name, "lr", lr, 1e-9, 10.0)
        self.layer_decay = check_range(self.name, "layer_decay", layer_decay, 1e-6, 1.0)
        self.services = services
        #: Without a teacher the job's source model teaches: the builder reads its head.
        self.needs_source_head = teacher is None
        self._loaded: Teacher | None = None

    @property
    def teacher_folder(self) -> str | None:
        """The teacher's model folder, when it is one."""
        return None if not isinstance(self.teacher, str | os.PathLike) else str(self.teacher)

    @property
    def distils(self) -> bool:
        """Whether the teacher takes part (the control trains without it)."""
        return self.weight > 0 or self.feature_weight > 0

    def config(self) -> dict[str, Any]:
        teacher: Any = self.teacher_folder
        if isinstance(self.teacher, TransferModel):
            teacher = f"<{type(self.teacher.backbone).__name__} TransferModel>"
        return {
            "teacher": teacher,
            "weight": self.weight,
            "temperature": self.temperature,
            "feature_weight": self.feature_weight,
            "lr": self.lr,
            "layer_decay": self.layer_decay,
        }

    def control(self) -> dict[str, Any] | None:
        """The same student, trained the same way, without the teacher."""
        if isinstance(self.teacher, TransferModel) or not self.distils:
            return None
        return {**self.config(), "weight": 0.0, "feature_weight": 0.0}

    # -- the teacher ------------------------------------------------------------------------

    def resolve_teacher(self, job: TransferJob) -> Teacher:
        """The teacher of ``job`` (loaded once)."""
        if self._loaded is not None:
            return self._loaded
        if isinstance(self.teacher, TransferModel):
            loaded = Teacher(
                model=self.teacher,
                label_names=list(job.task.label_names),
                source=f"a {type(self.teacher.backbone).__name__} TransferModel",
            )
        elif self.teacher is None:
            loaded = self._source_teacher(job)
        else:
            if self.services is None:
                raise ConfigError(
                    "strategy 'distill': a teacher folder is loaded through the registry; build "
                    "the strategy with lp.create_strategy('distill', teacher=...) (or give "
                    "services=DistillServices(...), or a TransferModel as teacher)"
                )
            loaded = self.services.load_teacher(str(self.teacher))
        loaded.model.eval()
        set_requires_grad(loaded.model.parameters(), False)
        self._loaded = loaded
        return loaded

    def _source_teacher(self, job: TransferJob) -> Teacher:
        if job.source_head is None or job.pretrained_state is None:
            raise ConfigError(
                "strategy 'distill' without a teacher distils the job's source model, and "
                f"{job.source_head_note or 'the job has none'}: give teacher (a Lepton model "
                "folder) or a Lepton source model folder as the backbone's pretrained"
            )
        model = copy.deepcopy(job.model)
        model.backbone.load_state_dict(dict(job.pretrained_state))
        model.head.load_state_dict(dict(job.source_head))
        source = str(job.source_model) if job.source_model is not None else "the source model"
        return Teacher(model=model, label_names=list(job.task.label_names), source=source)

    def check_job(self, job: TransferJob) -> None:
        """The teacher must fit the student before anything trains: one label space, one
        domain, one preprocessing; single-label classification."""
        super().check_job(job)
        if job.task.multi_label:
            raise ConfigError(
                "strategy 'distill' matches the teacher's class distribution (softmax): it "
                "needs a single-label task, and this one is multi-label"
            )
        teacher = self.resolve_teacher(job)
        student_labels = [str(n) for n in job.task.label_names]
        if [str(n) for n in teacher.label_names] != student_labels:
            raise ConfigError(
                f"strategy 'distill': the teacher {teacher.source} predicts the labels "
                f"{list(teacher.label_names)}, the student {student_labels}; distillation needs "
                "one label space (the same names in the same order)"
            )
        student_domain = (
            self.services.backbone_domain(job.model.backbone) if self.services else None
        )
        if teacher.domain and student_domain and teacher.domain != student_domain:
            raise ConfigError(
                f"strategy 'distill': the teacher {teacher.source} is a {teacher.domain!r} "
                f"model and the student's backbone {job.model.backbone.registered_name!r} is "
                f"for the {student_domain!r} domain; teacher and student need one domain"
            )
        theirs = teacher.model.backbone.preprocessor()
        if theirs.fingerprint() != job.preprocessor.fingerprint():
            raise ConfigError(
                f"strategy 'distill': the teacher {teacher.source} prepares its inputs otherwise "
                f"than the student ({type(theirs).__name__} {theirs.config()} against "
                f"{type(job.preprocessor).__name__} {job.preprocessor.config()}); its outputs are "
                "computed on the student's prepared data, so build the student with the "
                "teacher's preprocessing (for text: its tokenizer and max_length)"
            )
        if (
            job.config.sampler == "balanced"
            and self.weight > 0
            and job.unlabelled_target is not None
        ):
            raise ConfigError(
                "strategy 'distill': train.sampler 'balanced' draws each class equally often, "
                "and the unlabelled target rows have no class; use sampler 'shuffle'"
            )

    def _outputs(
        self, job: TransferJob, teacher: Teacher, dataset: datasets.Dataset, desc: str
    ) -> np.ndarray:
        """The teacher's outputs on a prepared dataset, from the cache when it has them."""
        wrapper = _TeacherOutputs(
            teacher.model, len(teacher.label_names), with_features=self.feature_weight > 0
        )
        wrapper.to(_device())
        try:
            outputs, _ = extract_features(
                wrapper,
                dataset,
                job.preprocessor,
                batch_size=job.config.eval_batch_size or job.config.batch_size,
                progress=job.config.progress,
                desc=desc,
            )
        finally:
            wrapper.to("cpu")
        return outputs

    # -- training ---------------------------------------------------------------------------

    def run(self, job: TransferJob) -> TransferOutcome:
        model = job.model
        set_requires_grad(model.parameters(), True)
        lr = self.lr if self.lr is not None else job.config.lr
        config = job.with_config(lr=lr)
        details: dict[str, Any] = {
            "weight": self.weight,
            "temperature": self.temperature,
            "feature_weight": self.feature_weight,
        }
        if not self.distils:  # the control: the student on the labels alone
            trainer = job.trainer(
                config=config,
                param_groups=layerwise_param_groups(
                    model, lr, self.layer_decay, config.weight_decay
                ),
            )
            fit = trainer.fit(job.train, job.validation, job.preprocessor)
            details["teacher"] = None
            return TransferOutcome(model=model, history=list(fit.history), fit=fit, details=details)

        teacher = self.resolve_teacher(job)
        k = len(teacher.label_names)
        with_features = self.feature_weight > 0
        extra = [TEACHER_LOGITS, *([TEACHER_FEATURES] if with_features else []), HAS_LABEL]
        columns = [*job.preprocessor.output_columns, "label"]
        train = self._with_teacher(job, teacher, job.train, columns, labelled=True)
        rows = {"train": len(train)}
        if job.unlabelled_target is not None and self.weight > 0:
            target = self._with_teacher(
                job, teacher, job.unlabelled_target, columns, labelled=False, like=train
            )
            rows["unlabelled_target"] = len(target)
            import datasets as hf

            train = hf.concatenate_datasets([train, target])
        validation = None
        if job.validation is not None:
            validation = self._with_teacher(job, teacher, job.validation, columns, labelled=True)
            logits = np.asarray(validation[TEACHER_LOGITS], dtype=np.float32)
            labels = np.asarray(job.validation["label"])
            details["teacher_validation_accuracy"] = float((logits.argmax(-1) == labels).mean())

        projection = None
        if with_features:
            torch.manual_seed(job.config.seed)
            projection = nn.Linear(model.backbone.feature_dim, teacher.model.backbone.feature_dim)
        student = _Student(model.backbone, projection)
        wrapper = TransferModel(student, model.head)
        groups = layerwise_param_groups(model, lr, self.layer_decay, config.weight_decay)
        if projection is not None:
            groups.append({"params": list(projection.parameters()), "lr": lr, "name": "projection"})
        loss = self._loss(job, student, k)
        trainer = job.trainer(model=wrapper, config=config, param_groups=groups, loss=loss)
        fit = trainer.fit(train, validation, _WithTeacher(job.preprocessor, extra))
        details.update(
            {
                "teacher": teacher.source,
                "teacher_parameters": teacher.parameters,
                "student_parameters": sum(p.numel() for p in model.parameters()),
                "teacher_rows": rows,
            }
        )
        return TransferOutcome(model=model, history=list(fit.history), fit=fit, details=details)

    def _with_teacher(
        self,
        job: TransferJob,
        teacher: Teacher,
        dataset: datasets.Dataset,
        columns: Sequence[str],
        *,
        labelled: bool,
        like: datasets.Dataset | None = None,
    ) -> datasets.Dataset:
        """``dataset``'s student columns with the teacher's outputs beside them."""
        k = len(teacher.label_names)
        outputs = self._outputs(
            job, teacher, dataset, "teacher outputs" + ("" if labelled else " (unlabelled)")
        )
        kept = [c for c in columns if c in dataset.column_names]
        out = dataset.select_columns(kept)
        if not labelled:
            out = out.add_column("label", [0] * len(out))
        out = out.add_column(TEACHER_LOGITS, [row[:k] for row in outputs])
        if self.feature_weight > 0:
            out = out.add_column(TEACHER_FEATURES, [row[k:] for row in outputs])
        out = out.add_column(HAS_LABEL, [1.0 if labelled else 0.0] * len(out))
        if like is not None:
            out = out.cast(like.features)
        return out

    def _loss(
        self, job: TransferJob, student: _Student, num_labels: int
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        weight, temperature, feature_weight = self.weight, self.temperature, self.feature_weight
        task = job.task

        def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            batch = student.batch
            n = logits.shape[0]
            labelled = batch[HAS_LABEL] > 0.5
            total = torch.zeros((), device=logits.device, dtype=torch.float32)
            count = int(labelled.sum())
            if count and weight < 1:
                ce = task.loss(logits[labelled], labels[labelled])
                total = total + (1 - weight) * ce * (count / n)
            if weight > 0:
                teacher_log = F.log_softmax(batch[TEACHER_LOGITS].float() / temperature, dim=-1)
                student_log = F.log_softmax(logits.float() / temperature, dim=-1)
                kl = F.kl_div(student_log, teacher_log, log_target=True, reduction="none").sum(-1)
                total = total + weight * temperature**2 * kl.mean()
            if feature_weight > 0:
                gap = (batch["projected"].float() - batch[TEACHER_FEATURES].float()).pow(2)
                total = total + feature_weight * gap.mean(-1).mean()
            return total

        return loss
