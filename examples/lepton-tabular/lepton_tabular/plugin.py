"""The entry point of lepton-tabular: the hooks Lepton calls.

This module stays light (no torch, no datasets): ``lepton plugins`` imports it to list what the
plugin provides. The factories import the heavy modules only when called.
"""

from __future__ import annotations

from typing import Any

from lepton_platform import BackboneSpec, DomainSpec, hookimpl


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
            description="Multi-layer perceptron on standardised feature vectors",
            tiny_options={"num_features": 4, "hidden": [8, 6]},
            metadata={"pretrained": False},
        )
    ]
