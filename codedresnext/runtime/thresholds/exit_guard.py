"""Guards against over-fitting the calibration half: the early-exit thresholds are fitted to a
sample, and fitted exactly they tend to overshoot the accuracy budget on new images. Two guards:
a margin of standard errors (`search_with_margin`) and cross-validation of the price of accuracy
on the Lagrangian frontier (`search_cross_validated`, the default). numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .exit_search import (
    NEVER,
    ExitOutcomes,
    greedy_search,
    joint_search,
    lagrangian_frontier,
    min_correct_for,
    summarise,
)

# The `se` guard's margin in standard errors of the calibration loss. Thresholds fitted exactly to
# the calibration half over-shoot the budget on new data; a margin shrinks that but not enough on
# every model, so the default guard is cross-validation of the frontier's price
# (search_cross_validated). Measurements: benchmarks/results/exit_guard.md, History.
DEFAULT_MARGIN_SE = 2.0
GUARDS = ("cv", "se", "none")


def loss_standard_error(o: ExitOutcomes, th: Sequence[float]) -> float:
    """Standard error (points) of the accuracy loss measured on `o`'s samples: each sample adds
    final-correct minus cascade-correct (-1, 0 or 1); the loss is their mean."""
    e = o.exit_index(th)
    d = o.correct[:, o.m].astype(np.float64) - o.correct[np.arange(o.n), e]
    return 100.0 * float(d.std(ddof=1)) / np.sqrt(o.n) if o.n > 1 else 0.0


def search_with_margin(
    o: ExitOutcomes,
    max_accuracy_loss: float,
    *,
    z: float = 1.0,
    step: float = 0.05,
    frontiers: dict | None = None,
) -> dict:
    """joint_search at the largest budget b' <= max_accuracy_loss (steps of `step`) whose measured
    loss plus z standard errors stays within max_accuracy_loss: the calibration half is a sample,
    and thresholds fitted to it exactly tend to overshoot the budget on new data. z = 0: plain."""
    frontiers = {} if frontiers is None else frontiers
    b = float(max_accuracy_loss)
    while True:
        res = joint_search(o, b, frontiers=frontiers)
        loss = summarise(o, res["thresholds"])["accuracy_loss_points"]
        se = loss_standard_error(o, res["thresholds"])
        if loss + z * se <= max_accuracy_loss + 1e-9 or b <= 0:
            return {**res, "searched_budget": b, "loss_standard_error": se, "z": z}
        b = max(0.0, round(b - step, 10))


def tradeoff_curve(
    cal: ExitOutcomes, ev: ExitOutcomes | None, budgets: Sequence[float], *, z: float = 0.0
) -> list[dict]:
    """Compute saved vs accuracy loss: the search (margin z standard errors) at each budget on
    `cal`, scored on both halves."""
    frontiers: dict = {}
    points = []
    for b in budgets:
        th = search_with_margin(cal, b, z=z, frontiers=frontiers)["thresholds"]
        p = {"max_accuracy_loss": float(b), "thresholds": th, "calibration": summarise(cal, th)}
        if ev is not None:
            p["evaluation"] = summarise(ev, th)
        points.append(p)
    return points


def subset(o: ExitOutcomes, idx: np.ndarray) -> ExitOutcomes:
    """The same cascade on a subset of the samples (the grid, if any, is kept)."""
    return replace(o, conf=o.conf[idx], correct=o.correct[idx])


def without_exit_credit(o: ExitOutcomes) -> ExitOutcomes:
    """The same cascade where an exit counts as right only where the final classifier is right too.

    Fitted to calibration samples, the search buys "gains" where an exit happens to fix the final
    classifier's mistakes; on new samples those mostly do not repeat (at high prices such thresholds
    lost accuracy on held-out folds). Without the credit the fitted cascade can only lose accuracy,
    and its thresholds carry over."""
    c = o.correct.copy()
    c[:, : o.m] &= c[:, o.m : o.m + 1]
    return replace(o, correct=c)


# Prices of the cv guard, descending: lambda in FLOPs/full + lambda * errors/n (lagrangian_frontier).
# lambda = 6 values one point of accuracy at 6% of the compute; 1000+ opens an exit only where it
# costs no accuracy on the calibration samples. 80 steps, each price 1.11x the next.
PRICES = tuple(float(v) for v in np.geomspace(3000.0, 1.0, 80))
# Folds of the cv guard: 3, 5 and 10 folds saved about the same compute on the demo model over
# benchmarks/exit_guard.py's 20 halvings, 10 with the least loss on new data (figures:
# benchmarks/results/exit_guard.md, History).
CV_FOLDS = 10


def search_cross_validated(
    o: ExitOutcomes,
    max_accuracy_loss: float,
    *,
    folds: int = CV_FOLDS,
    prices: Sequence[float] = PRICES,
    seed: int = 0,
) -> dict:
    """Thresholds on the Lagrangian frontier at the lowest price of accuracy whose thresholds, fitted
    on all but one fold and scored on the held-out fold, lose at most `max_accuracy_loss` points on
    average (and on the calibration samples themselves).

    Why one price and not a budget per search: the price is a single number that always has an
    answer (a budget below zero may have none), the frontier moves smoothly with it, and the fits
    carry no credit for exits that beat the final classifier (`without_exit_credit`). Prices are
    tried from the highest down and the search stops at the first that breaks the budget; if the
    highest already does, no exit is taken."""
    prices = sorted((float(p) for p in prices), reverse=True)
    perm = np.random.default_rng(seed).permutation(o.n)
    parts = np.array_split(perm, folds)
    held = np.zeros((folds, len(prices)))
    for i in range(folds):
        fit = subset(o, np.concatenate(parts[:i] + parts[i + 1 :]))
        test = subset(o, parts[i])
        frontier = lagrangian_frontier(without_exit_credit(fit), prices)
        held[i] = [summarise(test, th)["accuracy_loss_points"] for th in frontier]
    frontier = lagrangian_frontier(without_exit_credit(o), prices)
    own = np.array([summarise(o, th)["accuracy_loss_points"] for th in frontier])
    held_mean = held.mean(0)
    ok = (held_mean <= max_accuracy_loss + 1e-9) & (own <= max_accuracy_loss + 1e-9)
    k = int(np.argmin(ok)) - 1 if not ok.all() else len(prices) - 1  # last of the leading run
    trace = [
        {"price": p, "held_out_loss": float(h), "calibration_loss": float(c)}
        for p, h, c in zip(prices[: k + 2], held_mean, own)
    ]
    if k < 0:
        return {
            "thresholds": [NEVER] * o.m,
            "method": "no exit: even the highest price broke the accuracy budget in cross-validation",
            "searched_budget": None,
            "price": None,
            "cross_validation": trace,
        }
    return {
        "thresholds": frontier[k],
        "method": f"joint (Lagrangian frontier at price {prices[k]:.3g}, chosen by {folds}-fold "
        "cross-validation)",
        "searched_budget": float(own[k]),  # the calibration loss the guard settled on
        "price": prices[k],
        "cross_validation": trace,
    }


def guarded_search(
    grid: ExitOutcomes,
    budget: float,
    *,
    search: str = "joint",
    guard: str = "cv",
    margin_se: float = DEFAULT_MARGIN_SE,
) -> dict:
    """{"thresholds", "method", ...}: the joint search under `guard` ("cv": cross-validated price,
    "se": `margin_se` standard errors, "none": fitted exactly), or the greedy baseline."""
    if search == "greedy":
        th = greedy_search(grid, min_correct_for(grid, budget))
        return {"method": "greedy (one exit at a time)", "greedy_thresholds": th, "thresholds": th}
    if search == "joint" and guard in GUARDS:
        if guard == "cv":
            return search_cross_validated(grid, budget)
        return search_with_margin(grid, budget, z=margin_se if guard == "se" else 0.0)
    raise ValueError(f"unknown search {search!r} / guard {guard!r}; use joint|greedy and {GUARDS}")
