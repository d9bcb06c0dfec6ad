"""The core's own plugin. Built-in tasks, metrics, strategies and commands are registered
through the same hooks as any third party's; nothing heavy is imported here."""

from __future__ import annotations

from typing import Any

from lepton_platform.hookspecs import hookimpl
from lepton_platform.specs import CommandSpec, StrategySpec, TaskSpec


def _classification(label_names: Any, **options: Any) -> Any:
    from lepton_platform.tasks import ClassificationTask

    return ClassificationTask(label_names, **options)


def _multilabel(label_names: Any, **options: Any) -> Any:
    from lepton_platform.tasks import MultiLabelClassificationTask

    return MultiLabelClassificationTask(label_names, **options)


@hookimpl
def lepton_tasks() -> list[TaskSpec]:
    return [
        TaskSpec(
            name="classification",
            factory=_classification,
            description="Single-label classification: linear head, cross-entropy",
        ),
        TaskSpec(
            name="multilabel-classification",
            factory=_multilabel,
            description="Multi-label classification: sigmoid per label, binary cross-entropy",
        ),
    ]


@hookimpl
def lepton_commands() -> list[CommandSpec]:
    from lepton_platform.cli import plugins_cmd

    return [
        CommandSpec(
            name="plugins",
            description="List installed plugins, what they provide, and broken ones",
            configure=plugins_cmd.configure,
            run=plugins_cmd.run,
        ),
    ]


def _strategy(module: str, cls: str) -> Any:
    """A factory importing ``lepton_platform.strategies.<module>.<cls>`` only when called,
    refusing unknown parameters by name."""

    def factory(**params: Any) -> Any:
        import importlib

        from lepton_platform.registry import check_options

        klass = getattr(importlib.import_module(f"lepton_platform.strategies.{module}"), cls)
        check_options(f"strategy {klass.name!r}", klass, params)
        return klass(**params)

    factory.__qualname__ = cls
    return factory


_LAYER_DECAY = "layer-wise learning-rate decay per layer group from the output (1: off)"


@hookimpl
def lepton_strategies() -> list[StrategySpec]:
    return [
        StrategySpec(
            name="linear-probe",
            factory=_strategy("probe", "LinearProbe"),
            description="Frozen backbone, cached features, only the head trains",
            paper="Kornblith et al. 2019",
            parameters={
                "solver": "lbfgs (logistic regression, penalty chosen on validation), "
                "adamw or sgd (the engine, config.epochs)",
                "l2": "weight penalty of the L-BFGS head (default: chosen on validation)",
                "max_iter": "L-BFGS iterations",
            },
        ),
        StrategySpec(
            name="finetune",
            factory=_strategy("finetune", "FineTune"),
            description="Every layer trains",
            parameters={"layer_decay": _LAYER_DECAY},
        ),
        StrategySpec(
            name="freeze",
            factory=_strategy("finetune", "Freeze"),
            description="Backbone frozen (batch-norm statistics too), head trains",
        ),
        StrategySpec(
            name="freeze-unfreeze",
            factory=_strategy("finetune", "FreezeUnfreeze"),
            description="Backbone frozen for the first epochs, then everything trains",
            parameters={
                "unfreeze_epoch": "epoch (from 0) at which the backbone starts training",
                "layer_decay": _LAYER_DECAY,
            },
        ),
        StrategySpec(
            name="unfreeze-milestones",
            factory=_strategy("finetune", "UnfreezeMilestones"),
            description="Layer groups unfrozen one after another from the output side",
            paper="Howard and Ruder 2018",
            parameters={
                "milestones": "epochs at which the next groups start training",
                "groups_per_milestone": "layer groups unfrozen at each milestone",
                "layer_decay": _LAYER_DECAY,
            },
        ),
        StrategySpec(
            name="lp-ft",
            factory=_strategy("probe", "LPFT"),
            description="Linear probe to convergence, then fine-tune from that head",
            paper="Kumar et al. 2022",
            parameters={
                "ft_lr": "fine-tuning learning rate (default: a tenth of config.lr)",
                "probe_solver": "solver of the probe stage",
            },
        ),
        StrategySpec(
            name="l2-sp",
            factory=_strategy("regularized", "L2SP"),
            description="Fine-tune with alpha/2 * ||theta - theta_0||^2 on the backbone",
            paper="Li et al. 2018",
            parameters={
                "alpha": "strength of the pull towards the pretrained weights",
                "beta": "weight decay of the head",
            },
        ),
        StrategySpec(
            name="wise-ft",
            factory=_strategy("regularized", "WiSEFT"),
            description="Interpolate pretrained and fine-tuned weights; alpha chosen on "
            "validation",
            paper="Wortsman et al. 2022",
            parameters={
                "alphas": "interpolation weights to sweep, each in [0, 1]",
                "ft_lr": "fine-tuning learning rate (default: config.lr)",
            },
        ),
        StrategySpec(
            name="adabn",
            factory=_strategy("regularized", "AdaBN"),
            description="Re-estimate batch-norm statistics on target-domain data",
            paper="Li et al. 2016",
            parameters={"train_head": "fit the head by a linear probe after adapting"},
        ),
    ]
