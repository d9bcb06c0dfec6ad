"""``lepton rank --domain D --data PATH --backbones a,b,c``: rank backbones and Lepton source
models for the target data without fine-tuning (LogME, LEEP, H-score), over
:func:`lepton_platform.rank`. Nothing heavy is imported until ``run``."""

from __future__ import annotations

import argparse

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--domain", required=True, help="the target data's registered domain")
    parser.add_argument(
        "--data", required=True, action="append", metavar="PATH", help="target data (repeatable)"
    )
    parser.add_argument(
        "--source",
        dest="source_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a source option for the domain's reader, e.g. --source label_column=y",
    )
    parser.add_argument(
        "--backbones",
        required=True,
        metavar="A,B,C",
        help="candidates: registered backbone names and/or saved model folders, comma-separated",
    )
    parser.add_argument(
        "--options",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE",
        help="a backbone option for one candidate, e.g. --options mlp:num_features=64",
    )
    parser.add_argument(
        "--pretrained",
        action="append",
        default=[],
        metavar="NAME=WEIGHTS",
        help="weights for one candidate, e.g. --pretrained resnet18=IMAGENET1K_V1",
    )
    parser.add_argument(
        "--by", choices=("logme", "hscore", "leep"), default="logme", help="the ranking score"
    )
    parser.add_argument("--max-examples", type=int, default=None, help="score on at most N rows")
    parser.add_argument("-q", "--quiet", action="store_true", help="errors only")
    parser.add_argument("--json", action="store_true", help="print the ranking as JSON")


def run(args: argparse.Namespace) -> int:
    """Score every candidate and print the ranking, best first."""
    from lepton_platform.cli.commands import source_of
    from lepton_platform.cli.console import Console, csv_list, quiet_libraries, yaml_scalar
    from lepton_platform.errors import ConfigError

    console = Console(args)
    names = csv_list(args.backbones, "--backbones")
    candidates: list[dict[str, object]] = []
    extra: dict[str, dict[str, object]] = {n: {} for n in names}
    weights: dict[str, str] = {}
    for item in args.options:
        name, sep, rest = item.partition(":")
        key, eq, value = rest.partition("=")
        if not sep or not eq or name not in extra:
            raise ConfigError(
                f"--options {item!r}: expected NAME:KEY=VALUE with NAME one of {', '.join(names)}"
            )
        extra[name][key.strip()] = yaml_scalar(value)
    for item in args.pretrained:
        name, eq, value = item.partition("=")
        if not eq or name not in extra:
            raise ConfigError(
                f"--pretrained {item!r}: expected NAME=WEIGHTS with NAME one of {', '.join(names)}"
            )
        weights[name] = value
    from pathlib import Path

    for name in names:
        if Path(name).is_dir():
            candidates.append({"model": name, "label": name})
        else:
            candidates.append(
                {"name": name, "options": extra[name], "pretrained": weights.get(name)}
            )
    sources = [source_of(path, args.source_options) for path in args.data]
    quiet_libraries(console.quiet)
    from lepton_platform.api.rank import rank

    ranking = rank(
        domain=args.domain,
        data=sources,
        candidates=candidates,
        by=args.by,
        max_examples=args.max_examples,
        progress=console.say,
    )
    console.result(ranking.to_markdown(), ranking.to_json())
    return 0
