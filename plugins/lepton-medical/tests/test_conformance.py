"""The core's conformance suite on every spec the medical plugin registers."""

from __future__ import annotations

from lepton_platform.testing import PluginConformance


class TestConformance(PluginConformance):
    distribution = "lepton-medical"
