"""Binary-detector metrics in pure numpy (no sklearn): F1-optimal threshold, P/R/F1, ROC-AUC.

Decision rule everywhere: a sample is called positive when its logit is strictly above the
threshold (docs/method.md section 5), so a threshold between two distinct scores is unambiguous.
"""

from __future__ import annotations

import numpy as np

# the one implementation of each (tie rule documented there; the runtime reports them too)
from ..runtime.thresholds.detector import check_scores, f1_optimal_threshold, roc_auc, undefined_reason

__all__ = ["binary_report", "f1_optimal_threshold", "precision_recall_f1", "roc_auc", "undefined_reason"]


def precision_recall_f1(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall and F1 of `score > threshold`; 0.0 where a ratio is undefined (0/0)."""
    s, y = check_scores(scores, labels)
    pred = s > threshold
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    fn = int(np.sum(~pred & y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def binary_report(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """precision, recall, f1, auc and the counts, for one detector on one labelled set."""
    _, y = check_scores(scores, labels)
    out: dict = precision_recall_f1(scores, labels, threshold)
    reason = undefined_reason(y)
    out["auc"] = None if reason else roc_auc(scores, labels)
    if reason:
        out["auc_undefined"] = reason
    out["positives"] = int(y.sum())
    out["negatives"] = int((~y).sum())
    return out
