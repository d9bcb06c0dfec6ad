"""``lepton plugins`` as a real subprocess: the example plugin, a broken fake distribution,
exit codes, strict mode, and no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lepton_platform.testing import FakeSite

LEPTON = [sys.executable, "-m", "lepton_platform.cli.main"]
BROKEN_MODULE = """
from lepton_platform import BackboneSpec, hookimpl

@hookimpl
def lepton_backbones():
    return [BackboneSpec(name="Bad Name", domain="x", factory=print)]
"""


@pytest.fixture
def site(lepton_fake_site: FakeSite) -> FakeSite:
    lepton_fake_site.add(
        "acme-broken",
        {"broken": "acme_broken_mod"},
        {"acme_broken_mod.py": "import no_such_dependency_of_acme\n"},
    )
    lepton_fake_site.add(
        "acme-bad-spec", {"badspec": "acme_bad_spec_mod"}, {"acme_bad_spec_mod.py": BROKEN_MODULE}
    )
    return lepton_fake_site


def lepton(site: FakeSite, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LEPTON, *args],
        capture_output=True,
        text=True,
        env=site.env(**env),
        timeout=60,
        check=False,
    )


def by_distribution(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["distribution"]: p for p in doc["plugins"]}


def test_json_lists_the_example_plugin_and_the_broken_ones(site: FakeSite) -> None:
    result = lepton(site, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    plugins = by_distribution(doc)
    tabular = plugins["lepton-tabular"]
    assert tabular["status"] == "ok" and tabular["version"] == "0.1.0"
    assert tabular["provides"] == {
        "domain": ["tabular"],
        "backbone": ["mlp"],
        "task": ["ordinal"],
        "metric": ["class-mae"],
    }
    assert tabular["specs"]["backbone"][0]["domain"] == "tabular"
    broken = plugins["acme-broken"]
    assert broken["status"] == "broken"
    assert "No module named 'no_such_dependency_of_acme'" in broken["errors"][0]
    assert plugins["acme-bad-spec"]["status"] == "error"
    assert "backbone name 'Bad Name' is malformed" in plugins["acme-bad-spec"]["errors"][0]
    assert set(doc["broken"]) == {"broken", "badspec"}
    assert plugins["lepton-platform"]["status"] == "ok"


def test_table_shows_every_plugin_and_errors_on_stderr(site: FakeSite) -> None:
    result = lepton(site, "plugins")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["PLUGIN", "VERSION", "STATUS", "PROVIDES"]
    row = next(line for line in lines if line.startswith("lepton-tabular "))
    assert row.split()[:3] == ["lepton-tabular", "0.1.0", "ok"]
    assert "domain: tabular; backbone: mlp" in row
    assert any(line.split()[:3] == ["acme-broken", "1.0", "broken"] for line in lines)
    assert "acme-broken (broken): importing 'acme_broken_mod' failed" in result.stderr


def test_strict_flag_and_switch_exit_non_zero(site: FakeSite) -> None:
    flagged = lepton(site, "plugins", "--strict")
    assert flagged.returncode == 1
    assert "acme-broken" in flagged.stdout
    switched = lepton(site, "plugins", LEPTON_STRICT_PLUGINS="1")
    assert switched.returncode == 1
    assert "lepton: error: plugin 'acme-" in switched.stderr
    clean = lepton(site, "plugins", "--strict", LEPTON_DISABLE_PLUGINS="acme-broken,acme-bad-spec")
    assert clean.returncode == 0, clean.stderr


def test_only_selected_plugins_are_listed(site: FakeSite) -> None:
    result = lepton(site, "plugins", "--json", LEPTON_PLUGINS="lepton-tabular")
    assert sorted(by_distribution(json.loads(result.stdout))) == [
        "lepton-platform",
        "lepton-tabular",
    ]


def test_listing_imports_no_torch(tmp_path: Path) -> None:
    script = (
        "import contextlib, io, sys\n"
        "from lepton_platform.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    code = main(['plugins', '--json'])\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'datasets', 'evaluate', "
        "'accelerate', 'torchvision', 'torchaudio') if m in sys.modules)\n"
        "print(code, heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0 []"


BROKEN_COMMAND = """
from lepton_platform import CommandSpec, hookimpl

def configure(parser):
    raise RuntimeError("bad configure")

@hookimpl
def lepton_commands():
    return [CommandSpec(name="acme", run=print, configure=configure, description="Acme")]
"""


def test_a_command_whose_configure_raises_does_not_take_lepton_down(
    lepton_fake_site: FakeSite,
) -> None:
    lepton_fake_site.add("acme-cmd", {"cmd": "acme_cmd_mod"}, {"acme_cmd_mod.py": BROKEN_COMMAND})
    listing = lepton(lepton_fake_site, "plugins")
    assert listing.returncode == 0, listing.stderr
    assert "lepton-tabular" in listing.stdout
    assert "command 'acme' (from acme-cmd 1.0) is broken" in listing.stderr
    running = lepton(lepton_fake_site, "acme")
    assert running.returncode == 1
    assert "lepton: error: command 'acme' (from acme-cmd 1.0) is broken" in running.stderr
    strict = lepton(lepton_fake_site, "plugins", LEPTON_STRICT_PLUGINS="1")
    assert strict.returncode == 1
    assert "configure raised RuntimeError('bad configure')" in strict.stderr


HEAVY = """
import torch  # at module level: every lepton command would pay for it

from lepton_platform import TaskSpec, hookimpl

@hookimpl
def lepton_tasks():
    return [TaskSpec(name="heavy-task", factory=dict, description="imports torch")]
"""

EXITS = "import sys\nsys.exit(3)\n"

NOISY = """
print("hello from a plugin")

from lepton_platform import TaskSpec, hookimpl

@hookimpl
def lepton_tasks():
    print("and from its hook")
    return [TaskSpec(name="noisy-task", factory=dict, description="prints")]
"""


def test_a_plugin_importing_torch_at_module_level_is_reported(
    lepton_fake_site: FakeSite,
) -> None:
    lepton_fake_site.add("acme-heavy", {"heavy": "acme_heavy_mod"}, {"acme_heavy_mod.py": HEAVY})
    only = {"LEPTON_PLUGINS": "acme-heavy"}
    listed = lepton(lepton_fake_site, "plugins", "--json", **only)
    assert listed.returncode == 0, listed.stderr
    heavy = by_distribution(json.loads(listed.stdout))["acme-heavy"]
    assert heavy["status"] == "ok" and heavy["import_seconds"] > 0
    assert heavy["warnings"][0].startswith("imports torch when it is loaded (")
    assert "lepton: warning: acme-heavy (heavy): imports torch" in listed.stderr
    assert lepton(lepton_fake_site, "plugins", "--strict", **only).returncode == 1
    strict = lepton(lepton_fake_site, "plugins", LEPTON_STRICT_PLUGINS="1", **only)
    assert strict.returncode == 1
    assert "lepton: error: plugin 'acme-heavy' (heavy): imports torch" in strict.stderr


def test_a_plugin_exiting_or_printing_at_import_is_contained(lepton_fake_site: FakeSite) -> None:
    lepton_fake_site.add("acme-exits", {"exits": "acme_exits_mod"}, {"acme_exits_mod.py": EXITS})
    lepton_fake_site.add("acme-noisy", {"noisy": "acme_noisy_mod"}, {"acme_noisy_mod.py": NOISY})
    only = {"LEPTON_PLUGINS": "acme-exits,acme-noisy"}
    listed = lepton(lepton_fake_site, "plugins", "--json", **only)
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)  # stdout holds the JSON document only
    plugins = by_distribution(doc)
    assert plugins["acme-exits"]["status"] == "broken"
    assert "SystemExit: 3" in plugins["acme-exits"]["errors"][0]
    assert plugins["acme-noisy"]["status"] == "ok"
    assert plugins["acme-noisy"]["provides"] == {"task": ["noisy-task"]}
    assert "printed 20 characters to stdout" in plugins["acme-noisy"]["warnings"][0]
    version = lepton(lepton_fake_site, "--version", **only)
    assert version.returncode == 0 and version.stdout.startswith("lepton ")
