"""Joint search of early-exit thresholds: the least compute within an accuracy budget (numpy only).

Every sample's outcome is fixed by the thresholds: it leaves at the first exit j whose confidence is
above t_j (prediction = that exit's argmax, cost = FLOPs of the segments up to j), else runs to the
end. `ExitOutcomes` holds, per sample, each exit's confidence and correctness, so any threshold
vector is scored without running a graph.

Why not the one-exit-at-a-time greedy (`greedy_search`, kept as the baseline): it hands the whole
budget to the first exit, whose errors buy little compute when its decoder is weak, and it stops
lowering a threshold at the first confident mistake. The joint search instead
  1. traces a Lagrangian frontier: for a grid of prices lambda, coordinate descent minimises
     FLOPs/full + lambda * errors/n, each coordinate solved exactly over every distinct confidence;
  2. starts constrained coordinate ascent (each exit's threshold in turn set to the one giving the
     least compute with the others fixed, accuracy kept within the budget) from the greedy result,
     from "no exit" and from the best feasible frontier point, and keeps the cheapest result.
Step 2 never raises compute, so the result is at most the greedy baseline's compute (same budget).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..api.postprocess import exit_confidence

NEVER = float("inf")


@dataclass(frozen=True)
class ExitOutcomes:
    """Per-sample facts of a cascade with m exits (n samples)."""

    conf: np.ndarray  # (n, m): each exit's confidence (postprocess.exit_confidence), in the scores' dtype
    correct: np.ndarray  # (n, m + 1) bool: exit j's prediction right; column m = final classifier
    ends: np.ndarray  # (m + 1,) FLOPs spent by a sample that leaves at exit j (m: ran to the end)
    grid: tuple[np.ndarray, ...] | None = None  # per exit: the thresholds allowed (None: every value)

    @classmethod
    def from_outputs(
        cls,
        exit_scores: Sequence[np.ndarray],
        logits: np.ndarray,
        labels: np.ndarray,
        seg_flops: Sequence[float],
        exit_segments: Sequence[int],
        *,
        confidence: str = "max",
    ) -> ExitOutcomes:
        labels = np.asarray(labels)
        n = len(labels)
        conf = [exit_confidence(s, confidence) for s in exit_scores]
        conf = np.stack(conf, 1) if exit_scores else np.zeros((n, 0))
        right = [np.asarray(s).argmax(1) == labels for s in exit_scores] + [logits.argmax(1) == labels]
        cum = np.cumsum(np.asarray(seg_flops, np.float64))
        ends = np.array([cum[i] for i in exit_segments] + [cum[-1]], np.float64)
        return cls(
            conf, np.stack(right, 1), ends
        )  # conf keeps the scores' dtype (the cascade compares in it)

    def with_grid(self, candidates: int | None) -> ExitOutcomes:
        """Thresholds restricted to `candidates` quantiles of each exit's confidence (None: any)."""
        if not candidates:
            return replace(self, grid=None)
        q = np.linspace(0, 1, candidates)
        grid = tuple(
            np.unique(np.quantile(self.conf[:, j], q).astype(self.conf.dtype)) for j in range(self.m)
        )
        return replace(self, grid=grid)

    @property
    def n(self) -> int:
        return self.correct.shape[0]

    @property
    def m(self) -> int:
        return self.conf.shape[1]

    def exit_index(self, thresholds: Sequence[float]) -> np.ndarray:
        """(n,) first exit whose confidence is above its threshold, m where none is."""
        if self.m == 0:
            return np.zeros(self.n, np.int64)
        stop = self.conf > np.asarray(thresholds, np.float64)[None, :]
        idx = np.where(stop.any(1), stop.argmax(1), self.m)
        return idx.astype(np.int64)

    def score(self, thresholds: Sequence[float]) -> tuple[int, float]:
        """(number of correct predictions, total FLOPs) of the cascade at these thresholds."""
        e = self.exit_index(thresholds)
        return int(self.correct[np.arange(self.n), e].sum()), float(self.ends[e].sum())

    def full_correct(self) -> int:
        return int(self.correct[:, self.m].sum())


def min_correct_for(o: ExitOutcomes, max_accuracy_loss: float) -> int:
    """Fewest correct predictions allowed: accuracy >= full accuracy - budget (points)."""
    return int(np.ceil(o.full_correct() - max_accuracy_loss / 100.0 * o.n - 1e-9))


def _coordinate(
    o: ExitOutcomes, th: list[float], j: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, float]:
    """Exact 1-D view of exit j with the other thresholds fixed.

    Returns (sorted confidences of the samples that reach j, d_correct[k], d_flops[k], base correct,
    base FLOPs): leaving the k most confident of them at j changes correct/FLOPs by d_*[k]
    (k = 0 .. len, both arrays start at 0) relative to exit j never taking anyone."""
    rest = list(th)
    rest[j] = NEVER
    e = o.exit_index(rest)
    base_c = int(o.correct[np.arange(o.n), e].sum())
    base_f = float(o.ends[e].sum())
    reach = np.flatnonzero(e > j)
    order = reach[np.argsort(-o.conf[reach, j], kind="stable")]
    c = o.conf[order, j]
    dc = o.correct[order, j].astype(np.int64) - o.correct[order, e[order]].astype(np.int64)
    df = o.ends[j] - o.ends[e[order]]
    return c, np.concatenate([[0], np.cumsum(dc)]), np.concatenate([[0.0], np.cumsum(df)]), base_c, base_f


def _cuts(o: ExitOutcomes, j: int, c: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """(cut sizes k, their thresholds) exit j can take: the k most confident of the samples that
    reach it (c, descending) leave. Without a grid every distinct confidence is a candidate (ties
    leave together); with one, only its values (and "never")."""
    if o.grid is None:
        k = np.arange(len(c) + 1)
        ok = np.ones(len(c) + 1, bool)
        ok[1:-1] = c[:-1] != c[1:]
        return k[ok], [_threshold(c, int(x)) for x in k[ok]]
    ts = np.concatenate([[np.inf], o.grid[j][::-1]])
    return np.searchsorted(-c, -ts.astype(c.dtype), side="left"), [float(t) for t in ts]


def _threshold(c: np.ndarray, k: int) -> float:
    """A threshold letting exactly the k most confident leave (conf > t), float32-exact."""
    if k == 0:
        return NEVER
    if k == len(c):
        return float(np.nextafter(c[-1], c.dtype.type(-np.inf)))
    return float(c[k])  # conf > c[k] keeps c[k] (and everything below) in the cascade


def _best_constrained(o: ExitOutcomes, th: list[float], j: int, min_correct: int) -> float:
    c, dc, df, base_c, _ = _coordinate(o, th, j)
    ks, ts = _cuts(o, j, c)
    feas = np.flatnonzero(base_c + dc[ks] >= min_correct)
    if len(feas) == 0:
        return th[j]  # only from an infeasible start
    return ts[int(feas[np.argmin(df[ks[feas]])])]


def coordinate_ascent(
    o: ExitOutcomes,
    start: Sequence[float],
    min_correct: int,
    *,
    max_sweeps: int = 50,
    disabled: frozenset[int] = frozenset(),
) -> list[float]:
    """From a feasible start, repeatedly set one exit's threshold to the cheapest feasible value for
    that exit (the others fixed) until a sweep changes nothing. Compute never rises."""
    th = [float(t) for t in start]
    _, best = o.score(th)
    for _ in range(max_sweeps):
        improved = False
        for j in (j for j in range(o.m) if j not in disabled):
            trial = list(th)
            trial[j] = _best_constrained(o, th, j, min_correct)
            corr, fl = o.score(trial)
            if corr >= min_correct and fl < best - 1e-6:
                th, best, improved = trial, fl, True
        if not improved:
            break
    return th


def lagrangian_frontier(
    o: ExitOutcomes, lambdas: Sequence[float] | None = None, *, disabled: frozenset[int] = frozenset()
) -> list[list[float]]:
    """Threshold vectors minimising FLOPs/full + lambda * errors/n (coordinate descent per lambda).

    lambda is the price of one point of accuracy in points of compute / 100: a 0.5 point budget that
    buys 30% compute is lambda ~ 60; the default grid spans 0.01 .. 1000."""
    if lambdas is None:
        lambdas = np.geomspace(0.01, 1000.0, 40)
    full = float(o.ends[-1])
    out, th = [], [NEVER] * o.m
    for lam in sorted(lambdas, reverse=True):  # expensive errors first: thresholds fall as lam drops
        for _ in range(20):
            changed = False
            for j in (j for j in range(o.m) if j not in disabled):
                c, dc, df, _, _ = _coordinate(o, th, j)
                ks, ts = _cuts(o, j, c)
                obj = df[ks] / (full * o.n) - lam * dc[ks] / o.n
                t = ts[int(np.argmin(obj))]
                if t != th[j]:
                    th[j], changed = t, True
            if not changed:
                break
        out.append(list(th))
    return out


def greedy_search(
    o: ExitOutcomes, min_correct: int, *, candidates: int = 200, disabled: frozenset[int] = frozenset()
) -> list[float]:
    """The baseline: first exit first, the lowest quantile threshold within the budget (scanning down
    and stopping at the first that breaks it), then the next exit with the earlier ones fixed."""
    th = [NEVER] * o.m
    for j in (j for j in range(o.m) if j not in disabled):
        cands = np.unique(np.quantile(o.conf[:, j], np.linspace(0, 1, candidates)))
        for t in cands[::-1]:
            trial = list(th)
            trial[j] = float(t)
            if o.score(trial)[0] >= min_correct:
                th[j] = float(t)
            else:
                break
    return th


def joint_search(
    o: ExitOutcomes,
    max_accuracy_loss: float,
    *,
    disabled: frozenset[int] = frozenset(),
    frontiers: dict[frozenset[int], list[list[float]]] | None = None,
    drop_one: bool = True,
) -> dict:
    """Thresholds with the least compute whose accuracy loss is within the budget (on `o`'s samples);
    exits in `disabled` never take a sample (threshold inf).

    Starts: the greedy baseline, "no exit", the cheapest feasible frontier point and (drop_one) the
    same with each exit switched off (coordinate ascent is local: an exit's threshold can block a
    better use of the budget at a later exit). `frontiers` caches frontiers across calls (by the
    set of exits off). Returns {"thresholds", "greedy_thresholds", "method", "compute_fraction_by_start"}."""
    need = min_correct_for(o, max_accuracy_loss)
    frontiers = {} if frontiers is None else frontiers

    def frontier_start(off: frozenset[int]) -> list[float] | None:
        if off not in frontiers:
            frontiers[off] = lagrangian_frontier(o, disabled=off)
        feasible = [t for t in frontiers[off] if o.score(t)[0] >= need]
        if not feasible:
            return None
        return coordinate_ascent(o, min(feasible, key=lambda t: o.score(t)[1]), need, disabled=off)

    greedy = greedy_search(o, need, disabled=disabled)
    starts = {"greedy": greedy, "no-exit": [NEVER] * o.m, "frontier": frontier_start(disabled)}
    if drop_one:
        for j in (j for j in range(o.m) if j not in disabled):
            starts[f"frontier without exit {j}"] = frontier_start(disabled | {j})
    results = {
        name: coordinate_ascent(o, s, need, disabled=disabled) for name, s in starts.items() if s is not None
    }
    results = {name: t for name, t in results.items() if o.score(t)[0] >= need}  # a negative budget
    results = results or {"no-exit": [NEVER] * o.m}  # can leave no feasible start: then no exit
    full = float(o.ends[-1]) * o.n
    cost = {name: o.score(t)[1] / full for name, t in results.items()}
    best = min(cost, key=lambda k: (cost[k], k != "greedy"))
    return {
        "thresholds": results[best],
        "greedy_thresholds": greedy,
        "method": f"joint (coordinate ascent from the {best} start)",
        "compute_fraction_by_start": {**cost, "greedy-baseline": o.score(greedy)[1] / full},
    }


def summarise(o: ExitOutcomes, th: Sequence[float]) -> dict:
    """Accuracy loss (points vs the final classifier) and compute saved at thresholds `th`."""
    corr, fl = o.score(th)
    full = float(o.ends[-1]) * o.n
    return {
        "accuracy_loss_points": 100.0 * (o.full_correct() - corr) / o.n,
        "compute_saved": 1.0 - fl / full if full > 0 else None,
    }


def exit_values(
    o: ExitOutcomes, max_accuracy_loss: float, *, decoder_cost: Sequence[float], handover_cost: float
) -> dict:
    """Which exits pay for themselves: net compute saved with and without each one.

    An exit costs its decoder (decoder_cost[j], fraction of the full graph's FLOPs) for every sample
    that reaches it and a hand-over (handover_cost, measured: one more graph call + the compaction
    copy, as a fraction of the full graph's time) for every sample that goes on past it; it saves the
    rest of the network only for the samples it stops. Backward elimination: search the thresholds
    with all exits, drop the exit whose removal raises the net saving most (its threshold search is
    redone without it), repeat while a removal helps. Returns the kept exits and, per exit, its
    contribution in the first round (net saving with it minus without it)."""

    frontiers: dict = {}

    def net(enabled: frozenset[int]) -> tuple[float, float, float, list[float]]:
        off = frozenset(range(o.m)) - enabled
        th = joint_search(o, max_accuracy_loss, disabled=off, frontiers=frontiers)["thresholds"]
        e = o.exit_index(th)
        saved = 1.0 - float(o.ends[e].mean()) / float(o.ends[-1])
        paid = sum(
            float(np.mean(e >= j)) * decoder_cost[j] + float(np.mean(e > j)) * handover_cost for j in enabled
        )
        return saved - paid, saved, paid, th

    enabled = frozenset(range(o.m))
    first: dict[int, float] | None = None
    while enabled:
        base = net(enabled)
        contrib = {j: base[0] - net(enabled - {j})[0] for j in sorted(enabled)}
        first = contrib if first is None else first
        worst = min(contrib, key=lambda j: contrib[j])
        if contrib[worst] > 0:
            break
        enabled = enabled - {worst}
    final = net(enabled)
    return {
        "kept": sorted(enabled),
        "net_compute_saved": final[0],
        "compute_saved": final[1],
        "overhead": final[2],
        "thresholds": final[3],
        "contribution_with_all_exits": {str(j): v for j, v in (first or {}).items()},
    }
