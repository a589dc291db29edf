"""Algorithm 1's second half: K words of a constant-weight code with column sums as equal as
possible (docs/method.md section 3). Exhaustive for few subsets, else a randomised greedy start,
tabu swap search and a double-swap repair; deterministic for a seed (budgets are iteration counts).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np

# Deterministic search budgets (iterations, not seconds, so a seed always gives the same scheme).
_ITERS = 3000  # tabu iterations per restart (fewer for big problems, see tabu_iters)
_STALL = 500  # end a restart after this many tabu iterations without a new best
_EXHAUSTIVE = 20_000  # try every K-subset when there are at most this many
_REPAIR_GAP = 8  # try a double-swap repair once sum(s^2) is within this of the optimum
_REPAIR_POOL = 800  # unselected words considered by the double-swap repair
_OVERLAP_MAX = 6000  # precompute word overlaps (M x M int16) up to this many words


def best_sumsq(k: int, n: int, n_act: int) -> int:
    """Smallest possible sum of squared column sums: every column at floor or ceil of K*r."""
    q, rem = divmod(k * n_act, n)
    return rem * (q + 1) ** 2 + (n - rem) * q * q


def balanced_targets(s: np.ndarray, q: int, rem: int) -> list[np.ndarray]:
    """Balanced column-sum vectors (rem columns at q+1, the rest at q) nearest to s (at most 32)."""
    if rem == 0:
        return [np.full(len(s), q, np.int64)]
    order = np.argsort(-s, kind="stable")
    v = s[order[rem - 1]]
    forced = [int(j) for j in order if s[j] > v]
    ties = [int(j) for j in order if s[j] == v]
    out = []
    for extra in itertools.islice(itertools.combinations(ties, rem - len(forced)), 32):
        t = np.full(len(s), q, np.int64)
        t[forced + list(extra)] = q + 1
        out.append(t)
    return out


def pair_repair(
    mat: np.ndarray, sel: np.ndarray, s: np.ndarray, q: int, rem: int, rng: np.random.Generator
) -> tuple[list[int], list[int]] | None:
    """Two words out, two in, landing exactly on a balanced column-sum vector; None if none found.

    In a code with H_min >= 4 one swap changes >= 4 column sums, so the last +-1 of an almost
    balanced choice often needs a double swap: b1 + b2 - a1 - a2 = t - s. Pair sums are vectors
    in {0,1,2}^N, encoded base 3 as integers and matched with a sorted search.
    """
    n = mat.shape[1]
    if n > 39:  # 3^N must fit in int64
        return None
    ins, outs = np.flatnonzero(sel), np.flatnonzero(~sel)
    if len(ins) < 2 or len(outs) < 2:
        return None
    if len(outs) > _REPAIR_POOL:
        outs = np.sort(rng.choice(outs, _REPAIR_POOL, replace=False))
    base = 3 ** np.arange(n, dtype=np.int64)
    i0, i1 = np.triu_indices(len(outs), 1)
    key_in = (mat[outs[i0]] + mat[outs[i1]]) @ base  # (P_in,) codes of b1 + b2
    order = np.argsort(key_in, kind="stable")
    key_sorted = key_in[order]
    o0, o1 = np.triu_indices(len(ins), 1)
    pair_out = mat[ins[o0]] + mat[ins[o1]]  # (P_out, N) a1 + a2
    for t in balanced_targets(s, q, rem):
        need = pair_out + (t - s)[None, :]  # what b1 + b2 must be
        ok = np.flatnonzero(((need >= 0) & (need <= 2)).all(1))
        if not len(ok):
            continue
        keys = need[ok] @ base
        pos = np.minimum(np.searchsorted(key_sorted, keys), len(key_sorted) - 1)
        hit = np.flatnonzero(key_sorted[pos] == keys)
        if len(hit):
            a, b = ok[hit[0]], order[pos[hit[0]]]
            return [int(ins[o0[a]]), int(ins[o1[a]])], [int(outs[i0[b]]), int(outs[i1[b]])]
    return None


def _exhaustive_choice(mat: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Every k-subset of mat's rows (exact; the first best wins)."""
    m, n = mat.shape
    combos = np.array(list(itertools.combinations(range(m), k)), dtype=np.int64)  # (C, k)
    sums = np.zeros((len(combos), n), np.int64)
    for j in range(k):
        sums += mat[combos[:, j]]
    ss = (sums * sums).sum(1)
    best = int(np.argmin(ss))
    return combos[best], int(ss[best])


def _greedy_start(mat: np.ndarray, k: int, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """k words taken in turn, each the one (first in `order`) that keeps sum(s^2) smallest;
    returns (selection mask (M,), column sums (N,))."""
    m, n = mat.shape
    sel = np.zeros(m, bool)
    s = np.zeros(n, np.int64)  # (N,) column sums of the selection
    for _ in range(k):
        cand = order[~sel[order]]
        j = cand[int(np.argmin(mat[cand] @ s))]
        sel[j] = True
        s += mat[j]
    return sel, s


@dataclass
class _Search:
    """State shared by the restarts of one balanced choice."""

    mat: np.ndarray  # (M, N) candidate words
    k: int
    rng: np.random.Generator
    deadline: float
    target: int  # the optimum of sum(s^2)
    q: int  # floor of the mean column sum ...
    rem: int  # ... and how many columns sit one above it
    overlap: np.ndarray | None  # (M, M) a_i . b_j, or None (computed per move)
    best_idx: np.ndarray
    best_ss: int

    def repaired(self, sel: np.ndarray, s: np.ndarray, ss: int) -> tuple[np.ndarray, int] | None:
        """A double swap onto the optimum when sum(s^2) is near it; None if none applies."""
        if ss - self.target <= _REPAIR_GAP and (
            fix := pair_repair(self.mat, sel, s, self.q, self.rem, self.rng)
        ):
            sel[fix[0]], sel[fix[1]] = False, True
            return np.flatnonzero(sel), int((self.mat[sel].sum(0) ** 2).sum())
        return None

    def tabu(self, sel: np.ndarray, s: np.ndarray, ss: int, iters: int) -> tuple[np.ndarray, int] | None:
        """Tabu swap search from a start; every (remove i, add j) move is scored by one matrix
        product. Returns a repaired optimum as soon as one is found, else None (best kept here)."""
        mat, rng, worst = self.mat, self.rng, np.iinfo(np.int64).max
        m, n_act = len(mat), int(mat[0].sum())
        tabu = np.zeros(m, np.int64)  # iteration until which a word may not move
        tenure = max(2, min(self.k, m - self.k) // 4)
        last_gain = 0
        for it in range(iters):
            if self.best_ss == self.target or it - last_gain > _STALL:
                break
            if it % 50 == 0 and time.monotonic() > self.deadline:
                raise TimeoutError
            ins, outs = np.flatnonzero(sel), np.flatnonzero(~sel)
            ms = mat @ s  # (M,) s . word, integer (no BLAS)
            ab = self.overlap[np.ix_(ins, outs)] if self.overlap is not None else mat[ins] @ mat[outs].T
            # sum((s - a_i + b_j)^2) - sum(s^2) = 2 s.b_j - 2 s.a_i + 2 N_act - 2 a_i.b_j
            delta = 2 * ms[outs][None, :] - 2 * ms[ins][:, None] + 2 * n_act - 2 * ab.astype(np.int64)
            allowed = (tabu[ins] <= it)[:, None] & (tabu[outs] <= it)[None, :]
            allowed |= ss + delta < self.best_ss  # aspiration: a tabu move that beats the best
            delta = np.where(allowed, delta, worst)
            low = delta.min()
            if low == worst:
                break
            ii, jj = np.nonzero(delta == low)
            pick = int(rng.integers(len(ii)))
            i_out, j_in = ins[ii[pick]], outs[jj[pick]]
            sel[i_out], sel[j_in] = False, True
            s += mat[j_in] - mat[i_out]
            ss += int(low)
            tabu[i_out] = tabu[j_in] = it + tenure + int(rng.integers(3))
            if ss < self.best_ss:
                self.best_idx, self.best_ss, last_gain = np.flatnonzero(sel), ss, it
                if done := self.repaired(sel, s, ss):
                    return done
        return None


def choose_balanced(
    mat: np.ndarray,
    k: int,
    rng: np.random.Generator,
    restarts: int,
    iters: int,
    deadline: float = math.inf,
) -> tuple[np.ndarray, int]:
    """Pick k rows of mat (M, N) with column sums as equal as possible.

    With the total K*N_act fixed, minimising sum_j s_j^2 is the same as bringing every column sum
    to the floor or ceil of the mean, so the search minimises that integer: exhaustively when
    C(M, k) is small, else a randomised greedy start, then tabu swap search. Returns (row
    indices, sum of squares).
    """
    m, n = mat.shape
    if math.comb(m, k) <= _EXHAUSTIVE:
        return _exhaustive_choice(mat, k)
    q, rem = divmod(k * int(mat[0].sum()), n)
    # a_i . b_j of every pair once (one BLAS call); the loop then only gathers, because small
    # multi-threaded BLAS calls crawl on a busy machine (OpenBLAS threads spin)
    overlap = None
    if m <= _OVERLAP_MAX:
        matf = mat.astype(np.float64)
        overlap = np.rint(matf @ matf.T).astype(np.int16)  # (M, M)
    search = _Search(
        mat,
        k,
        rng,
        deadline,
        best_sumsq(k, n, int(mat[0].sum())),
        q,
        rem,
        overlap,
        np.arange(k),
        np.iinfo(np.int64).max,
    )
    for _ in range(restarts):
        sel, s = _greedy_start(mat, k, rng.permutation(m))
        ss = int((s * s).sum())
        if ss < search.best_ss:
            search.best_idx, search.best_ss = np.flatnonzero(sel), ss
            if done := search.repaired(sel, s, ss):
                return done
        if done := search.tabu(sel, s, ss, iters):
            return done
        if search.best_ss == search.target:
            break
    return search.best_idx, search.best_ss


def tabu_iters(k: int, m: int, n: int) -> int:
    """Tabu iterations: _ITERS for small problems, fewer when one move costs k*m*n."""
    return int(max(200, min(_ITERS, 3e8 // max(1, k * max(1, m - k) * n))))
