"""The core's own plugin. Built-in tasks, metrics, strategies and commands are registered
through the same hooks as any third party's; nothing heavy is imported here."""

from __future__ import annotations

from typing import Any

from lepton_platform.hookspecs import hookimpl
from lepton_platform.specs import CommandSpec, TaskSpec


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
