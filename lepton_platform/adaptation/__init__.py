"""Domain adaptation strategies for the pooled features of any modality.

- :class:`DANN` and :class:`CORAL` (strategies ``dann`` and ``coral``): labelled source,
  unlabelled target; combinable with AdaBN (``adabn=True``).
- :mod:`~lepton_platform.adaptation.validators`: label-free model selection
  (``source-accuracy``, ``iwv``, ``snd``) and :func:`select` over candidate strategies.

Multi-domain training, sequential transfer and the cross-domain matrix build jobs, so they live
in the application layer: :func:`lepton_platform.train_multidomain`,
:func:`lepton_platform.sequential_transfer`, :func:`lepton_platform.cross_domain_matrix`.
"""

from __future__ import annotations

from lepton_platform.adaptation.coral import CORAL, coral_loss
from lepton_platform.adaptation.dann import (
    DANN,
    DomainDiscriminator,
    GradientReversal,
    dann_lambda,
    grad_reverse,
)
from lepton_platform.adaptation.validators import VALIDATORS, Selection, ValidationData, select

__all__ = [
    "CORAL",
    "DANN",
    "VALIDATORS",
    "DomainDiscriminator",
    "GradientReversal",
    "Selection",
    "ValidationData",
    "coral_loss",
    "dann_lambda",
    "grad_reverse",
    "select",
]
