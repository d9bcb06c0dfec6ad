"""One model for several labelled domains, and sequential transfer with forgetting measured.

:func:`train_multidomain` trains one shared backbone on every domain at once, through the
fine-tune engine: one head when the domains share a label space, a head per domain when they
do not (the heads sit side by side in one output layer; each example's logits outside its
domain's block are masked, which is exactly a separate softmax per domain). Each domain's
training rows are resampled to the size of the largest one (seeded), so every batch draws the
domains in equal expectation. Metrics are reported per domain and overall.

:func:`sequential_transfer` trains on A, then on B, and measures A's test accuracy before and
after training on B: what was forgotten.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from lepton_platform.errors import ConfigError, DataError
from lepton_platform.models import Backbone, Preprocessor, TransferModel

if TYPE_CHECKING:
    import datasets

    from lepton_platform.data import DataBundle
    from lepton_platform.settings import TrainConfig
    from lepton_platform.tasks import Task

__all__ = [
    "DomainTaggedPreprocessor",
    "MultiDomainResult",
    "PerDomainHeads",
    "SequentialResult",
    "sequential_transfer",
    "train_multidomain",
]

DOMAIN_INDEX = "domain_index"
_MASKED = -1e4


class DomainTaggedPreprocessor(Preprocessor):
    """The backbone's preprocessor plus a ``domain_index`` tensor in each batch (which head an
    example belongs to); the model takes it off before the backbone sees the batch."""

    def __init__(self, inner: Preprocessor) -> None:
        self.inner = inner
        self.input_columns = inner.input_columns
        self.output_columns = (*inner.output_columns, DOMAIN_INDEX)

    def transform(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return self.inner.transform(batch)

    def augment(self, example: dict[str, Any]) -> dict[str, Any]:
        index = example.pop(DOMAIN_INDEX)
        out = dict(self.inner.augment(example))
        out[DOMAIN_INDEX] = index
        return out

    def collate(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = dict(
            self.inner.collate(
                [{k: v for k, v in e.items() if k != DOMAIN_INDEX} for e in examples]
            )
        )
        batch[DOMAIN_INDEX] = torch.tensor([int(e[DOMAIN_INDEX]) for e in examples])
        return batch

    def config(self) -> dict[str, Any]:
        return {"inner": self.inner.config(), "domain_tagged": True}


class PerDomainHeads(nn.Module):
    """One linear head per domain, outputs side by side; the logits of other domains' labels
    are masked for each example."""

    def __init__(self, feature_dim: int, sizes: Sequence[int]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(feature_dim, n) for n in sizes)
        offsets = np.cumsum([0, *sizes])
        self.blocks = [(int(a), int(b)) for a, b in itertools.pairwise(offsets)]

    def forward(self, features: torch.Tensor, domain_index: torch.Tensor) -> torch.Tensor:
        logits = torch.cat([head(features) for head in self.heads], dim=1)
        mask = torch.full_like(logits, _MASKED)
        for d, (start, end) in enumerate(self.blocks):
            rows = domain_index == d
            mask[rows, start:end] = 0.0
        return logits + mask


class MultiHeadModel(TransferModel):
    """A shared backbone with :class:`PerDomainHeads`; batches carry ``domain_index``."""

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        domain_index = inputs.pop(DOMAIN_INDEX)
        out: torch.Tensor = self.head(self.backbone(**inputs), domain_index)
        return out


@dataclass
class MultiDomainResult:
    """The trained model, whether the heads are ``shared`` or ``per-domain``, metrics per
    domain and ``overall`` (pooled over every test row, and the mean over domains)."""

    model: TransferModel
    heads: str
    domains: list[str]
    label_names: dict[str, list[str]]
    metrics: dict[str, dict[str, Any]]
    history: list[dict[str, Any]]
    sampling: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "heads": self.heads,
            "domains": self.domains,
            "label_names": self.label_names,
            "metrics": self.metrics,
            "history": self.history,
            "sampling": self.sampling,
        }


def _bundles(domains: Mapping[str, DataBundle]) -> dict[str, DataBundle]:
    if len(domains) < 2:
        raise ConfigError(
            f"multi-domain training needs at least 2 domains, got {len(domains)} "
            f"({list(domains)}); for one domain use lepton_platform.transfer()"
        )
    for name, bundle in domains.items():
        for split in ("train", "test"):
            if len(bundle[split]) == 0:
                raise DataError(f"domain {name!r}: the {split} split is empty")
    return dict(domains)


def _make_backbone(backbone: Callable[[], Backbone] | Backbone) -> Backbone:
    return backbone if isinstance(backbone, Backbone) else backbone()


def _tag(ds: datasets.Dataset, columns: Sequence[str], offset: int, index: int) -> datasets.Dataset:
    import datasets as hf

    keep = [c for c in ds.column_names if c in (*columns, "label")]
    out = ds.select_columns(keep)
    out = out.cast_column("label", hf.Value("int64"))
    out = out.map(
        lambda b: {
            "label": [v + offset for v in b["label"]],
            DOMAIN_INDEX: [index] * len(b["label"]),
        },
        batched=True,
        desc=f"tag domain {index}",
    )
    return out


def _balanced(ds: datasets.Dataset, size: int, seed: int) -> datasets.Dataset:
    if len(ds) >= size:
        return ds
    rng = np.random.default_rng(seed)
    extra = rng.choice(len(ds), size - len(ds), replace=True)
    return ds.select([*range(len(ds)), *extra.tolist()])


def train_multidomain(
    domains: Mapping[str, DataBundle],
    backbone: Callable[[], Backbone] | Backbone,
    *,
    train: TrainConfig | Mapping[str, Any] | None = None,
    shared_labels: bool | None = None,
    balance: bool = True,
    metrics: Sequence[str] | None = None,
    output_dir: str | None = None,
) -> MultiDomainResult:
    """Train one backbone on several labelled domains (``{name: DataBundle}``).

    ``shared_labels=None`` shares one head when every domain has the same label names and
    gives each domain its own head otherwise (``True`` insists on sharing, ``False`` forces
    heads per domain). ``balance`` resamples each domain's training rows to the largest
    domain's count. ``backbone`` is a Backbone or a callable building one.

        >>> result = train_multidomain({"A": bundle_a, "B": bundle_b}, lambda: make_backbone())
        ... # doctest: +SKIP
        >>> result.metrics["A"]["accuracy"], result.metrics["overall"]["accuracy"]
        ... # doctest: +SKIP
    """
    import datasets as hf

    from lepton_platform.api.job import resolve_monitor, resolve_train
    from lepton_platform.data import prepare
    from lepton_platform.engine.finetune import Trainer
    from lepton_platform.tasks import ClassificationTask

    bundles = _bundles(domains)
    config = resolve_train(train)
    names = list(bundles)
    spaces = {n: list(b.label_names) for n, b in bundles.items()}
    same = all(spaces[n] == spaces[names[0]] for n in names)
    if shared_labels is True and not same:
        raise ConfigError(
            f"shared_labels=True, but the domains' label names differ: {spaces}; use "
            "shared_labels=None (a head per domain) or relabel the data"
        )
    shared = same if shared_labels is None else bool(shared_labels)
    torch.manual_seed(config.seed)
    bb = _make_backbone(backbone)
    inner = bb.preprocessor()
    prepared = {
        n: {
            s: prepare(b[s], inner, desc=f"preprocess ({n}, {s})")
            for s in ("train", "validation", "test")
            if b[s] is not None and len(b[s])
        }
        for n, b in bundles.items()
    }
    task: Task
    if shared:
        task = ClassificationTask(spaces[names[0]])
        offsets = dict.fromkeys(names, 0)
        preprocessor: Preprocessor = DomainTaggedPreprocessor(inner)
        model: TransferModel = MultiHeadModel(bb, _SharedHead(task.build_head(bb.feature_dim)))
    else:
        task = ClassificationTask([f"{n}:{label}" for n in names for label in spaces[n]])
        sizes = [len(spaces[n]) for n in names]
        offsets = dict(zip(names, np.cumsum([0, *sizes[:-1]]).tolist(), strict=True))
        preprocessor = DomainTaggedPreprocessor(inner)
        model = MultiHeadModel(bb, PerDomainHeads(bb.feature_dim, sizes))
    columns = list(inner.output_columns)
    tagged = {
        n: {s: _tag(ds, columns, int(offsets[n]), i) for s, ds in prepared[n].items()}
        for i, n in enumerate(names)
    }
    largest = max(len(tagged[n]["train"]) for n in names)
    train_parts = [
        _balanced(tagged[n]["train"], largest, config.seed + i) if balance else tagged[n]["train"]
        for i, n in enumerate(names)
    ]
    train_set = hf.concatenate_datasets(train_parts)
    validation_parts = [tagged[n]["validation"] for n in names if "validation" in tagged[n]]
    validation = hf.concatenate_datasets(validation_parts) if validation_parts else None
    trainer = Trainer(model, task, config, output_dir=output_dir, monitor=resolve_monitor(config))
    fit = trainer.fit(train_set, validation, preprocessor)
    results: dict[str, dict[str, Any]] = {}
    pooled_correct, pooled_total = 0, 0
    for n in names:
        values = _domain_metrics(
            trainer, tagged[n]["test"], preprocessor, spaces[n], int(offsets[n]), metrics
        )
        results[n] = values
        pooled_correct += round(values["accuracy"] * values["examples"])
        pooled_total += int(values["examples"])
    results["overall"] = {
        "accuracy": pooled_correct / pooled_total,
        "mean_domain_accuracy": float(np.mean([results[n]["accuracy"] for n in names])),
        "examples": pooled_total,
    }
    return MultiDomainResult(
        model=model,
        heads="shared" if shared else "per-domain",
        domains=names,
        label_names=spaces,
        metrics=results,
        history=[dict(h) for h in fit.history],
        sampling={
            "balanced": balance,
            "rows_per_domain": {n: len(p) for n, p in zip(names, train_parts, strict=True)},
            "original_rows": {n: len(tagged[n]["train"]) for n in names},
        },
    )


class _SharedHead(nn.Module):
    """One head for every domain (the domain index is ignored)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor, domain_index: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(features)
        return out


def _domain_metrics(
    trainer: Any,
    test: datasets.Dataset,
    preprocessor: Preprocessor,
    label_names: list[str],
    offset: int,
    metrics: Sequence[str] | None,
) -> dict[str, Any]:
    from lepton_platform.api.job import resolve_metrics
    from lepton_platform.engine.evaluate import compute_metrics
    from lepton_platform.tasks import ClassificationTask

    logits, labels = trainer.predict(test, preprocessor)
    assert labels is not None
    block = logits[:, offset : offset + len(label_names)]
    local = ClassificationTask(label_names)
    resolved = resolve_metrics(metrics or ["accuracy"], local)
    values = compute_metrics(local, block, labels - offset, resolved)
    values.pop("per_class", None)
    values.setdefault("accuracy", float((block.argmax(1) == labels - offset).mean()))
    values["examples"] = len(labels)
    return values


@dataclass
class SequentialResult:
    """Accuracy on A after training on A, on A after then training on B (with A's head), and
    on B; ``forgotten`` is the drop on A."""

    first: str
    second: str
    first_before: float
    first_after: float
    second_after: float
    forgotten: float
    shared_head: bool
    model: TransferModel = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "second": self.second,
            "accuracy_first_before": self.first_before,
            "accuracy_first_after": self.first_after,
            "accuracy_second_after": self.second_after,
            "forgotten": self.forgotten,
            "shared_head": self.shared_head,
        }


def _accuracy(
    model: TransferModel, task: Task, config: TrainConfig, ds: Any, pre: Preprocessor
) -> float:
    from lepton_platform.engine.predict import predict

    logits, labels = predict(model, ds, pre, batch_size=config.eval_batch_size or config.batch_size)
    assert labels is not None
    return float((logits.argmax(1) == labels).mean())


def sequential_transfer(
    first: tuple[str, DataBundle],
    second: tuple[str, DataBundle],
    backbone: Callable[[], Backbone] | Backbone,
    *,
    train: TrainConfig | Mapping[str, Any] | None = None,
    train_second: TrainConfig | Mapping[str, Any] | None = None,
) -> SequentialResult:
    """Fine-tune on domain A, then on domain B (same backbone), and measure A's test accuracy
    before and after B. When the label spaces are equal the head carries over; otherwise B
    gets a new head and A is measured with A's own head on the changed backbone."""
    from lepton_platform.api.job import build_model, resolve_monitor, resolve_train
    from lepton_platform.data import prepare
    from lepton_platform.engine.finetune import Trainer
    from lepton_platform.tasks import ClassificationTask

    (name_a, a), (name_b, b) = first, second
    if name_a == name_b:
        raise ConfigError(f"sequential_transfer: both domains are called {name_a!r}")
    config_a = resolve_train(train)
    config_b = resolve_train(train_second) if train_second is not None else config_a
    torch.manual_seed(config_a.seed)
    bb = _make_backbone(backbone)
    pre = bb.preprocessor()
    data = {
        (n, s): prepare(bundle[s], pre, desc=f"preprocess ({n}, {s})")
        for n, bundle in ((name_a, a), (name_b, b))
        for s in ("train", "validation", "test")
    }
    task_a = ClassificationTask(a.label_names)
    model_a = build_model(bb, task_a)
    Trainer(model_a, task_a, config_a, monitor=resolve_monitor(config_a)).fit(
        data[name_a, "train"], data[name_a, "validation"], pre
    )
    before = _accuracy(model_a, task_a, config_a, data[name_a, "test"], pre)
    shared = list(a.label_names) == list(b.label_names)
    if shared:
        task_b, model_b = task_a, build_model(bb, task_a)
        model_b.head.load_state_dict(model_a.head.state_dict())
    else:
        task_b = ClassificationTask(b.label_names)
        model_b = build_model(bb, task_b)
    Trainer(model_b, task_b, config_b, monitor=resolve_monitor(config_b)).fit(
        data[name_b, "train"], data[name_b, "validation"], pre
    )
    if shared:
        model_a.head.load_state_dict(model_b.head.state_dict())
    after = _accuracy(model_a, task_a, config_a, data[name_a, "test"], pre)
    second_acc = _accuracy(model_b, task_b, config_b, data[name_b, "test"], pre)
    return SequentialResult(
        first=name_a,
        second=name_b,
        first_before=before,
        first_after=after,
        second_after=second_acc,
        forgotten=before - after,
        shared_head=shared,
        model=model_b,
    )
