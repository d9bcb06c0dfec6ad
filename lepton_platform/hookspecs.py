"""Every hook a Lepton plugin can implement, in one module.

A plugin is a module (or any object) with functions marked ``@lepton_platform.hookimpl`` whose
names are hook names below. Each hook takes no arguments and returns a list of frozen spec
records from :mod:`lepton_platform.specs`. The host validates each record, remembers which
distribution supplied it, and refuses a second record with a name already taken.

Publish a plugin by naming its module in the ``lepton_platform`` entry-point group::

    [project.entry-points.lepton_platform]
    tabular = "lepton_tabular.plugin"

The examples below are complete plugin modules; ``docs/plugins.md`` has them all.
"""

from __future__ import annotations

from collections.abc import Sequence

import pluggy

from lepton_platform.specs import (
    BackboneSpec,
    CommandSpec,
    DomainSpec,
    MetricSpec,
    StrategySpec,
    TaskSpec,
)

#: The pluggy project name; also the entry-point group.
PROJECT = "lepton_platform"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


@hookspec
def lepton_domains() -> Sequence[DomainSpec]:
    """Return the data domains this plugin adds.

    A domain reads a modality's sources (folders, CSV, ...) into a ``datasets.Dataset`` in the
    standard schema: an input column, ``label``, and optional ``domain`` and ``group``.

    Example::

        from lepton_platform import DomainSpec, hookimpl

        def _make_domain(**options):
            from lepton_tabular.domain import TabularDomain  # heavy imports happen here

            return TabularDomain(**options)

        @hookimpl
        def lepton_domains():
            return [DomainSpec(name="tabular", modality="tabular", factory=_make_domain,
                               description="Numeric feature vectors from CSV")]
    """
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


@hookspec
def lepton_backbones() -> Sequence[BackboneSpec]:
    """Return the backbones this plugin adds.

    ``factory(pretrained=None, **options)`` builds a :class:`lepton_platform.models.Backbone`
    that maps a batch to pooled features; ``tiny_options`` builds a tiny one for the tests.

    Example::

        from lepton_platform import BackboneSpec, hookimpl

        def _mlp(pretrained=None, **options):
            from lepton_tabular.backbone import MLPBackbone

            return MLPBackbone.build(pretrained=pretrained, **options)

        @hookimpl
        def lepton_backbones():
            return [BackboneSpec(name="mlp", domain="tabular", factory=_mlp,
                                 tiny_options={"num_features": 4, "hidden": [8]})]
    """
    raise NotImplementedError


@hookspec
def lepton_tasks() -> Sequence[TaskSpec]:
    """Return the tasks this plugin adds.

    ``factory(label_names=[...], **options)`` builds a :class:`lepton_platform.tasks.Task`: it
    makes the head for a label space and owns the loss, the predictions and default metrics.

    Example::

        from lepton_platform import TaskSpec, hookimpl

        def _ordinal(label_names, **options):
            from my_plugin.tasks import OrdinalRegression

            return OrdinalRegression(label_names, **options)

        @hookimpl
        def lepton_tasks():
            return [TaskSpec(name="ordinal-regression", factory=_ordinal)]
    """
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Transfer and evaluation
# ---------------------------------------------------------------------------------------------


@hookspec
def lepton_strategies() -> Sequence[StrategySpec]:
    """Return the transfer strategies this plugin adds.

    ``factory(**params)`` builds a :class:`lepton_platform.strategies.Strategy`; it raises
    :class:`lepton_platform.errors.ConfigError` for a parameter out of range, before training.

    Example::

        from lepton_platform import StrategySpec, hookimpl

        def _bias_only(**params):
            from my_plugin.strategies import BiasOnly  # trains only the bias terms (BitFit)

            return BiasOnly(**params)

        @hookimpl
        def lepton_strategies():
            return [StrategySpec(name="bitfit", factory=_bias_only,
                                 paper="Ben Zaken et al. 2022",
                                 parameters={"lr": "learning rate of the bias terms"})]
    """
    raise NotImplementedError


@hookspec
def lepton_metrics() -> Sequence[MetricSpec]:
    """Return the metrics this plugin adds.

    ``factory()`` returns an object with ``compute(predictions=..., references=...) -> dict``,
    typically a Hugging Face ``evaluate`` module shipped inside the plugin and loaded by path.

    Example::

        from pathlib import Path

        from lepton_platform import MetricSpec, hookimpl

        def _load():
            from lepton_platform.metrics import load_path  # evaluate.load by path, cached

            return load_path(Path(__file__).parent / "metrics" / "kappa.py")

        @hookimpl
        def lepton_metrics():
            return [MetricSpec(name="cohen-kappa", factory=_load)]
    """
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


@hookspec
def lepton_commands() -> Sequence[CommandSpec]:
    """Return ``lepton`` sub-commands this plugin adds.

    ``configure(parser)`` adds arguments to an ``argparse`` sub-parser; ``run(args)`` returns
    the exit code. Import heavy libraries inside ``run``, never at module level.

    Example::

        from lepton_platform import CommandSpec, hookimpl

        def _configure(parser):
            parser.add_argument("path")

        def _run(args):
            print(f"checking {args.path}")
            return 0

        @hookimpl
        def lepton_commands():
            return [CommandSpec(name="check-data", run=_run, configure=_configure,
                                description="Check a data folder")]
    """
    raise NotImplementedError


#: Hook name for each spec kind, in listing order.
HOOK_FOR_KIND = {
    "domain": "lepton_domains",
    "backbone": "lepton_backbones",
    "task": "lepton_tasks",
    "strategy": "lepton_strategies",
    "metric": "lepton_metrics",
    "command": "lepton_commands",
}
