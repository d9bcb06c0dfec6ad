"""lepton-tabular passes the conformance suite, as any third-party plugin would."""

from lepton_platform.testing import PluginConformance


class TestTabularConformance(PluginConformance):
    distribution = "lepton-tabular"
