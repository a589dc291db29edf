"""The held-out images thresholds are calibrated on, and the training sample the learned reject
rule is fitted on (docs/early-exit.md).

Held-out split: the data's *test* split, shuffled with a fixed seed and halved; the first half
("calibration") picks thresholds, the second ("evaluation") reports accuracy and compute. The
training split never sets a threshold (its confidences are optimistic); it only fits the learned
reject rule's weights (load_fit_sample), whose thresholds then come from the calibration half.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...data import load_dataset, load_npz_images
from ...errors import DataError
from .reject_search import REJECT_RULES


def no_fit(why: str) -> dict:
    """load_fit_sample's answer when the reject score is the codeword distance."""
    return {"dataset": None, "description": None, "why": why}


def heldout_split(n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return perm[: n // 2], perm[n // 2 :]


def load_heldout(data: str | os.PathLike, *, limit: int | None = None, seed: int = 0) -> dict:
    """Test split of `data` (.npz sample, folder or archive) halved into calibration/evaluation."""
    p = Path(data)
    ds = load_npz_images(p) if p.suffix == ".npz" else load_dataset(data, "test")
    cal, ev = heldout_split(len(ds), seed=seed)
    if limit:
        cal, ev = cal[:limit], ev[:limit]
    return {
        "calibration": ds.subset(cal),
        "evaluation": ds.subset(ev),
        "description": f"test split of {p.name}, permutation(seed={seed}) halves: calibration "
        f"{len(cal)}, evaluation {len(ev)} images",
    }


def load_fit_sample(data: str | os.PathLike, n: int, *, rule: str = "auto", seed: int = 0) -> dict:
    """Images the learned reject rule is fitted on: a seeded random sample of DATA's TRAINING
    split (never the test halves the thresholds are set and reported on).

    rule "distance": none; "learned": DataError when DATA has no training split; "auto": learned
    when it has one, else the distance (the reason is returned and reported)."""
    if rule not in (*REJECT_RULES, "auto"):
        raise DataError(f"reject rule must be auto, {' or '.join(REJECT_RULES)}, not {rule!r}")
    if rule == "distance":
        return no_fit("reject_rule='distance'")
    if n < 1:
        raise DataError(f"reject_fit_images must be positive, not {n}")
    p = Path(data)
    try:
        if p.suffix == ".npz":
            raise DataError(f"{p.name} is a test-only sample (.npz) with no training split")
        ds = load_dataset(data, "train")
    except DataError as e:
        if rule == "learned":
            raise DataError(
                f"the learned reject rule fits on the training split of --data: {e}. Pass data with a "
                "training split (a CIFAR root, an ImageFolder tree or its archive) or "
                "reject_rule='distance' (calibrate_directory)"
            ) from e
        return no_fit(f"no training split to fit on ({e})")
    idx = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n])
    return {
        "dataset": ds.subset(idx),
        "description": f"training split of {p.name}: {len(idx)} images, random sample (seed {seed})",
        "why": None,
    }
