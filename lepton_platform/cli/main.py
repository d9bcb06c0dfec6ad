"""The ``lepton`` command. Sub-commands come from the ``lepton_commands`` hook: the CLI's own
plugin (registered here, so that only the command loads it) and any installed plugin's. This
module registers that plugin, builds the parser and dispatches."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from lepton_platform._io import WriteError
from lepton_platform._version import __version__
from lepton_platform.errors import LeptonError, PluginError


def register_cli(host: Any = None) -> None:
    """Register the CLI's commands plugin with the process-wide host (once)."""
    from lepton_platform._host import CORE_DISTRIBUTION, get_host
    from lepton_platform._version import __version__
    from lepton_platform.cli import plugin

    host = host or get_host()
    if not host.is_registered(plugin.NAME):
        host.register(
            plugin, plugin.NAME, distribution=CORE_DISTRIBUTION, version=__version__, builtin=True
        )


def build_parser() -> argparse.ArgumentParser:
    from lepton_platform._host import get_host
    from lepton_platform.registry import list_commands

    register_cli()
    parser = argparse.ArgumentParser(
        prog="lepton",
        description="Lepton: move what a model learned in one domain to another.",
    )
    parser.add_argument("--version", action="version", version=f"lepton {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for spec in list_commands():
        command = sub.add_parser(spec.name, help=spec.description, description=spec.description)
        run = spec.run
        if spec.configure is not None:
            try:
                spec.configure(command)
            except Exception as exc:  # a plugin's broken command must not take `lepton` down
                if get_host().strict:
                    raise PluginError(
                        f"command {spec.name!r} (from {spec.provider}): configure raised {exc!r}"
                    ) from exc
                run = _broken_command(spec.name, str(spec.provider), exc)
        command.set_defaults(_run=run, _command=spec)
    return parser


def _broken_command(name: str, provider: str, exc: Exception) -> Callable[[object], int]:
    """A stand-in for a command whose ``configure`` raised: running it reports why."""
    reason = f"command {name!r} (from {provider}) is broken: configure raised {exc!r}"
    print(f"lepton: warning: {reason}", file=sys.stderr)

    def run(args: object) -> int:
        raise PluginError(f"{reason}; update or disable that plugin (LEPTON_DISABLE_PLUGINS)")

    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if getattr(args, "_run", None) is None:
            parser.print_help()
            return 2
        code = args._run(args)
        return 0 if code is None else int(code)
    except (LeptonError, WriteError) as exc:  # a refused write names its path and what to do
        print(f"lepton: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lepton: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `lepton plugins --json | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
