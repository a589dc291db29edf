"""Per-class binary detectors: threshold on training samples, metrics on test and OOD sets.

Input everywhere is a (M, K) matrix whose column k holds class k's detector logit (from the
masked PyTorch model or the exported class graph). For class k: positives are samples of class
k, negatives the other classes, sampled so that positives are `positive_fraction` of the set when
they would be fewer (CIFAR-100, docs/method.md section 5); the same rule picks the training negatives,
so the threshold is fitted under the class balance it is tested under. The OOD set is the test
positives plus every out-of-distribution image as a negative.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .metrics import binary_report, f1_optimal_threshold
from .sampling import negatives_for_ratio

SUMMARY_KEYS = ("precision", "recall", "f1", "auc")


def _split(labels: np.ndarray, k: int, fraction: float, seed: int) -> np.ndarray:
    pos = np.nonzero(labels == k)[0]
    return np.sort(
        np.concatenate([pos, negatives_for_ratio(labels, k, positive_fraction=fraction, seed=seed)])
    )


def detector_metrics(
    class_names: tuple[str, ...],
    train_logits: np.ndarray,
    train_labels: np.ndarray,
    test_logits: np.ndarray,
    test_labels: np.ndarray,
    ood_logits: np.ndarray | None = None,
    *,
    positive_fraction: float = 0.1,
    seed: int = 0,
) -> list[dict]:
    """One dict per class: threshold, train_f1, test precision/recall/f1/auc, ood_* when given."""
    rows = []
    for k, name in enumerate(class_names):
        if not np.any(train_labels == k):
            raise DataError(
                f"no training sample of class {name!r}, so its threshold cannot be fitted: "
                "raise --train-limit (or use data holding every class)"
            )
        tr = _split(train_labels, k, positive_fraction, seed)
        thr, train_f1 = f1_optimal_threshold(train_logits[tr, k], train_labels[tr] == k)
        te = _split(test_labels, k, positive_fraction, seed + 1)
        row = {"class": name, "index": k, "threshold": thr, "train_f1": train_f1}
        row.update(binary_report(test_logits[te, k], test_labels[te] == k, thr))
        if ood_logits is not None:
            pos = test_logits[test_labels == k, k]
            scores = np.concatenate([pos, ood_logits[:, k]])
            labels = np.r_[np.ones(len(pos), bool), np.zeros(len(ood_logits), bool)]
            ood = binary_report(scores, labels, thr)
            row.update({f"ood_{key}": ood[key] for key in (*SUMMARY_KEYS, "negatives")})
        rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict[str, float]:
    """binary_mean_{precision,recall,f1,auc} and ood_mean_* over the classes where each is defined."""
    out: dict = {}
    for key in SUMMARY_KEYS:
        out[f"binary_mean_{key}"] = _mean([r[key] for r in rows])
        if rows and f"ood_{key}" in rows[0]:
            out[f"ood_mean_{key}"] = _mean([r[f"ood_{key}"] for r in rows])
    return out


def _mean(values: list) -> float | None:
    """Mean over the classes where the figure is defined (None: undefined for every class)."""
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None
