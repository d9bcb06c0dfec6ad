"""The ``lepton`` command's own sub-commands, as a plugin that only the command registers (a
library user importing ``lepton_platform`` never imports the CLI)."""

from __future__ import annotations

from lepton_platform.cli import commands, plugins_cmd, rank_cmd, tune_cmd
from lepton_platform.hookspecs import hookimpl
from lepton_platform.specs import CommandSpec

#: The name this plugin is registered under.
NAME = "lepton-platform:cli"


@hookimpl
def lepton_commands() -> list[CommandSpec]:
    return [
        CommandSpec(
            name="plugins",
            description="List installed plugins, what they provide, and broken ones",
            configure=plugins_cmd.configure,
            run=plugins_cmd.run,
        ),
        *(
            CommandSpec(name=name, description=description, configure=configure, run=run)
            for name, description, configure, run in commands.COMMANDS
        ),
        CommandSpec(
            name="tune",
            description="Search hyper-parameters on Optuna (resumable), then train the best",
            configure=tune_cmd.configure,
            run=tune_cmd.run,
        ),
        CommandSpec(
            name="rank",
            description="Rank backbones and source models for target data without fine-tuning",
            configure=rank_cmd.configure,
            run=rank_cmd.run,
        ),
    ]
