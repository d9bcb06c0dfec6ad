"""The core's built-in plugin passes the same conformance suite as any plugin."""

from lepton_platform.testing import PluginConformance


class TestCoreConformance(PluginConformance):
    distribution = "lepton-platform"
