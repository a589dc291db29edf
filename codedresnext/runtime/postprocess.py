"""Numpy post-processing of graph outputs shared by the runtime (cascade, predict)."""

from __future__ import annotations

import numpy as np


def softmax(z: np.ndarray, axis: int = 1) -> np.ndarray:
    """Numerically stable softmax along `axis` (the max is subtracted before exp)."""
    e = np.exp(z - z.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)
