"""DANN (Ganin et al. 2016): domain-adversarial training on the pooled features.

A domain discriminator (a small MLP) learns to tell source features from target features; a
gradient reversal layer between the backbone and the discriminator turns the backbone's
gradient around, so the backbone learns features the discriminator cannot separate while the
head keeps them useful for the source labels. The reversal strength follows the usual
schedule ``lambda_p = 2 / (1 + exp(-10 p)) - 1`` over the training progress ``p`` in [0, 1].
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from lepton_platform.adaptation._common import AlignmentStrategy
from lepton_platform.errors import ConfigError

__all__ = ["DANN", "DomainDiscriminator", "GradientReversal", "dann_lambda", "grad_reverse"]


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; the gradient is multiplied by ``-scale`` on the way back."""
    out: torch.Tensor = _Reverse.apply(x, float(scale))
    return out


class GradientReversal(nn.Module):
    """The gradient reversal layer as a module (``scale`` may be changed between steps)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.scale)


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """``2 / (1 + exp(-gamma p)) - 1``: 0 at the start, near 1 at the end."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


class DomainDiscriminator(nn.Module):
    """An MLP from pooled features to one logit: target (1) or source (0)."""

    def __init__(self, feature_dim: int, hidden: int = 64, layers: int = 2) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = feature_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        blocks.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(features).squeeze(-1)
        return out


class DANN(AlignmentStrategy):
    """Domain-adversarial fine-tuning with labelled source and unlabelled target batches
    (``TransferJob.unlabelled_target``). ``weight`` multiplies the discriminator's loss and
    ``lambda_p`` the reversed gradient; ``hidden``/``layers`` size the discriminator;
    ``adabn`` re-estimates batch-norm statistics on the target afterwards; ``validator``
    (``source-accuracy``, ``iwv`` or ``snd``) chooses the epoch without target labels."""

    name = "dann"

    def __init__(
        self,
        weight: float = 1.0,
        hidden: int = 64,
        layers: int = 2,
        adabn: bool = False,
        validator: str = "source-accuracy",
    ) -> None:
        super().__init__(weight, adabn, validator)
        if int(hidden) < 1 or int(layers) < 1:
            raise ConfigError(
                f"strategy 'dann': hidden and layers must be >= 1, got {hidden}, {layers}"
            )
        self.hidden = int(hidden)
        self.layers = int(layers)
        self.last_lambda = 0.0

    def config(self) -> dict[str, Any]:
        return {**super().config(), "hidden": self.hidden, "layers": self.layers}

    def build_adapter(self, feature_dim: int) -> nn.Module:
        return DomainDiscriminator(feature_dim, self.hidden, self.layers)

    def alignment_loss(
        self, adapter: nn.Module, source: torch.Tensor, target: torch.Tensor, progress: float
    ) -> torch.Tensor:
        scale = dann_lambda(progress)
        self.last_lambda = scale
        features = torch.cat([source, target])
        logits = adapter(grad_reverse(features, scale)).float()
        domains = torch.cat(
            [
                torch.zeros(len(source), device=logits.device),
                torch.ones(len(target), device=logits.device),
            ]
        )
        return self.weight * F.binary_cross_entropy_with_logits(logits, domains)

    def extra_details(self) -> dict[str, Any]:
        return {"final_lambda": self.last_lambda}
