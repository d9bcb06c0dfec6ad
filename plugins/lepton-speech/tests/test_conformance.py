"""The core's conformance suite run on this plugin, as any third-party plugin would run it."""

from __future__ import annotations

from lepton_platform.testing import PluginConformance


class TestConformance(PluginConformance):
    distribution = "lepton-speech"
