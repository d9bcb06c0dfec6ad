"""Real installed distributions for tests: a ``NAME-VERSION.dist-info`` folder with
``METADATA`` and ``entry_points.txt``, plus module files, in a folder put on ``sys.path``.

Plugin hosts find them through ``importlib.metadata`` exactly as they find a ``pip install``-ed
plugin, so tests of discovery and of broken plugins need no mocks::

    def test_broken(lepton_fake_site):
        lepton_fake_site.add("acme-broken", {"acme": "acme_broken"},
                             {"acme_broken.py": "raise RuntimeError('boom')"})
        host = PluginHost(environ={"LEPTON_PLUGINS": "acme-broken"})
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

__all__ = ["FakeSite", "write_distribution"]


def write_distribution(
    site: Path,
    name: str,
    entry_points: Mapping[str, str],
    files: Mapping[str, str] | None = None,
    *,
    version: str = "1.0",
    group: str = "lepton_platform",
) -> Path:
    """Write distribution ``name`` into ``site``: its dist-info and ``files`` (relative path ->
    source text, dedented). ``entry_points`` maps entry-point names to ``module[:attr]``."""
    site.mkdir(parents=True, exist_ok=True)
    folder = re.sub(r"[-_.]+", "_", name)
    info = site / f"{folder}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = [f"[{group}]", *(f"{k} = {v}" for k, v in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for relative, text in (files or {}).items():
        target = site / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text), encoding="utf-8")
    return info


class FakeSite:
    """A folder of fake installed distributions, on ``sys.path`` while it is active."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)
        self.modules: set[str] = set()

    def add(
        self,
        name: str,
        entry_points: Mapping[str, str],
        files: Mapping[str, str] | None = None,
        *,
        version: str = "1.0",
    ) -> Path:
        """Install a fake distribution (see :func:`write_distribution`)."""
        for relative in files or {}:
            self.modules.add(Path(relative).parts[0].removesuffix(".py"))
        return write_distribution(self.path, name, entry_points, files, version=version)

    def env(self, **overrides: str) -> dict[str, str]:
        """``os.environ`` with this site first on ``PYTHONPATH`` (for subprocesses)."""
        env = dict(os.environ)
        parts = [str(self.path), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
        env.update(overrides)
        return env

    def forget_modules(self) -> None:
        """Drop this site's modules from ``sys.modules`` (so the next test imports afresh)."""
        for name in list(sys.modules):
            if name.split(".")[0] in self.modules:
                del sys.modules[name]
