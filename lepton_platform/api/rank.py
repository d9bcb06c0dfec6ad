"""Rank candidate backbones and Lepton source models for a labelled target data set without
fine-tuning any of them: extract each candidate's frozen features once (cached on disk) and
score them with LogME, H-score and, for source models with a head, LEEP.

    >>> from lepton_platform import rank                              # doctest: +SKIP
    >>> ranking = rank(domain="image", data=[{"path": "target/"}],
    ...                candidates=["resnet18", "runs/source/model"])          # doctest: +SKIP
    >>> print(ranking.to_markdown())                                        # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lepton_platform.engine.transferability import check_labels, h_score, leep, logme
from lepton_platform.errors import ConfigError, DataError

if TYPE_CHECKING:
    import datasets

    from lepton_platform.data import DataBundle, SplitConfig
    from lepton_platform.domains import Domain

__all__ = ["Candidate", "Ranking", "rank"]

SCORES = ("logme", "leep", "hscore")


@dataclass(frozen=True)
class Candidate:
    """A backbone to score: a registered name with weights and options, or a saved Lepton
    model folder (``model``), whose head also gives LEEP."""

    name: str | None = None
    pretrained: Any = None
    options: Mapping[str, Any] = field(default_factory=dict)
    model: str | None = None
    label: str = ""

    @classmethod
    def parse(cls, item: Candidate | str | Mapping[str, Any]) -> Candidate:
        """``"resnet18"``, ``"runs/x/model"`` (a folder with ``lepton.json``), or a mapping
        with ``name``/``pretrained``/``options``/``label`` or ``model``."""
        if isinstance(item, Candidate):
            return item
        if isinstance(item, str):
            path = Path(item).expanduser()
            if path.is_dir() and (path / "lepton.json").is_file():
                return cls(model=str(path), label=item)
            if path.exists() or "/" in item:
                raise ConfigError(
                    f"candidate {item!r}: not a registered backbone name and not a Lepton model "
                    "folder (no lepton.json there)"
                )
            return cls(name=item, label=item)
        if isinstance(item, Mapping):
            unknown = set(item) - {"name", "pretrained", "options", "model", "label"}
            if unknown:
                raise ConfigError(f"candidate {dict(item)!r}: unknown keys {sorted(unknown)}")
            if ("name" in item) == ("model" in item):
                raise ConfigError(f"candidate {dict(item)!r}: give exactly one of name or model")
            label = str(item.get("label") or item.get("name") or item.get("model"))
            return cls(
                name=item.get("name"),
                pretrained=item.get("pretrained"),
                options=dict(item.get("options") or {}),
                model=None if item.get("model") is None else str(item["model"]),
                label=label,
            )
        raise ConfigError(f"candidate: expected a name, a model folder or a mapping, got {item!r}")


@dataclass
class Ranking:
    """The candidates, best first by ``by`` (LogME by default), with every score and the
    seconds each candidate cost (feature extraction included)."""

    rows: list[dict[str, Any]]
    by: str
    examples: int
    classes: int

    @property
    def order(self) -> list[str]:
        return [str(r["candidate"]) for r in self.rows]

    def to_json(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "examples": self.examples,
            "classes": self.classes,
            "rows": self.rows,
        }

    def to_markdown(self) -> str:
        lines = [
            f"Ranking of {len(self.rows)} candidates on {self.examples} labelled examples "
            f"({self.classes} classes), best first by {self.by}:",
            "",
            "| rank | candidate | kind | features | LogME | LEEP | H-score | seconds |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for i, r in enumerate(self.rows, 1):
            cells = [_fmt(r.get(k)) for k in ("logme", "leep", "hscore", "seconds")]
            lines.append(
                f"| {i} | {r['candidate']} | {r['kind']} | {r['feature_dim']} | "
                + " | ".join(cells)
                + " |"
            )
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _target(
    domain: str | Domain,
    data: DataBundle | datasets.Dataset | Sequence[Mapping[str, Any]] | Mapping[str, Any],
    split: SplitConfig | Mapping[str, Any] | None,
    on_bad_record: str,
    use: str,
) -> tuple[Domain, datasets.Dataset]:
    import datasets as hf

    from lepton_platform.api.job import resolve_data, resolve_domain
    from lepton_platform.data import DataBundle

    domain_obj = resolve_domain(domain)
    if isinstance(data, hf.Dataset):
        return domain_obj, data
    bundle = (
        data
        if isinstance(data, DataBundle)
        else resolve_data(domain_obj, data, split, on_bad_record)
    )
    if use not in ("train", "validation", "train+validation"):
        raise ConfigError(f"use: expected train, validation or train+validation, got {use!r}")
    if use == "train+validation":
        return domain_obj, hf.concatenate_datasets([bundle.train, bundle.validation])
    return domain_obj, bundle[use]


def rank(
    *,
    domain: str | Domain,
    data: DataBundle | datasets.Dataset | Sequence[Mapping[str, Any]] | Mapping[str, Any],
    candidates: Sequence[Candidate | str | Mapping[str, Any]],
    split: SplitConfig | Mapping[str, Any] | None = None,
    on_bad_record: str = "error",
    use: str = "train",
    by: str = "logme",
    batch_size: int = 64,
    max_examples: int | None = None,
    cache: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Ranking:
    """Score every candidate on the target's labelled ``use`` split (never the test split) and
    return them best first by ``by`` (``logme``, ``hscore`` or ``leep``; candidates without
    that score go last). ``max_examples`` takes a stratified-enough prefix of a shuffle (seed
    0) to bound the cost. Errors (one class, an unknown candidate) come before any extraction."""
    import numpy as np
    import torch

    from lepton_platform.api.job import build_backbone
    from lepton_platform.data import prepare
    from lepton_platform.engine.features import extract_features
    from lepton_platform.registry import get_backbone

    say = progress or (lambda message: None)
    if by not in SCORES:
        raise ConfigError(f"by: expected one of {', '.join(SCORES)}, got {by!r}")
    parsed = [Candidate.parse(c) for c in candidates]
    if not parsed:
        raise ConfigError("rank: give at least one candidate backbone or model folder")
    labels_seen = [c.label for c in parsed]
    if len(set(labels_seen)) != len(labels_seen):
        raise ConfigError(f"rank: candidates must differ; got {labels_seen}")
    for c in parsed:
        if c.name is not None:
            get_backbone(c.name)  # an unknown name fails here, naming the known ones
    domain_obj, ds = _target(domain, data, split, on_bad_record, use)
    if "label" not in ds.column_names:
        raise DataError("ranking needs labelled target data (no 'label' column)")
    if max_examples is not None and len(ds) > max_examples:
        ds = ds.shuffle(seed=0).select(range(max_examples))
    labels = check_labels(np.asarray(ds["label"]))
    classes = len(np.unique(labels))
    rows: list[dict[str, Any]] = []
    for c in parsed:
        started = time.perf_counter()
        say(f"scoring {c.label}")
        head = None
        if c.model is not None:
            from lepton_platform.api.predictor import load

            predictor = load(c.model)
            source_domain = predictor.manifest["domain"]["name"]
            if source_domain != domain_obj.name:
                raise ConfigError(
                    f"candidate {c.label!r}: a {source_domain!r} model cannot read "
                    f"{domain_obj.name!r} data"
                )
            backbone = predictor.model.backbone
            head = predictor.model.head
            kind = "model"
        else:
            assert c.name is not None
            torch.manual_seed(0)
            backbone, _ = build_backbone(c.name, c.pretrained, c.options)
            kind = "backbone"
        preprocessor = backbone.preprocessor()
        prepared = prepare(ds, preprocessor, desc=f"preprocess ({c.label})")
        features, _ = extract_features(
            backbone, prepared, preprocessor, batch_size=batch_size, cache=cache, progress=False
        )
        row: dict[str, Any] = {
            "candidate": c.label,
            "kind": kind,
            "feature_dim": int(features.shape[1]),
            "logme": logme(features, labels),
            "hscore": h_score(features, labels),
            "leep": None,
        }
        if head is not None:
            with torch.inference_mode():
                logits = head(torch.as_tensor(features, dtype=torch.float32))
                probs = torch.softmax(logits.float(), dim=1).numpy()
            row["leep"] = leep(probs, labels)
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
    rows.sort(key=lambda r: (r[by] is None, -(r[by] or 0.0)))
    return Ranking(rows=rows, by=by, examples=len(labels), classes=classes)
