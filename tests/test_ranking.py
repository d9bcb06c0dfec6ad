"""Transferability scores on data where the answer is known, and the ranking of a real trained
source model against an untrained backbone on a tabular problem written here."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lepton_platform.engine.transferability import h_score, leep, logme
from lepton_platform.errors import DataError
from tests._tuning_helpers import write_csv


def _problem(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    informative = np.hstack([3 * np.eye(3)[y] + rng.normal(size=(n, 3)), rng.normal(size=(n, 5))])
    noise = rng.normal(size=(n, 8))
    return informative, noise, y


def test_logme_prefers_features_that_carry_the_labels() -> None:
    informative, noise, y = _problem()
    assert logme(informative, y) > logme(noise, y) + 0.3
    half = informative.copy()
    half[:, :3] = np.random.default_rng(1).normal(size=(len(y), 3)) + 1.5 * np.eye(3)[y]
    assert logme(informative, y) > logme(half, y) > logme(noise, y)


def test_logme_is_the_maximised_gaussian_evidence() -> None:
    """Against the direct log N(y; 0, I/beta + F F^T/alpha) on a grid of precisions."""
    rng = np.random.default_rng(0)
    n, d = 40, 3
    f = rng.normal(size=(n, d))
    y = (f[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)

    def evidence(target: np.ndarray, alpha: float, beta: float) -> float:
        cov = np.eye(n) / beta + f @ f.T / alpha
        _sign, logdet = np.linalg.slogdet(cov)
        return float(
            -0.5 * (n * math.log(2 * math.pi) + logdet + target @ np.linalg.solve(cov, target))
        )

    grid = np.exp(np.linspace(-4, 4, 81))
    best = [
        max(evidence((y == c).astype(float), a, b) for a in grid for b in grid) / n for c in (0, 1)
    ]
    assert logme(f, y) == pytest.approx(np.mean(best), abs=2e-3)
    assert logme(f, y) >= np.mean(best) - 1e-6


def test_leep_and_h_score_order() -> None:
    informative, noise, y = _problem()
    assert h_score(informative, y) > 10 * h_score(noise, y)
    sure = 0.8 * np.eye(3)[y] + 0.2 / 3
    assert leep(sure, y) > leep(np.full((len(y), 3), 1 / 3), y)
    prior = np.bincount(y) / len(y)  # an uninformative source: LEEP is minus the label entropy
    assert leep(np.full((len(y), 3), 1 / 3), y) == pytest.approx(float(prior @ np.log(prior)))


def test_one_class_is_refused() -> None:
    with pytest.raises(DataError, match=r"(?s)at least two classes.*only class 0"):
        logme(np.ones((5, 2)), np.zeros(5, int))


def test_rank_a_source_model_against_an_untrained_backbone(tmp_path: Path) -> None:
    from lepton_platform.api.rank import rank
    from lepton_platform.api.transfer import transfer

    data = write_csv(tmp_path, rows=150)
    transfer(
        domain="tabular",
        data=[{"path": str(data)}],
        backbone="mlp",
        backbone_options={"num_features": 3, "hidden": [8]},
        train={"epochs": 8, "lr": 0.05, "batch_size": 16, "progress": False},
        output_dir=tmp_path / "source",
        bootstrap=0,
    )
    ranking = rank(
        domain="tabular",
        data=[{"path": str(data)}],
        candidates=[
            {"name": "mlp", "options": {"num_features": 3, "hidden": [8]}, "label": "random"},
            {"model": str(tmp_path / "source" / "model"), "label": "trained"},
        ],
    )
    assert ranking.order == ["trained", "random"]
    rows = {r["candidate"]: r for r in ranking.rows}
    assert rows["trained"]["leep"] is not None and rows["random"]["leep"] is None
    assert rows["trained"]["logme"] > rows["random"]["logme"]
    assert ranking.classes == 3 and "| 1 | trained |" in ranking.to_markdown()


def test_rank_refuses_one_class_before_any_extraction(tmp_path: Path) -> None:
    from lepton_platform.api.rank import rank

    data = write_csv(tmp_path, rows=30, classes=1)
    with pytest.raises(DataError, match="two classes"):
        rank(
            domain="tabular",
            data=[{"path": str(data)}],
            split={"validation": 0.2, "test": 0.2},
            candidates=[{"name": "mlp", "options": {"num_features": 3}}],
        )
