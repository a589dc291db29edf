"""Numpy post-processing of graph outputs shared by the runtime (cascade, detectors, predict) and
the threshold calibration that must compute the same numbers."""

from __future__ import annotations

import numpy as np

from ...artifact import EXIT_CONFIDENCE_MARGIN, EXIT_CONFIDENCE_MAX, RejectRule
from ...errors import DataError

EPS = 1e-3  # log(v + EPS): v sums to N, so a silent branch sits near log(EPS) instead of -inf


def softmax(z: np.ndarray, axis: int = 1) -> np.ndarray:
    """Numerically stable softmax along `axis` (the max is subtracted before exp)."""
    e = np.exp(z - z.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def exit_confidence(scores: np.ndarray, rule: str = EXIT_CONFIDENCE_MAX) -> np.ndarray:
    """(B, K) exit scores -> (B,) confidence in the scores' dtype (the cascade and the calibration
    compare thresholds in it, so both must compute it here).

    "max": the top score (docs/method.md section 6). "margin": top minus runner-up; a sample torn between two
    classes stays in the cascade even when its top score is high. Which one saves more depends on
    the model (benchmarks/results/exit_guard.md), so calibrate measures both and keeps the better
    one on the calibration half."""
    s = np.asarray(scores)
    if rule == EXIT_CONFIDENCE_MAX:
        return s.max(1)
    if rule == EXIT_CONFIDENCE_MARGIN:
        if s.shape[1] < 2:
            return s.max(1)
        top2 = np.partition(s, s.shape[1] - 2, axis=1)[:, -2:]
        return (top2[:, 1] - top2[:, 0]).astype(s.dtype, copy=False)
    raise ValueError(f"unknown exit confidence {rule!r}; use 'max' or 'margin'")


def reject_features(energies: np.ndarray, eps: float) -> np.ndarray:
    """log(energies + eps), the learned reject rule's features (fitted in thresholds/reject_logistic)."""
    e = np.asarray(energies, np.float64)
    if e.ndim != 2:
        raise DataError(f"reject rule: energies must be (samples, branches), got shape {e.shape}")
    return np.log(np.clip(e, 0.0, None) + eps)


def reject_score(rule: RejectRule, energies: np.ndarray) -> np.ndarray:
    """(n,) learned reject score of (n, N) energies; higher means more likely a negative."""
    X = reject_features(energies, rule.eps)
    if X.shape[1] != len(rule.weights):
        raise DataError(
            f"reject rule has {len(rule.weights)} weights but the graph outputs {X.shape[1]} energies; "
            "re-run `codedresnext calibrate` on this export"
        )
    return (X @ np.asarray(rule.weights) + rule.bias).astype(np.float64)
