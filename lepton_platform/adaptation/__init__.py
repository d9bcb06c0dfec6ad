"""Unsupervised domain adaptation strategies (most on the pooled features of any modality)
and label-free model selection.

- :class:`DANN` and :class:`CORAL` (strategies ``dann`` and ``coral``): labelled source,
  unlabelled target; combinable with AdaBN (``adabn=True``).
- :class:`MCC` (strategy ``mcc``): minimum class confusion of the head's predictions on the
  unlabelled target; any modality, single-label classification.
- :class:`MixStyle` (strategy ``mixstyle``): mixes the per-channel feature statistics of source
  and target batches inside a convolutional backbone during training.
- :class:`SHOT` and :class:`PseudoLabel` (strategies ``shot`` and ``pseudo-label``):
  *source-free*: they start from a saved source model (backbone and head) and read only the
  unlabelled target's inputs; SHOT trains the backbone under the frozen source head by
  information maximisation and centroid pseudo-labels, pseudo-label self-trains on the
  confident target predictions.
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
from lepton_platform.adaptation.mcc import MCC, mcc_loss
from lepton_platform.adaptation.mixstyle import MixStyle, mix_statistics
from lepton_platform.adaptation.pseudolabel import PseudoLabel, confident_pseudo_labels
from lepton_platform.adaptation.shot import SHOT, centroid_pseudo_labels, information_maximisation
from lepton_platform.adaptation.validators import VALIDATORS, Selection, ValidationData, select

__all__ = [
    "CORAL",
    "DANN",
    "MCC",
    "SHOT",
    "VALIDATORS",
    "DomainDiscriminator",
    "GradientReversal",
    "MixStyle",
    "PseudoLabel",
    "Selection",
    "ValidationData",
    "centroid_pseudo_labels",
    "confident_pseudo_labels",
    "coral_loss",
    "dann_lambda",
    "grad_reverse",
    "information_maximisation",
    "mcc_loss",
    "mix_statistics",
    "select",
]
