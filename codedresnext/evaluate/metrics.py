"""Binary-detector metrics in pure numpy (no sklearn): F1-optimal threshold, P/R/F1, ROC-AUC.

Decision rule everywhere: a sample is called positive when its logit is strictly above the
threshold (METHOD.md section 5), so a threshold between two distinct scores is unambiguous.
"""

from __future__ import annotations

import numpy as np

from ..thresholds import f1_optimal_threshold  # the one implementation (tie rule documented there)

__all__ = ["binary_report", "f1_optimal_threshold", "precision_recall_f1", "roc_auc"]


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinity")
    return s, y


def precision_recall_f1(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall and F1 of `score > threshold`; 0.0 where a ratio is undefined (0/0)."""
    s, y = _check(scores, labels)
    pred = s > threshold
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    fn = int(np.sum(~pred & y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve = P(score_pos > score_neg) + 0.5 P(tie) (Mann-Whitney U).

    NaN when either class is absent.
    """
    s, y = _check(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts  # 0-based first rank of each distinct value
    avg_rank = starts + (counts + 1) / 2.0  # 1-based average rank of tied values
    rank_sum = float(avg_rank[inverse][y].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def binary_report(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """precision, recall, f1, auc and the counts, for one detector on one labelled set."""
    _, y = _check(scores, labels)
    out = precision_recall_f1(scores, labels, threshold)
    out["auc"] = roc_auc(scores, labels)
    out["positives"] = int(y.sum())
    out["negatives"] = int((~y).sum())
    return out
