"""The pytest plugin of ``lepton_platform.testing`` (entry point ``pytest11``).

- ``lepton_host``: a fresh plugin host that discovers no installed plugins (the built-ins are
  there), installed as the process-wide host for one test and restored afterwards. Register the
  plugin under test with ``lepton_host.register(module, name=...)``.
- ``lepton_fake_site``: a folder of real (fake) installed distributions on ``sys.path``, for
  testing discovery and broken plugins without mocks.
- ``lepton_cache``: a Lepton cache of the test's own (``LEPTON_CACHE_DIR`` in ``tmp_path``), so
  that prepared data, features and speed probes of one test never reach another.
- Parametrises every :class:`~lepton_platform.testing.PluginConformance` subclass over the
  specs its plugin registers, one test per spec, with the spec's name as the test id; checks of
  a kind the plugin does not provide are deselected.

Loaded in every pytest session where ``lepton-platform`` is installed, so it imports nothing
heavy.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from lepton_platform._host import PluginHost, set_host
from lepton_platform.testing.conformance import SPEC_FIXTURES, PluginConformance
from lepton_platform.testing.distributions import FakeSite

#: Stands in for the spec of a kind the plugin does not provide; such tests are deselected.
NOT_PROVIDED = object()


def isolated_host() -> PluginHost:
    """A host that discovers no installed plugin, with the core's built-ins registered."""
    from lepton_platform import _builtin
    from lepton_platform._host import CORE_DISTRIBUTION
    from lepton_platform._version import __version__

    host = PluginHost(discover=False, environ={}, strict=False)
    host.register(
        _builtin, CORE_DISTRIBUTION, distribution=CORE_DISTRIBUTION, version=__version__,
        builtin=True,
    )  # fmt: skip
    return host


@pytest.fixture
def lepton_host() -> Iterator[PluginHost]:
    """A fresh isolated plugin host (built-ins only), the process-wide host for this test."""
    host = isolated_host()
    old = set_host(host)
    try:
        yield host.load()
    finally:
        set_host(old)


@pytest.fixture
def lepton_fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSite]:
    """A folder of fake installed distributions on ``sys.path`` for one test (see
    :class:`~lepton_platform.testing.distributions.FakeSite`); its modules are forgotten after."""
    site = FakeSite(tmp_path / "site-packages")
    monkeypatch.syspath_prepend(str(site.path))
    try:
        yield site
    finally:
        site.forget_modules()
        importlib.invalidate_caches()


@pytest.fixture
def lepton_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``LEPTON_CACHE_DIR`` set to a folder of this test's own for the test; returns it."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("LEPTON_CACHE_DIR", str(folder))
    return folder


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per spec of the plugin a :class:`PluginConformance` subclass points at."""
    cls = metafunc.cls
    if cls is None or not issubclass(cls, PluginConformance):
        return
    for argname, kind in SPEC_FIXTURES.items():
        if argname not in metafunc.fixturenames:
            continue
        specs = cls.conformance_specs(kind)
        if specs:
            ids = [spec.name if kind != "any" else f"{spec.kind}:{spec.name}" for spec in specs]
            metafunc.parametrize(argname, specs, ids=ids)
        else:  # nothing of this kind: the test is deselected, not skipped
            metafunc.parametrize(argname, [NOT_PROVIDED], ids=["none"])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop conformance tests of kinds the plugin under test does not provide."""
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        if any(params.get(name) is NOT_PROVIDED for name in SPEC_FIXTURES):
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
