"""The core's conformance suite on every spec the image plugin registers (tiny backbones)."""

from __future__ import annotations

from lepton_platform.testing import PluginConformance


class TestImageConformance(PluginConformance):
    distribution = "lepton-image"
