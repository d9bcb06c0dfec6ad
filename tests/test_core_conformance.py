"""The core's built-in plugin passes the same conformance suite as any plugin."""

from typing import Any

from lepton_platform.specs import StrategySpec
from lepton_platform.testing import PluginConformance


class TestCoreConformance(PluginConformance):
    distribution = "lepton-platform"

    def strategy_job(self, spec: StrategySpec) -> Any:
        """MixStyle mixes convolutional feature maps: the kit's tiny conv model for it."""
        if spec.name == "mixstyle":
            from lepton_platform.testing.tiny import tiny_conv_job

            return tiny_conv_job(epochs=3)
        return super().strategy_job(spec)
