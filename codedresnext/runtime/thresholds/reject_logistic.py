"""A learned early-reject score: per class and reject block, a logistic regression on the log of the
normalised energies of every branch there (numpy; no torch).

Why: the codeword distance ||v - w_k|| weighs every branch alike, yet some branches say more about
class k than others, and log energies separate "this branch is silent" from "this branch is weak".
A linear score on log(v + eps) reads the same N energies the distance does (same graph, same
FLOPs; part A outputs them as "reject_energies"), so only the weights are new. They are fitted on
images that are NOT the calibration half (by default a seeded sample of the training split): the
reject threshold is then set on the calibration half's positives as for the distance, so the recall
budget is still checked on images the rule never saw. On the demo model it stops more negatives than
the distance at the same recall budget (benchmarks/results/reject_rule.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...artifact import RejectRule
from ...errors import DataError
from ..api.postprocess import EPS, reject_features

L2 = 1e-3  # ridge on the standardised weights: keeps a separable class finite
NEWTON_STEPS = 30


def fit_reject_rule(
    energies: np.ndarray, positive: np.ndarray, *, eps: float = EPS, fitted_on: str | None = None
) -> RejectRule:
    """Logistic regression "is a negative" on log(energies + eps), classes weighted to balance.

    energies: (n, N) normalised energies at the reject block on class k's path; positive: (n,) bool.
    """
    X = reject_features(energies, eps)
    pos = np.asarray(positive, bool).reshape(-1)
    if len(pos) != len(X):
        raise DataError(f"reject rule: {len(X)} energy rows but {len(pos)} labels")
    if pos.all() or not pos.any():
        raise DataError("reject rule: the fitting images need both positives and negatives of the class")
    t = (~pos).astype(np.float64)  # target: negative
    mu, sd = X.mean(0), np.maximum(X.std(0), 1e-3)  # a near-constant log energy gets no huge weight
    Z = np.c_[(X - mu) / sd, np.ones(len(X))]
    sw = np.where(t > 0, 0.5 / t.mean(), 0.5 / (1.0 - t.mean())) / len(t)  # balanced, mean-normalised
    ridge = L2 * np.eye(Z.shape[1])
    ridge[-1, -1] = 0.0  # no penalty on the bias
    w = np.zeros(Z.shape[1])
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-np.clip(Z @ w, -50, 50)))
        grad = Z.T @ (sw * (p - t)) + ridge @ w
        hess = (Z * (sw * p * (1.0 - p))[:, None]).T @ Z + ridge
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    coef = w[:-1] / sd  # fold the standardisation into the rule
    bias = w[-1] - float(np.sum(coef * mu))
    return RejectRule(weights=coef.tolist(), bias=float(bias), eps=eps, fitted_on=fitted_on)


def fit_class_rule(energies: np.ndarray, fit: Any, cls: str, description: str | None) -> RejectRule:
    """fit_reject_rule for class `cls` of the labelled fitting images `fit` (an ArrayDataset)."""
    names = list(fit.class_names)
    if cls not in names:
        raise DataError(f"class {cls!r} is not among the fitting images' classes {names[:10]}...")
    try:
        return fit_reject_rule(energies, np.asarray(fit.labels) == names.index(cls), fitted_on=description)
    except DataError as e:
        raise DataError(
            f"learned reject rule for {cls!r}: {e} ({len(fit.labels)} fitting images); raise "
            "reject_fit_images or pass reject_rule='distance' (calibrate_directory)"
        ) from e
