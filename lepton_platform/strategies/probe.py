"""``linear-probe`` and ``lp-ft``: a head trained on frozen, cached features, and fine-tuning
that starts from that head."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from lepton_platform.engine.features import extract_features
from lepton_platform.errors import ConfigError
from lepton_platform.models import Backbone, LayerGroup, Preprocessor, TransferModel
from lepton_platform.strategies.base import (
    Strategy,
    TransferJob,
    TransferOutcome,
    check_range,
    set_requires_grad,
)
from lepton_platform.tasks import Task

SOLVERS = ("lbfgs", "adamw", "sgd")
#: Weight-penalty grid searched on the validation split by the L-BFGS head.
L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


class FeaturePreprocessor(Preprocessor):
    """Batches rows of a ``features`` column (cached pooled features)."""

    input_columns = ("features",)
    output_columns = ("features",)

    def transform(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {"features": batch["features"]}

    def collate(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return {
            "features": torch.as_tensor(
                np.stack([np.asarray(e["features"], dtype=np.float32) for e in examples])
            )
        }

    def config(self) -> dict[str, Any]:
        return {}


class FeatureBackbone(Backbone):
    """The identity on cached features: lets the fine-tune engine train a head alone."""

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.feature_dim = int(feature_dim)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return inputs["features"]

    def layer_groups(self) -> list[LayerGroup]:
        return []

    def preprocessor(self) -> Preprocessor:
        return FeaturePreprocessor()

    def config(self) -> dict[str, Any]:
        return {"feature_dim": self.feature_dim}

    def example_batch(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        return {"features": torch.randn(batch_size, self.feature_dim)}


def _fit_lbfgs(
    head: torch.nn.Module,
    task: Task,
    features: torch.Tensor,
    labels: torch.Tensor,
    l2: float,
    max_iter: int,
) -> float:
    """Full-batch L-BFGS on ``task.loss + l2 * ||W||^2``; returns the final loss."""
    params = [p for p in head.parameters() if p.requires_grad]
    weights = [p for p in params if p.ndim > 1]
    optimizer = torch.optim.LBFGS(
        params, lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe"
    )
    head.train()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = task.loss(head(features), labels)
        loss = loss + l2 * sum((w * w).sum() for w in weights)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    final = optimizer.step(closure)  # type: ignore[no-untyped-call]
    head.eval()
    return float(final.detach())


class LinearProbe(Strategy):
    """Frozen backbone; features are extracted once and cached (keyed by backbone weights,
    preprocessing and data), then only the head trains on them. ``solver="lbfgs"`` fits a
    logistic-regression head by L-BFGS with its weight penalty chosen on the validation split;
    ``adamw``/``sgd`` train it through the fine-tune engine for ``config.epochs``.

    The reference baseline of transfer learning (Kornblith et al. 2019): strong when source and
    target are close, and the cheapest strategy by far.
    """

    name = "linear-probe"

    def __init__(self, solver: str = "lbfgs", l2: float | None = None, max_iter: int = 200) -> None:
        if solver not in SOLVERS:
            raise ConfigError(
                f"strategy 'linear-probe': solver must be one of {SOLVERS}, got {solver!r}"
            )
        self.solver = solver
        self.l2 = None if l2 is None else check_range(self.name, "l2", l2, 0.0, 1e3)
        if int(max_iter) < 1:
            raise ConfigError("strategy 'linear-probe': max_iter must be >= 1")
        self.max_iter = int(max_iter)

    def config(self) -> dict[str, Any]:
        return {"solver": self.solver, "l2": self.l2, "max_iter": self.max_iter}

    def run(self, job: TransferJob) -> TransferOutcome:
        model = job.model
        set_requires_grad(model.backbone.parameters(), False)
        set_requires_grad(model.head.parameters(), True)
        batch = job.config.eval_batch_size or job.config.batch_size
        progress = job.config.progress
        x_train, y_train = extract_features(
            model.backbone,
            job.train,
            job.preprocessor,
            batch_size=batch,
            progress=progress,
            desc="features (train)",
        )
        x_val = y_val = None
        if job.validation is not None:
            x_val, y_val = extract_features(
                model.backbone,
                job.validation,
                job.preprocessor,
                batch_size=batch,
                progress=progress,
                desc="features (validation)",
            )
        if y_train is None:
            raise ConfigError("strategy 'linear-probe' needs labels in the training split")
        if self.solver == "lbfgs":
            details = self._lbfgs(job, x_train, y_train, x_val, y_val)
            return TransferOutcome(model=model, details=details)
        return self._engine(job, x_train, y_train, x_val, y_val)

    def _lbfgs(
        self,
        job: TransferJob,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_val: np.ndarray | None,
        y_val: np.ndarray | None,
    ) -> dict[str, Any]:
        torch.manual_seed(job.config.seed)
        head = job.model.head
        xt, yt = torch.as_tensor(x_train), torch.as_tensor(y_train)
        initial = {k: v.clone() for k, v in head.state_dict().items()}
        grid = [self.l2] if (self.l2 is not None or x_val is None) else list(L2_GRID)
        grid = [1e-3 if g is None else g for g in grid]
        scores: dict[str, float] = {}
        best: tuple[float, float, dict[str, torch.Tensor]] | None = None
        for l2 in grid:
            head.load_state_dict(initial)
            loss = _fit_lbfgs(head, job.task, xt, yt, l2, self.max_iter)
            if x_val is not None and y_val is not None:
                with torch.no_grad():
                    val_loss = float(
                        job.task.loss(head(torch.as_tensor(x_val)), torch.as_tensor(y_val))
                    )
                score = -val_loss
            else:
                score = -loss
            scores[f"{l2:g}"] = score
            if best is None or score > best[0] or (math.isclose(score, best[0]) and l2 > best[1]):
                best = (score, l2, {k: v.clone() for k, v in head.state_dict().items()})
        assert best is not None
        head.load_state_dict(best[2])
        return {
            "solver": "lbfgs",
            "l2": best[1],
            "validation_loss_by_l2": {k: -v for k, v in scores.items()},
            "chosen_on": "validation" if x_val is not None else "training loss (no validation)",
        }

    def _engine(
        self,
        job: TransferJob,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_val: np.ndarray | None,
        y_val: np.ndarray | None,
    ) -> TransferOutcome:
        import datasets

        model = job.model
        feature_model = TransferModel(FeatureBackbone(model.backbone.feature_dim), model.head)
        train = datasets.Dataset.from_dict({"features": list(x_train), "label": list(y_train)})
        val = None
        if x_val is not None and y_val is not None:
            val = datasets.Dataset.from_dict({"features": list(x_val), "label": list(y_val)})
        config = job.with_config(optimizer=self.solver)
        trainer = job.trainer(model=feature_model, config=config, stage="probe")
        fit = trainer.fit(train, val, FeaturePreprocessor())
        return TransferOutcome(
            model=model, history=list(fit.history), fit=fit, details={"solver": self.solver}
        )


class LPFT(Strategy):
    """LP-FT (Kumar et al. 2022): a linear probe to convergence, then fine-tuning of every
    layer from that head with a small learning rate. A random head's large early gradients
    distort pretrained features; starting from a good head keeps them, which helps most
    out of distribution."""

    name = "lp-ft"

    def __init__(self, ft_lr: float | None = None, probe_solver: str = "lbfgs") -> None:
        self.probe = LinearProbe(solver=probe_solver)
        self.ft_lr = None if ft_lr is None else check_range(self.name, "ft_lr", ft_lr, 1e-9, 1.0)

    def config(self) -> dict[str, Any]:
        return {"ft_lr": self.ft_lr, "probe_solver": self.probe.solver}

    def run(self, job: TransferJob) -> TransferOutcome:
        probed = self.probe.run(job)
        set_requires_grad(job.model.parameters(), True)
        lr = self.ft_lr if self.ft_lr is not None else job.config.lr * 0.1
        trainer = job.trainer(config=job.with_config(lr=lr), stage="finetune")
        fit = trainer.fit(job.train, job.validation, job.preprocessor)
        return TransferOutcome(
            model=job.model,
            history=list(fit.history),
            fit=fit,
            details={"probe": probed.details, "ft_lr": lr},
        )
