"""Hyper-parameter search on Optuna: a search space in the config, trials measured on the
validation split with pruning of weak ones, a study in a database that resumes (SQLite in the
run folder by default, any Optuna URL for many workers), and at the end the best config trained
and evaluated once on the test split, with a report.

    >>> from lepton_platform.api.tuning import tune                                 # doctest: +SKIP
    >>> result = tune("tabular.yaml", n_trials=20)                              # doctest: +SKIP

The search space and study helpers import no torch; :func:`tune` imports it when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lepton_platform.api.tuning.space import SearchSpace
from lepton_platform.api.tuning.study import config_fingerprint, default_storage, open_storage

if TYPE_CHECKING:
    from lepton_platform.api.tuning.search import TuneResult, tune

__all__ = [
    "SearchSpace",
    "TuneResult",
    "config_fingerprint",
    "default_storage",
    "open_storage",
    "tune",
]


def __getattr__(name: str) -> Any:
    if name in ("tune", "TuneResult"):
        from lepton_platform.api.tuning import search as module

        return getattr(module, name)
    raise AttributeError(name)
