"""Transferability scores: how well frozen features (or a source model's predictions) suit a
labelled target task, computed without training anything on it. Higher is better for all.

- :func:`logme`: the log marginal evidence of a Bayesian linear model from the features to
  each one-hot label column, maximised over its two precisions (You et al. 2021, "LogME").
- :func:`leep`: the log expected empirical prediction of a source model's label distribution
  mapped to the target labels (Nguyen et al. 2020, "LEEP"); needs a source model with a head.
- :func:`h_score`: ``tr(cov(f)^-1 cov(E[f|y]))``, the share of feature variance the classes
  explain (Bao et al. 2019, "An information-theoretic approach to transferability").
"""

from __future__ import annotations

import math

import numpy as np

from lepton_platform.errors import DataError

__all__ = ["check_labels", "h_score", "leep", "logme"]


def check_labels(labels: np.ndarray, n_features_rows: int | None = None) -> np.ndarray:
    """Integer class labels ``(n,)`` with at least two classes, or a :class:`DataError`."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise DataError(f"ranking needs one class label per example, got labels of shape {y.shape}")
    if n_features_rows is not None and len(y) != n_features_rows:
        raise DataError(f"{len(y)} labels for {n_features_rows} feature rows")
    classes = np.unique(y)
    if len(classes) < 2:
        shown = "no examples" if len(classes) == 0 else f"only class {classes[0].item()!r}"
        raise DataError(
            f"ranking needs labelled data with at least two classes; the data have {shown}"
        )
    return y


def logme(
    features: np.ndarray, labels: np.ndarray, *, max_iter: int = 100, tol: float = 1e-5
) -> float:
    """LogME of ``features`` ``(n, d)`` for class ``labels`` ``(n,)``: the mean over classes of
    the maximised log evidence per example.

    For each one-hot column ``y`` the model is ``y = F w + noise`` with prior
    ``w ~ N(0, 1/alpha)`` and noise precision ``beta``; the evidence is maximised by the
    fixed-point updates ``alpha = gamma / |m|^2`` and ``beta = (n - gamma) / |F m - y|^2`` with
    ``gamma = sum beta s_i / (alpha + beta s_i)`` over the eigenvalues ``s_i`` of ``F^T F``
    (one SVD of ``F`` serves every class and every step).
    """
    f = np.asarray(features, dtype=np.float64)
    y = check_labels(labels, f.shape[0] if f.ndim == 2 else None)
    if f.ndim != 2 or f.shape[1] == 0:
        raise DataError(f"features must be a non-empty (n, d) array, got shape {f.shape}")
    if not np.isfinite(f).all():
        raise DataError("features contain NaN or infinite values")
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2  # eigenvalues of F^T F on its row space; the other d - k are zero
    evidences = []
    for cls in np.unique(y):
        target = (y == cls).astype(np.float64)
        z = u.T @ target
        z2 = z**2
        outside = max(float(target @ target - z2.sum()), 0.0)  # |y|^2 outside span(F)
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            denom = alpha + beta * sigma
            gamma = float((beta * sigma / denom).sum())
            m2 = float((beta**2 * sigma * z2 / denom**2).sum())
            res2 = float((alpha**2 * z2 / denom**2).sum()) + outside
            new_alpha = gamma / max(m2, 1e-12)
            new_beta = (n - gamma) / max(res2, 1e-12)
            done = abs(new_alpha - alpha) / alpha < tol and abs(new_beta - beta) / beta < tol
            alpha, beta = new_alpha, new_beta
            if done:
                break
        denom = alpha + beta * sigma
        m2 = float((beta**2 * sigma * z2 / denom**2).sum())
        res2 = float((alpha**2 * z2 / denom**2).sum()) + outside
        log_det = float(np.log(denom).sum()) + (d - len(sigma)) * math.log(alpha)
        evidence = (
            n / 2 * math.log(beta)
            + d / 2 * math.log(alpha)
            - n / 2 * math.log(2 * math.pi)
            - beta / 2 * res2
            - alpha / 2 * m2
            - log_det / 2
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP of a source model's predicted distributions ``(n, z)`` over its own labels for the
    target ``labels``: the mean log-likelihood of the "expected empirical predictor"
    ``p(y | x) = sum_z p(y | z) theta(x)_z`` with ``p(y | z)`` estimated on the same data."""
    theta = np.asarray(source_probs, dtype=np.float64)
    y = check_labels(labels, theta.shape[0] if theta.ndim == 2 else None)
    if theta.ndim != 2 or (theta < 0).any() or not np.allclose(theta.sum(axis=1), 1.0, atol=1e-4):
        raise DataError("source_probs must be (n, z) rows of probabilities that sum to 1")
    classes, index = np.unique(y, return_inverse=True)
    joint = np.zeros((len(classes), theta.shape[1]))
    np.add.at(joint, index, theta)
    joint /= len(y)
    conditional = joint / np.maximum(joint.sum(axis=0, keepdims=True), 1e-12)  # p(y | z)
    expected = (theta @ conditional.T)[np.arange(len(y)), index]
    return float(np.mean(np.log(np.maximum(expected, 1e-12))))


def h_score(features: np.ndarray, labels: np.ndarray, *, shrinkage: float = 1e-6) -> float:
    """H-score of ``features`` ``(n, d)`` for class ``labels``: ``tr(cov(f)^-1 cov(g))`` where
    ``g`` replaces each example by its class mean (a small ridge keeps ``cov(f)`` invertible)."""
    f = np.asarray(features, dtype=np.float64)
    y = check_labels(labels, f.shape[0] if f.ndim == 2 else None)
    if f.ndim != 2 or f.shape[1] == 0:
        raise DataError(f"features must be a non-empty (n, d) array, got shape {f.shape}")
    f = f - f.mean(axis=0)
    cov_f = f.T @ f / len(f)
    cov_f += shrinkage * max(float(np.trace(cov_f)) / f.shape[1], 1e-12) * np.eye(f.shape[1])
    g = np.zeros_like(f)
    for cls in np.unique(y):
        mask = y == cls
        g[mask] = f[mask].mean(axis=0)
    cov_g = g.T @ g / len(g)
    return float(np.trace(np.linalg.solve(cov_f, cov_g)))
