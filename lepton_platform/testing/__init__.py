"""The plugin author's kit: a pytest plugin and a conformance suite.

Installing ``lepton-platform`` registers :mod:`lepton_platform.testing.plugin` with pytest, which
gives every test session the ``lepton_host`` fixture (a fresh, isolated plugin host) and runs
the conformance suite on any class that subclasses :class:`PluginConformance`::

    from lepton_platform.testing import PluginConformance

    class TestTabularConformance(PluginConformance):
        distribution = "lepton-tabular"

This module imports no torch; the checks import it when they run.
"""

from __future__ import annotations

from lepton_platform.testing.conformance import SPEC_FIXTURES, PluginConformance
from lepton_platform.testing.distributions import FakeSite, write_distribution

__all__ = ["SPEC_FIXTURES", "FakeSite", "PluginConformance", "write_distribution"]
