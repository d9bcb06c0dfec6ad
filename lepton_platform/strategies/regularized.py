"""``l2-sp``, ``wise-ft`` and ``adabn``: strategies that keep the model near what it learned
on the source."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lepton_platform.errors import ConfigError
from lepton_platform.models import TransferModel
from lepton_platform.strategies.base import (
    Strategy,
    TransferJob,
    TransferOutcome,
    check_range,
    set_requires_grad,
    snapshot,
)
from lepton_platform.strategies.probe import LinearProbe


class L2SP(Strategy):
    """L2-SP (Li et al. 2018): fine-tune every layer with the penalty
    ``alpha/2 * ||theta - theta_0||^2`` pulling the backbone towards its pretrained weights
    theta_0, and plain weight decay ``beta`` on the new head. Helps when the target data are few
    and the source is relevant: the model may move, but pays for moving far."""

    name = "l2-sp"
    needs_pretrained = True

    def __init__(self, alpha: float = 0.01, beta: float = 0.01) -> None:
        self.alpha = check_range(self.name, "alpha", alpha, 0.0, 1e4)
        self.beta = check_range(self.name, "beta", beta, 0.0, 1e4)

    def config(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta": self.beta}

    def run(self, job: TransferJob) -> TransferOutcome:
        model = job.model
        set_requires_grad(model.parameters(), True)
        named = dict(model.backbone.named_parameters())
        anchors = {n: p.detach().clone() for n, p in named.items()}
        alpha = self.alpha

        def penalty(m: TransferModel) -> torch.Tensor:
            total = torch.zeros((), device=next(m.parameters()).device)
            for name, param in m.backbone.named_parameters():
                if param.requires_grad:
                    anchor = anchors[name].to(param.device)
                    total = total + (param - anchor).pow(2).sum()
            return 0.5 * alpha * total

        groups = [
            {"params": list(model.backbone.parameters()), "weight_decay": 0.0, "name": "backbone"},
            {"params": list(model.head.parameters()), "weight_decay": self.beta, "name": "head"},
        ]
        trainer = job.trainer(param_groups=groups, regularizer=penalty)
        fit = trainer.fit(job.train, job.validation, job.preprocessor)
        return TransferOutcome(model=model, history=list(fit.history), fit=fit)


def interpolate(
    theta_0: Mapping[str, torch.Tensor], theta_1: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * theta_0 + alpha * theta_1`` for floating tensors; integer buffers
    (batch-norm counters) come from ``theta_1``."""
    if theta_0.keys() != theta_1.keys():
        differ = sorted(set(theta_0) ^ set(theta_1))[:5]
        raise ConfigError(f"cannot interpolate state dicts with different keys: {differ}")
    out: dict[str, torch.Tensor] = {}
    for key, end in theta_1.items():
        start = theta_0[key].to(end.device)
        if start.shape != end.shape:
            raise ConfigError(f"cannot interpolate {key!r}: shapes {start.shape} and {end.shape}")
        out[key] = (1 - alpha) * start + alpha * end if end.is_floating_point() else end.clone()
    return out


#: 0, 0.1, ..., 1: the alphas WiSE-FT sweeps by default.
DEFAULT_ALPHAS = tuple(i / 10 for i in range(11))


class WiSEFT(Strategy):
    """WiSE-FT (Wortsman et al. 2022), the knowledge-transfer formula
    ``theta_alpha = (1 - alpha) * theta_0 + alpha * theta_1``: theta_0 is the pretrained
    backbone with a linear-probed head, theta_1 the model fine-tuned from it; every alpha in
    ``alphas`` is evaluated on the validation split, the best is kept and all are reported.
    Robust when the target is small or shifted: it trades fine-tuned accuracy against the
    pretrained model's generality, with the dial set on validation data. The sweep reports
    each alpha's monitored ``value`` and its ``validation_score`` (the value turned so that
    higher is better: a loss or a lower-is-better metric negated); the best score wins."""

    name = "wise-ft"
    needs_pretrained = True

    def __init__(
        self, alphas: Sequence[float] = DEFAULT_ALPHAS, ft_lr: float | None = None
    ) -> None:
        values = [check_range(self.name, "alpha", a, 0.0, 1.0) for a in alphas]
        if not values:
            raise ConfigError("strategy 'wise-ft': alphas must not be empty")
        self.alphas = sorted(set(values))
        self.ft_lr = None if ft_lr is None else check_range(self.name, "ft_lr", ft_lr, 1e-9, 1.0)

    def config(self) -> dict[str, Any]:
        return {"alphas": self.alphas, "ft_lr": self.ft_lr}

    def run(self, job: TransferJob) -> TransferOutcome:
        if job.validation is None:
            raise ConfigError("strategy 'wise-ft' chooses alpha on a validation split; give one")
        model = job.model
        probe = LinearProbe().run(job)
        theta_0 = snapshot(model)
        set_requires_grad(model.parameters(), True)
        lr = self.ft_lr if self.ft_lr is not None else job.config.lr
        fit = job.trainer(config=job.with_config(lr=lr), stage="finetune").fit(
            job.train, job.validation, job.preprocessor
        )
        theta_1 = snapshot(model)
        sweep: list[dict[str, float]] = []
        for alpha in self.alphas:
            model.load_state_dict(interpolate(theta_0, theta_1, alpha))
            score = job.score(model)  # oriented: higher is better, whatever the monitor
            value = score if job.monitor is None or job.monitor.higher_is_better else -score
            sweep.append({"alpha": alpha, "validation_score": score, "value": value})
        best = max(sweep, key=lambda row: (row["validation_score"], row["alpha"]))
        model.load_state_dict(interpolate(theta_0, theta_1, best["alpha"]))
        return TransferOutcome(
            model=model,
            history=list(fit.history),
            fit=fit,
            details={
                "alpha": best["alpha"],
                "sweep": sweep,
                "monitor": job.config.monitor,
                "probe": probe.details,
            },
        )


class _Moments:
    """Running sums of one batch-norm layer's inputs, per channel."""

    def __init__(self, channels: int) -> None:
        self.total = torch.zeros(channels, dtype=torch.float64)
        self.squares = torch.zeros(channels, dtype=torch.float64)
        self.count = 0


def adapt_batchnorm(model: TransferModel, job: TransferJob, dataset: Any) -> int:
    """Re-estimate every batch-norm layer's statistics on ``dataset`` (labels unused).

    One pass in training mode (each layer normalises with its batch's statistics, as it did
    when the statistics were first estimated) while forward hooks accumulate, per layer, the
    sum and the sum of squares of its inputs over every example; the running mean and the
    unbiased running variance are then set to those population values, each example weighing
    the same whatever the batch sizes.
    """
    from lepton_platform.engine.predict import batches

    layers = model.backbone.batchnorm_layers()
    sums: dict[int, _Moments] = {}

    def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].detach().double()
        dims = [d for d in range(x.ndim) if d != 1]
        moments = sums.setdefault(id(module), _Moments(x.shape[1]))
        moments.total += x.sum(dims).cpu()
        moments.squares += x.pow(2).sum(dims).cpu()
        moments.count += x.numel() // x.shape[1]

    handles = [layer.register_forward_pre_hook(hook) for layer in layers]
    model.train()
    seen = 0
    batch_size = job.config.eval_batch_size or job.config.batch_size
    device = next(iter(model.parameters()), torch.empty(0)).device
    try:
        with torch.no_grad():
            for batch in batches(dataset, job.preprocessor, batch_size, device=device):
                model.backbone(**batch)
                seen += next(iter(batch.values())).shape[0]
    finally:
        for handle in handles:
            handle.remove()
        model.eval()
    if seen == 0:
        raise ConfigError("adabn: the target data are empty")
    for layer in layers:
        moments = sums[id(layer)]
        n = moments.count
        mean = moments.total / n
        var = (moments.squares / n - mean.pow(2)).clamp_min(0) * (n / max(n - 1, 1))
        assert layer.running_mean is not None and layer.running_var is not None
        layer.running_mean.copy_(mean.to(layer.running_mean))
        layer.running_var.copy_(var.to(layer.running_var))
        if layer.num_batches_tracked is not None:
            layer.num_batches_tracked.zero_()
    return seen


class AdaBN(Strategy):
    """AdaBN (Li et al. 2016): re-estimate the batch-norm statistics on target-domain inputs
    (no labels needed), then, with ``train_head``, fit the head on the adapted features by a
    linear probe. Cheap, and strong when the domains differ in low-level statistics
    (contrast, colour, recording conditions). Needs a backbone with batch-norm layers."""

    name = "adabn"
    needs_batchnorm = True

    def __init__(self, train_head: bool = True) -> None:
        self.train_head = bool(train_head)

    def config(self) -> dict[str, Any]:
        return {"train_head": self.train_head}

    def run(self, job: TransferJob) -> TransferOutcome:
        target = job.unlabelled_target if job.unlabelled_target is not None else job.train
        seen = adapt_batchnorm(job.model, job, target)
        details: dict[str, Any] = {
            "examples_used": seen,
            "source": "unlabelled target" if job.unlabelled_target is not None else "train split",
        }
        if self.train_head:
            details["probe"] = LinearProbe().run(job).details
        return TransferOutcome(model=job.model, details=details)
