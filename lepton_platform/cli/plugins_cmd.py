"""``lepton plugins``: every plugin, its version, what it provides, and the broken ones.

Imports no torch: it reads spec metadata only.
"""

from __future__ import annotations

import argparse
import json
import sys

from lepton_platform._host import PluginHost, get_host
from lepton_platform.specs import KINDS


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a plugin is broken (also LEPTON_STRICT_PLUGINS=1)",
    )


def report(host: PluginHost) -> dict[str, object]:
    """The JSON document ``lepton plugins --json`` prints."""
    plugins = []
    for info in host.plugins:
        entry = info.to_json()
        entry["specs"] = {
            kind: [host.get(kind, name).summary() for name in names]
            for kind, names in info.provides.items()
        }
        plugins.append(entry)
    return {
        "plugins": plugins,
        "broken": [p["name"] for p in plugins if p["status"] != "ok"],
        "warnings": [p["name"] for p in plugins if p["warnings"]],
    }


def run(args: argparse.Namespace) -> int:
    host = get_host()
    doc = report(host)
    plugins = doc["plugins"]
    assert isinstance(plugins, list)
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        rows = [("PLUGIN", "VERSION", "STATUS", "PROVIDES")]
        for p in plugins:
            provides = "; ".join(
                f"{kind}: {', '.join(p['provides'][kind])}"
                for kind in KINDS
                if kind in p["provides"]
            )
            rows.append((p["distribution"], p["version"] or "-", p["status"], provides or "-"))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3])
        problems = [p for p in plugins if p["errors"]]
        if problems:
            print()
            for p in problems:
                for err in p["errors"]:
                    print(f"{p['distribution']} ({p['status']}): {err}", file=sys.stderr)
    for p in plugins:  # on stderr in both modes: --json stays one document
        for warning in p["warnings"]:
            print(f"lepton: warning: {p['distribution']} ({p['name']}): {warning}", file=sys.stderr)
    strict = args.strict or host.strict
    warned = [p["name"] for p in plugins if p["warnings"]]
    return 1 if strict and (doc["broken"] or warned) else 0
