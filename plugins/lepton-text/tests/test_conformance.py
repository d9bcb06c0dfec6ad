"""The core's plugin-author kit, pointed at this distribution."""

from __future__ import annotations

from lepton_platform.testing import PluginConformance


class TestConformance(PluginConformance):
    distribution = "lepton-text"
