"""Domain adaptation, multi-domain training and the cross-domain matrix, for the pooled
features of any modality.

- :class:`DANN` and :class:`CORAL` (strategies ``dann`` and ``coral``): labelled source,
  unlabelled target; combinable with AdaBN (``adabn=True``).
- :mod:`~lepton_platform.adaptation.validators`: label-free model selection
  (``source-accuracy``, ``iwv``, ``snd``) and :func:`select` over candidate strategies.
- :func:`train_multidomain`: one backbone for several labelled domains (one head when they
  share a label space, a head per domain when they do not), domain-balanced sampling.
- :func:`sequential_transfer`: A then B, with what was forgotten on A measured.
- :func:`cross_domain_matrix`: train on each domain (and leave-one-domain-out), test on every
  domain; saved as JSON and a heat map.
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
from lepton_platform.adaptation.matrix import CrossDomainMatrix, cross_domain_matrix
from lepton_platform.adaptation.multidomain import (
    MultiDomainResult,
    SequentialResult,
    sequential_transfer,
    train_multidomain,
)
from lepton_platform.adaptation.validators import VALIDATORS, Selection, ValidationData, select

__all__ = [
    "CORAL",
    "DANN",
    "VALIDATORS",
    "CrossDomainMatrix",
    "DomainDiscriminator",
    "GradientReversal",
    "MultiDomainResult",
    "Selection",
    "SequentialResult",
    "ValidationData",
    "coral_loss",
    "cross_domain_matrix",
    "dann_lambda",
    "grad_reverse",
    "select",
    "sequential_transfer",
    "train_multidomain",
]
