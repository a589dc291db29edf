"""Mean normalised branch energy per class against the codewords (branch specialisation)."""

from __future__ import annotations

import numpy as np


def mean_energy_per_class(energies: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(M, N) normalised energies -> (K, N) class means (NaN rows for absent classes)."""
    out = np.full((num_classes, energies.shape[1]), np.nan)
    for k in range(num_classes):
        sel = labels == k
        if sel.any():
            out[k] = energies[sel].mean(0)
    return out


def codeword_agreement(mean_energy: np.ndarray, codewords: np.ndarray) -> float:
    """Fraction of classes whose N_act highest mean energies are exactly their codeword's ones."""
    codewords = np.asarray(codewords).astype(bool)
    n_act = int(codewords[0].sum())
    hits = []
    for e, w in zip(mean_energy, codewords):
        if np.all(np.isnan(e)):
            continue
        top = np.zeros_like(w)
        top[np.argsort(-e, kind="stable")[:n_act]] = True
        hits.append(bool(np.array_equal(top, w)))
    return float(np.mean(hits)) if hits else float("nan")
