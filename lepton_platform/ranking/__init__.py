"""Transferability ranking: which backbone or source model suits the target data best,
estimated from frozen features, without fine-tuning any candidate (LogME, LEEP, H-score).

    >>> from lepton_platform.ranking import logme, rank                      # doctest: +SKIP

The scores (numpy only) import no torch; :func:`rank` imports it when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lepton_platform.ranking.scores import h_score, leep, logme

if TYPE_CHECKING:
    from lepton_platform.ranking.ranker import Candidate, Ranking, rank, rank_backbones

__all__ = ["Candidate", "Ranking", "h_score", "leep", "logme", "rank", "rank_backbones"]


def __getattr__(name: str) -> Any:
    if name in ("Candidate", "Ranking", "rank", "rank_backbones"):
        from lepton_platform.ranking import ranker as module

        return getattr(module, name)
    raise AttributeError(name)
