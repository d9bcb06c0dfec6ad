"""The core's own plugin, registered through the core distribution's ``lepton_platform`` entry
point like any third party's: the built-in tasks, strategies and metrics. Nothing heavy is
imported here (the ``lepton`` command's sub-commands come from its own plugin,
:mod:`lepton_platform.cli.plugin`)."""

from __future__ import annotations

from typing import Any

from lepton_platform.hookspecs import hookimpl
from lepton_platform.specs import MetricSpec, StrategySpec, TaskSpec


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
            options={
                "class_weights": "a loss weight per class (imbalanced data)",
                "label_smoothing": "label smoothing of the cross-entropy, in [0, 1)",
                "dropout": "dropout before the head, in [0, 1)",
            },
            description="Single-label classification: linear head, cross-entropy",
        ),
        TaskSpec(
            name="multilabel-classification",
            factory=_multilabel,
            options={
                "threshold": "score above which a label is predicted, in (0, 1)",
                "pos_weight": "a weight of the positive examples per label",
            },
            description="Multi-label classification: sigmoid per label, binary cross-entropy",
        ),
    ]


def _strategy(module: str, cls: str) -> Any:
    """A factory importing ``lepton_platform.strategies.<module>.<cls>`` only when called,
    refusing unknown parameters by name."""

    def factory(**params: Any) -> Any:
        import importlib

        from lepton_platform.registry import check_options
        from lepton_platform.specs import signature_options

        klass = getattr(importlib.import_module(f"lepton_platform.strategies.{module}"), cls)
        check_options(f"strategy {klass.name!r}", signature_options(klass), params)
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
                "groups": "layer group names in unfreezing order (default: from the output)",
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
            description="Interpolate pretrained and fine-tuned weights; alpha chosen on validation",
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
        *_adaptation_strategies(),
        *_efficient_strategies(),
    ]


def _adaptation(cls: str) -> Any:
    """A factory importing ``lepton_platform.adaptation.<module>.<cls>`` only when called."""

    def factory(**params: Any) -> Any:
        import importlib

        from lepton_platform.registry import check_options
        from lepton_platform.specs import signature_options

        module = importlib.import_module(f"lepton_platform.adaptation.{cls.lower()}")
        klass = getattr(module, cls)
        check_options(f"strategy {klass.name!r}", signature_options(klass), params)
        return klass(**params)

    factory.__qualname__ = cls
    return factory


_UDA = {
    "weight": "weight of the alignment loss added to the source loss",
    "adabn": "re-estimate batch-norm statistics on the target after training (AdaBN)",
    "validator": "label-free epoch choice: source-accuracy, iwv or snd",
}


def _adaptation_strategies() -> list[StrategySpec]:
    return [
        StrategySpec(
            name="dann",
            factory=_adaptation("DANN"),
            description="Domain-adversarial training on pooled features (unlabelled target)",
            paper="Ganin et al. 2016",
            parameters={
                **_UDA,
                "hidden": "width of the domain discriminator",
                "layers": "hidden layers of the domain discriminator",
            },
        ),
        StrategySpec(
            name="coral",
            factory=_adaptation("CORAL"),
            description="Align source and target feature covariances (unlabelled target)",
            paper="Sun and Saenko 2016",
            parameters=dict(_UDA),
        ),
        StrategySpec(
            name="mcc",
            factory=_adaptation("MCC"),
            description="Minimum class confusion on the unlabelled target's predictions",
            paper="Jin et al. 2020",
            parameters={
                **_UDA,
                "weight": "weight of the class-confusion loss added to the source loss",
                "temperature": "softmax temperature of the target predictions",
            },
        ),
        StrategySpec(
            name="mixstyle",
            factory=_adaptation("MixStyle"),
            description="Mix source and target feature statistics in a convolutional backbone",
            paper="Zhou et al. 2021",
            parameters={
                "p": "probability of mixing a training batch's statistics with a target batch's",
                "alpha": "Beta(alpha, alpha) distribution of the mixing weight",
                "layers": "layer groups after which statistics are mixed (default: the first "
                "two giving convolutional feature maps)",
                "adabn": _UDA["adabn"],
                "validator": _UDA["validator"],
            },
        ),
        StrategySpec(
            name="shot",
            factory=_adaptation("SHOT"),
            description="Source-free adaptation: information maximisation and pseudo-labels",
            paper="Liang et al. 2020",
            parameters={
                "beta": "weight of the cross-entropy to the centroid pseudo-labels (paper: 0.3)",
                "diversity": "weight of the prediction-diversity term of the IM loss (paper: 1)",
                "validator": "label-free epoch choice on the target: snd or none (last epoch)",
            },
        ),
        StrategySpec(
            name="pseudo-label",
            factory=_adaptation("PseudoLabel"),
            description="Self-training on the source model's confident target predictions",
            paper="Lee 2013",
            parameters={
                "threshold": "top probability a target prediction needs to become a label",
                "rounds": "rounds of relabelling (each trains the configured epochs)",
                "validator": "label-free epoch choice on the target: snd or none (last epoch)",
            },
        ),
    ]


# -- parameter-efficient transfer (peft) and knowledge distillation ----------------------------

_EFFICIENT = {
    "groups": "layer groups whose layers train (default: all but the input-side one)",
    "lr": "learning rate of what trains (default: train.lr)",
    "head_lr": "learning rate of the head (default: lr)",
    "layer_decay": _LAYER_DECAY,
    "probe": "fit the head by a linear probe first (LP-FT)",
    "alphas": "WiSE-FT: interpolation weights swept on validation (needs probe)",
}
_PEFT = {
    "target_modules": "module-name patterns relative to the backbone (default: every Linear "
    "and Conv2d of the groups)",
    "save_adapter": "keep the adapter alone in peft's format beside the merged weights",
}


def _load_teacher(folder: str) -> Any:
    """A saved Lepton model as a distillation teacher, through the application layer."""
    from lepton_platform.api.predictor import load
    from lepton_platform.strategies.distill import Teacher

    predictor = load(folder)
    return Teacher(
        model=predictor.model,
        label_names=list(predictor.label_names),
        source=str(folder),
        domain=str(predictor.manifest["domain"]["name"]),
    )


def _backbone_domain(backbone: Any) -> str | None:
    """The registered domain of a backbone built from the registry (``None``: unknown)."""
    from lepton_platform.errors import UnknownNameError
    from lepton_platform.registry import get_backbone

    if not backbone.registered_name:
        return None
    try:
        return get_backbone(backbone.registered_name).domain
    except UnknownNameError:
        return None


def _distill(**params: Any) -> Any:
    """``distill``, handed the services that load a teacher folder."""
    from lepton_platform.registry import check_options
    from lepton_platform.specs import signature_options
    from lepton_platform.strategies.distill import Distill, DistillServices

    accepted = [o for o in signature_options(Distill) or [] if o != "services"]
    check_options("strategy 'distill'", accepted, params)
    return Distill(**params, services=DistillServices(_load_teacher, _backbone_domain))


def _efficient_strategies() -> list[StrategySpec]:
    return [
        StrategySpec(
            name="lora",
            factory=_strategy("adapters", "LoRA"),
            description="Low-rank adapters (peft) on the backbone's layers, merged after training",
            paper="Hu et al. 2022",
            parameters={
                "rank": "rank r of each low-rank update",
                "alpha": "scaling: the update is (alpha / rank) * B A",
                "dropout": "dropout on the adapter's input",
                **_PEFT,
                **_EFFICIENT,
            },
        ),
        StrategySpec(
            name="ia3",
            factory=_strategy("adapters", "IA3"),
            description="Learned rescaling vectors (peft) on the backbone's layers, merged after",
            paper="Liu et al. 2022",
            parameters={
                **_PEFT,
                "feedforward_modules": "patterns of adapted modules whose inputs are rescaled "
                "(default: none; outputs are)",
                **_EFFICIENT,
            },
        ),
        StrategySpec(
            name="bitfit",
            factory=_strategy("adapters", "BitFit"),
            description="Only the backbone's bias terms train, with the head",
            paper="Ben Zaken et al. 2022",
            parameters={
                **_EFFICIENT,
                "groups": "layer groups whose biases train (default: all)",
            },
        ),
        StrategySpec(
            name="distill",
            factory=_distill,
            description="Knowledge distillation from a teacher model into this backbone",
            paper="Hinton et al. 2015",
            parameters={
                "teacher": "the teacher's Lepton model folder (default: the backbone's source "
                "model, head included)",
                "weight": "w in (1 - w) * CE + w * T^2 * KL",
                "temperature": "softmax temperature T of teacher and student",
                "feature_weight": "weight of the pooled-feature term through a learned "
                "projection (0: off)",
                "lr": "learning rate of the student (default: train.lr)",
                "layer_decay": _LAYER_DECAY,
            },
        ),
    ]


# -- metrics: evaluate modules shipped in lepton_platform/metrics, loaded by path -------------


def _metric_factory(module: str, config_name: str | None = None) -> Any:
    """A factory that loads one shipped ``evaluate`` module (imported only when called)."""

    def load() -> Any:
        from lepton_platform.metrics import load_module

        return load_module(module, config_name)

    load.__name__ = f"load_{module}" + (f"_{config_name}" if config_name else "")
    return load


def _metric(
    name: str,
    module: str,
    description: str,
    *,
    config_name: str | None = None,
    headline: str,
    multi_label: bool = True,
    needs_scores: bool = False,
) -> MetricSpec:
    return MetricSpec(
        name=name,
        factory=_metric_factory(module, config_name),
        description=description,
        needs_scores=needs_scores,
        headline=headline,
        num_labels=True,
        multi_label=multi_label,
    )


@hookimpl
def lepton_metrics() -> list[MetricSpec]:
    return [
        _metric(
            "accuracy",
            "accuracy",
            "Accuracy (subset accuracy for multi-label)",
            headline="accuracy",
        ),
        _metric(
            "precision",
            "classwise",
            "Precision: macro, micro, weighted and per class",
            config_name="precision",
            headline="precision",
        ),
        _metric(
            "recall",
            "classwise",
            "Recall: macro, micro, weighted and per class",
            config_name="recall",
            headline="recall",
        ),
        _metric(
            "f1",
            "classwise",
            "F1: macro, micro, weighted and per class",
            config_name="f1",
            headline="f1",
        ),
        _metric(
            "confusion-matrix",
            "confusion_matrix",
            "Confusion matrix (rows: true labels)",
            headline="confusion_matrix",
        ),
        _metric(
            "balanced-accuracy",
            "balanced_accuracy",
            "Mean recall over classes",
            headline="balanced_accuracy",
            multi_label=False,
        ),
        _metric(
            "top-k-accuracy",
            "top_k_accuracy",
            "True label among the k best scores",
            headline="top_k_accuracy",
            multi_label=False,
            needs_scores=True,
        ),
        _metric(
            "auroc",
            "auroc",
            "Area under the ROC curve (binary, one-vs-rest, multi-label)",
            headline="auroc",
            needs_scores=True,
        ),
    ]
