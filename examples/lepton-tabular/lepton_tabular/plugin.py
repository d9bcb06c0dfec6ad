"""The entry point of lepton-tabular: the hooks Lepton calls.

This module stays light (no torch, no datasets): ``lepton plugins`` imports it to list what the
plugin provides. The factories import the heavy modules only when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lepton_platform import BackboneSpec, DomainSpec, MetricSpec, TaskSpec, hookimpl


def _make_domain(**options: Any) -> Any:
    from lepton_tabular.domain import TabularDomain

    return TabularDomain(**options)


def _make_mlp(pretrained: str | None = None, **options: Any) -> Any:
    from lepton_tabular.backbone import MLPBackbone

    return MLPBackbone.build(pretrained=pretrained, **options)


@hookimpl
def lepton_domains() -> list[DomainSpec]:
    """The ``tabular`` domain."""
    return [
        DomainSpec(
            name="tabular",
            modality="tabular",
            factory=_make_domain,
            options={
                "label_column": "the label column of every source (default: label)",
                "group_column": "a group column of every source (patient, site, ...)",
                "example_features": "width of the vectors of example_dataset()",
            },
            description="Numeric feature vectors read from CSV files with a label column",
        )
    ]


@hookimpl
def lepton_backbones() -> list[BackboneSpec]:
    """The ``mlp`` backbone."""
    return [
        BackboneSpec(
            name="mlp",
            domain="tabular",
            family="mlp",
            factory=_make_mlp,
            options={
                "num_features": "width of the input vectors",
                "hidden": "widths of the hidden layers (the last is feature_dim)",
                "activation": "relu, gelu or tanh",
                "dropout": "dropout after each hidden layer",
                "feature_mean": "per-feature mean of the standardisation (default: none)",
                "feature_std": "per-feature standard deviation of the standardisation",
            },
            description="Multi-layer perceptron on standardised feature vectors",
            tiny_options={"num_features": 4, "hidden": [8, 6]},
            metadata={"pretrained": False},
        )
    ]


def _make_ordinal(label_names: Any, **options: Any) -> Any:
    from lepton_tabular.ordinal import OrdinalTask

    return OrdinalTask(label_names, **options)


def _load_class_mae() -> Any:
    from lepton_platform.metrics import load_path

    return load_path(Path(__file__).parent / "metrics" / "class_mae" / "class_mae.py")


@hookimpl
def lepton_tasks() -> list[TaskSpec]:
    """The ``ordinal`` task (ordered classes)."""
    return [
        TaskSpec(
            name="ordinal",
            factory=_make_ordinal,
            options={"distance_weight": "weight of the expected class distance in the loss"},
            description="Ordered classes: cross-entropy plus the expected class distance",
        )
    ]


@hookimpl
def lepton_metrics() -> list[MetricSpec]:
    """``class-mae``: lower is better; its result key is ``class_mae``."""
    return [
        MetricSpec(
            name="class-mae",
            factory=_load_class_mae,
            description="Mean absolute distance between predicted and true class indices",
            higher_is_better=False,
            headline="class_mae",
            multi_label=False,
        )
    ]
