"""Seeded sample selection: stratified subsets and the 10%-positives negative sampling.

docs/method.md section 5: with many classes (CIFAR-100) a class's test positives are 1% of the set,
so negatives are sampled until positives make up `positive_fraction` (10%). With 10 classes the
positives already are 10% and every negative is used.
"""

from __future__ import annotations

import numpy as np


def stratified_subset(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Sorted indices of about `n` samples with the class proportions of `labels` (all if None)."""
    labels = np.asarray(labels)
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    if n <= 0:
        raise ValueError("subset size must be positive")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / len(labels)
    take = np.floor(quota).astype(int)
    rest = n - int(take.sum())  # largest remainders get one more
    take[np.argsort(-(quota - take), kind="stable")[:rest]] += 1
    idx = [rng.permutation(np.nonzero(labels == c)[0])[:t] for c, t in zip(classes, take)]
    return np.sort(np.concatenate(idx))


def negatives_for_ratio(
    labels: np.ndarray, k: int, *, positive_fraction: float = 0.1, seed: int = 0
) -> np.ndarray:
    """Sorted indices of the negatives (label != k) to pair with all positives of class k.

    If positives are already at least `positive_fraction` of the set, all negatives are used;
    otherwise round(P * (1 - f) / f) of them are drawn without replacement, seeded by (seed, k).
    """
    if not 0 < positive_fraction < 1:
        raise ValueError("positive_fraction must lie in (0, 1)")
    labels = np.asarray(labels)
    neg = np.nonzero(labels != k)[0]
    n_pos = len(labels) - len(neg)
    if n_pos >= positive_fraction * len(labels):
        return neg
    want = min(len(neg), int(round(n_pos * (1 - positive_fraction) / positive_fraction)))
    rng = np.random.default_rng([seed, k])
    return np.sort(rng.choice(neg, size=want, replace=False))
