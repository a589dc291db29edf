"""The paper's Algorithm 1 for a scheme of your own K, N, N_act (docs/method.md section 3): greedy
constant-weight codes at the largest minimum distance H_min that admits K words, then K of them
with column sums as equal as possible (exhaustive for few, else tabu swap search with a double-swap
repair). numpy only; deterministic for a seed (budgets are iteration counts).
"""

from __future__ import annotations

import math
import time

import numpy as np

from .coding import CodingScheme
from .coding_balance import best_sumsq, choose_balanced, tabu_iters
from .errors import CodedResNeXtError

MAX_CANDIDATES = 2_000_000
"""Largest C(N, N_act) the generator enumerates; beyond it (e.g. 1000 classes on N=32) use the
paper's shipped tables, paper_scheme('imagenet', '16/32') or paper_scheme('imagenet', '8/32')."""

# Deterministic search budgets (iterations, not seconds, so a seed always gives the same scheme).
_RESTARTS = 4  # tabu restarts on the paper's greedy code
_RANDOM_ORDERS = 192  # at most this many greedy passes over seeded random word orders per H ...
_ORDER_WORK = 2_000_000  # ... and fewer (>= 4) when orders * C(N, N_act) would exceed this
_POOL = 4000  # choose from at most this many greedy-code words (a seeded subset beyond it)

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
    target, q = best_sumsq(k, n, n_act), (k * n_act) // n
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
        iters = tabu_iters(k, len(mat), n) if feasible else 0
        idx, ss = choose_balanced(mat, k, rng, restarts if feasible else 1, iters, deadline)
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
