"""The paper's Algorithm 1 for a scheme of your own K, N, N_act (docs/method.md section 3): greedy
constant-weight codes at the largest minimum distance H_min that admits K words, then K of them
with column sums as equal as possible (exhaustive for few, else tabu swap search with a double-swap
repair). numpy only; deterministic for a seed (budgets are iteration counts).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np

from .coding import CodingScheme
from .errors import CodedResNeXtError

MAX_CANDIDATES = 2_000_000
"""Largest C(N, N_act) the generator enumerates; beyond it (e.g. 1000 classes on N=32) use the
paper's shipped tables, paper_scheme('imagenet', '16/32') or paper_scheme('imagenet', '8/32')."""

# Deterministic search budgets (iterations, not seconds, so a seed always gives the same scheme).
_RESTARTS = 4  # tabu restarts on the paper's greedy code
_ITERS = 3000  # tabu iterations per restart (fewer for big problems, see _iters)
_RANDOM_ORDERS = 192  # at most this many greedy passes over seeded random word orders per H ...
_ORDER_WORK = 2_000_000  # ... and fewer (>= 4) when orders * C(N, N_act) would exceed this
_POOL = 4000  # choose from at most this many greedy-code words (a seeded subset beyond it)
_STALL = 500  # end a restart after this many tabu iterations without a new best
_EXHAUSTIVE = 20_000  # try every K-subset when there are at most this many
_REPAIR_GAP = 8  # try a double-swap repair once sum(s^2) is within this of the optimum
_REPAIR_POOL = 800  # unselected words considered by the double-swap repair
_OVERLAP_MAX = 6000  # precompute word overlaps (M x M int16) up to this many words

_BYTE_POP = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Per-element popcount of an unsigned integer array (numpy >= 2 has it built in)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    x = np.ascontiguousarray(x)
    b = x.view(np.uint8).reshape(*x.shape, x.dtype.itemsize)
    return _BYTE_POP[b].sum(-1, dtype=np.uint8)


def _words(n: int, w: int) -> np.ndarray:
    """All n-bit integers with exactly w ones, ascending; leftmost character = top bit.

    uint32 when n <= 32 (half the memory traffic in the greedy pass), else uint64.

    W(m, j) = W(m-1, j) ++ (2^(m-1) | W(m-1, j-1)): the second block is all >= 2^(m-1), so the
    concatenation stays sorted; a DP over (m, j) builds it without a Python loop over words.
    """
    dt = np.uint32 if n <= 32 else np.uint64
    prev = [np.zeros(1, dt)] + [np.zeros(0, dt)] * w  # m = 0
    for m in range(1, n + 1):
        top = dt(1) << dt(m - 1)
        cur = [prev[0]]
        for j in range(1, w + 1):
            cur.append(np.concatenate([prev[j], prev[j - 1] | top]))
        prev = cur
    return prev[w]


def _greedy_code(cands: np.ndarray, h_min: int, deadline: float = math.inf) -> np.ndarray:
    """Algorithm 1's greedy pass: keep each word (in the given order) at distance >= h_min from
    every kept word.

    Candidates are screened in chunks against the kept list (vectorised popcounts), then the
    survivors of a chunk are resolved in order against each other.
    """
    if h_min <= 2:  # distinct constant-weight words are always >= 2 apart: every word is kept
        return cands.copy()
    kept = np.zeros(0, cands.dtype)
    i = 0
    while i < len(cands):
        if time.monotonic() > deadline:
            raise TimeoutError
        size = int(max(256, min(2048, 2**22 // max(1, len(kept)))))
        chunk = cands[i : i + size]
        i += size
        if len(kept):  # (C,) vs (M,) -> min distance (C,), kept in slices to bound memory
            dmin = np.full(len(chunk), 255, np.uint8)
            for s in range(0, len(kept), 4096):
                np.minimum(dmin, _popcount(chunk[:, None] ^ kept[None, s : s + 4096]).min(1), out=dmin)
            chunk = chunk[dmin >= h_min]
        if not len(chunk):
            continue
        d = _popcount(chunk[:, None] ^ chunk[None, :])  # (S, S) survivors among themselves
        alive = np.ones(len(chunk), bool)
        take = []
        while alive[j := int(alive.argmax())]:  # first survivor still alive, in order
            take.append(j)
            alive &= d[j] >= h_min  # also clears j itself (distance 0)
        kept = np.concatenate([kept, chunk[take]])
    return kept


def _to_matrix(words: np.ndarray, n: int) -> np.ndarray:
    """(M,) unsigned ints -> (M, n) int64 bits, most significant bit first (leftmost character)."""
    shifts = np.arange(n - 1, -1, -1, dtype=words.dtype)
    return ((words[:, None] >> shifts[None, :]) & words.dtype.type(1)).astype(np.int64)


def _best_sumsq(k: int, n: int, n_act: int) -> int:
    """Smallest possible sum of squared column sums: every column at floor or ceil of K*r."""
    q, rem = divmod(k * n_act, n)
    return rem * (q + 1) ** 2 + (n - rem) * q * q


def _balanced_targets(s: np.ndarray, q: int, rem: int) -> list[np.ndarray]:
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


def _pair_repair(
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
    for t in _balanced_targets(s, q, rem):
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
            fix := _pair_repair(self.mat, sel, s, self.q, self.rem, self.rng)
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


def _choose_balanced(
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
        _best_sumsq(k, n, int(mat[0].sum())),
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


def _iters(k: int, m: int, n: int) -> int:
    """Tabu iterations: _ITERS for small problems, fewer when one move costs k*m*n."""
    return int(max(200, min(_ITERS, 3e8 // max(1, k * max(1, m - k) * n))))


def _check_request(k: int, n: int, n_act: int) -> None:
    """The errors a request can meet before any search, each saying what to change."""
    if k < 1 or n < 1 or not 1 <= n_act <= n:
        raise CodedResNeXtError(f"need num_classes >= 1 and 1 <= n_act <= n; got K={k}, n={n}, n_act={n_act}")
    if n > 62:
        raise CodedResNeXtError(f"n={n} branches is more than the generator supports (62)")
    total = math.comb(n, n_act)
    if total < k:
        raise CodedResNeXtError(
            f"only C({n}, {n_act}) = {total} distinct codewords exist for {k} classes; raise n "
            "(the number of branches) or move n_act towards n/2"
        )
    if total > MAX_CANDIDATES:
        raise CodedResNeXtError(
            f"C({n}, {n_act}) = {total} candidate words is too many to enumerate (limit "
            f"{MAX_CANDIDATES}, e.g. n <= 22 with n_act = n/2); for ImageNet's 1000 classes use the "
            "shipped tables, paper_scheme('imagenet', '16/32') or paper_scheme('imagenet', '8/32'); "
            "for another K use fewer branches n or pass the codewords in the config yourself"
        )


def _levels(k: int, n: int, n_act: int, h_min: int | None) -> list[int]:
    """The H_min values to try, largest first (constant-weight words are an even distance apart)."""
    if h_min is not None:
        return [int(h_min)]
    if k == 1:
        return [n + 1]
    return list(range(max(2, 2 * min(n_act, n - n_act)), 1, -2))


def _search_level(
    cands: np.ndarray, k: int, n: int, h: int, rng: np.random.Generator, deadline: float, best: list
) -> tuple[np.ndarray | None, int]:
    """Greedy codes at H_min = h (the paper's order, then seeded random orders) and a balanced
    choice from each. Returns (a balanced (K, N) matrix or None, the largest code seen); `best`
    ([sum of squares, -H, matrix], or empty) keeps the best unbalanced choice so far."""
    n_act = int(bin(int(cands[0])).count("1"))
    target, q = _best_sumsq(k, n, n_act), (k * n_act) // n
    lex = _greedy_code(cands, h, deadline)
    largest = len(lex)
    orders = 0
    if h > 2 and 3 * len(lex) >= 2 * k:  # more orders when a greedy pass is cheap
        orders = int(np.clip(_ORDER_WORK // len(cands), 4, _RANDOM_ORDERS))
    for trial in range(1 + orders):
        if time.monotonic() > deadline:
            raise TimeoutError
        code = lex if trial == 0 else _greedy_code(cands[rng.permutation(len(cands))], h, deadline)
        largest = max(largest, len(code))
        if len(code) < k:
            continue
        if len(code) > max(_POOL, 2 * k):
            code = code[np.sort(rng.choice(len(code), max(_POOL, 2 * k), replace=False))]
        mat = _to_matrix(code, n)  # (M, N)
        feasible = bool((mat.sum(0) >= q).all())  # else some branch is too rare in this code
        restarts = _RESTARTS if trial == 0 else 1
        iters = _iters(k, len(mat), n) if feasible else 0
        idx, ss = _choose_balanced(mat, k, rng, restarts if feasible else 1, iters, deadline)
        if ss == target:
            return mat[idx], largest
        if not best or (ss, -h) < tuple(best[:2]):
            best[:] = [ss, -h, mat[idx]]
    return None, largest


def generate_scheme(
    num_classes: int,
    n: int,
    n_act: int,
    *,
    h_min: int | None = None,
    seed: int = 0,
    time_limit: float = 30.0,
) -> CodingScheme:
    """A scheme for K classes by the paper's Algorithm 1 and rules A/B/C (docs/method.md section 3).

    (A) every word has n_act ones. (B) H_min as large as possible: unless `h_min` is given, try
    H = 2*min(n_act, n - n_act) downward in steps of 2 (constant-weight words are always an even
    distance apart) and take the largest H whose greedy code has >= K words and admits a balanced
    choice. (C) K words of that code with column sums as equal as possible (all equal when
    K*n_act/n is an integer): every K-subset when there are few, else tabu swap search.

    The greedy pass first runs in the paper's order (ascending integers). That code does not
    always admit a balanced choice (for K=10, N=10, N_act=5 at H=4 the best is max - min = 2, by
    exhaustive search), so greedy passes over seeded random word orders follow before H is
    lowered. Deterministic for a seed: budgets are iteration counts; `time_limit` (seconds)
    only aborts with an error. If no H admits a balanced choice, the smallest spread wins
    (ties: larger H); with `h_min` given, that H is kept and the spread minimised. For 1000
    classes on N=32 use paper_scheme('imagenet', ...).
    """
    k = int(num_classes)
    _check_request(k, n, n_act)
    deadline = time.monotonic() + time_limit
    rng = np.random.default_rng(seed)
    cands = _words(n, n_act)  # (C(n, n_act),) ascending
    levels = _levels(k, n, n_act, h_min)
    best: list = []  # [sum of squares, -H, (K, N) matrix] of the best unbalanced choice
    largest = 0
    try:
        for h in levels:
            balanced, seen = _search_level(cands, k, n, h, rng, deadline, best)
            largest = max(largest, seen)
            if balanced is not None:
                return CodingScheme.from_matrix(balanced)
    except TimeoutError:
        raise CodedResNeXtError(
            f"no balanced scheme for K={k}, n={n}, n_act={n_act} within time_limit={time_limit} s; "
            "raise time_limit, pass a smaller h_min, or use fewer branches n"
        ) from None
    if not best:
        raise CodedResNeXtError(
            f"the greedy code with H_min={levels[0]} has at most {largest} words for {k} classes; "
            "lower h_min or raise n"
        )
    return CodingScheme.from_matrix(best[2])
