"""Transfer strategies: the contract (:class:`Strategy`, :class:`TransferJob`,
:class:`TransferOutcome`) and the built-in strategies, registered through the
``lepton_strategies`` hook like any plugin's."""

from lepton_platform.strategies.base import Strategy, TransferJob, TransferOutcome

__all__ = ["Strategy", "TransferJob", "TransferOutcome"]
