"""Coding schemes: which branches each class uses (docs/method.md section 3).

A scheme is K binary codewords of length N with exactly N_act ones. Class k's path through a coded
block is the set of branches where its codeword is 1. This module is numpy-only so that an edge
device without PyTorch can read schemes from ONNX metadata and prune graphs.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from .errors import CodedResNeXtError


@dataclass(frozen=True)
class CodingScheme:
    """K codewords of length N, each with N_act ones; stored as '0101...' strings (row k = class k)."""

    codewords: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.codewords:
            raise CodedResNeXtError("a coding scheme needs at least one codeword")
        n = len(self.codewords[0])
        for k, w in enumerate(self.codewords):
            if len(w) != n or set(w) - {"0", "1"}:
                raise CodedResNeXtError(f"codeword {k} ({w!r}) must be a string of {n} characters '0'/'1'")
        weights = {w.count("1") for w in self.codewords}
        if len(weights) != 1:
            raise CodedResNeXtError(
                f"every codeword must have the same number of ones (N_act); got {sorted(weights)}"
            )
        if 0 in weights:
            raise CodedResNeXtError("codewords need at least one active branch")

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> CodingScheme:
        m = np.asarray(matrix)
        return cls(tuple("".join("1" if v else "0" for v in row) for row in m))

    @classmethod
    def uncoded(cls, num_classes: int, n: int) -> CodingScheme:
        """All-ones scheme (r = 1): a plain ResNeXt block."""
        return cls(("1" * n,) * num_classes)

    @property
    def matrix(self) -> np.ndarray:
        """(K, N) float32 array of 0/1."""
        return np.array([[c == "1" for c in w] for w in self.codewords], dtype=np.float32)

    @property
    def num_classes(self) -> int:
        return len(self.codewords)

    @property
    def n(self) -> int:
        return len(self.codewords[0])

    @property
    def n_act(self) -> int:
        return self.codewords[0].count("1")

    @property
    def ratio(self) -> float:
        return self.n_act / self.n

    @property
    def is_coded(self) -> bool:
        return self.n_act < self.n

    @property
    def label(self) -> str:
        return f"{self.n_act}/{self.n}"

    def column_sums(self) -> np.ndarray:
        return self.matrix.sum(0).astype(int)

    def min_distance(self) -> int:
        """Minimum pairwise Hamming distance H_min (N+1 if only one class)."""
        m = self.matrix.astype(np.int32)
        if len(m) < 2:
            return self.n + 1
        d = (m[:, None, :] != m[None, :, :]).sum(-1)
        np.fill_diagonal(d, self.n + 1)
        return int(d.min())

    def is_balanced(self) -> bool:
        s = self.column_sums()
        return int(s.max() - s.min()) <= (0 if (self.n_act * self.num_classes) % self.n == 0 else 1)

    def kept_branches(self, classes: list[int] | tuple[int, ...]) -> list[int]:
        """Branches used by any of `classes` (the union of their paths), in order."""
        m = self.matrix
        for c in classes:
            if not 0 <= c < self.num_classes:
                raise CodedResNeXtError(f"class index {c} out of range 0..{self.num_classes - 1}")
        return [n for n in range(self.n) if any(m[c, n] for c in classes)]

    def properties(self) -> dict:
        s = self.column_sums()
        return {
            "K": self.num_classes,
            "N": self.n,
            "N_act": self.n_act,
            "H_min": self.min_distance(),
            "column_sum_min": int(s.min()),
            "column_sum_max": int(s.max()),
            "balanced": self.is_balanced(),
        }


@cache
def _paper_tables() -> dict:
    text = resources.files("codedresnext").joinpath("resources/paper_coding_schemes.json").read_text()
    return json.loads(text)


def paper_scheme(dataset: str, label: str) -> CodingScheme:
    """The paper's exact table, e.g. paper_scheme('cifar10', '5/10'); rows in official class order."""
    tables = _paper_tables()
    if dataset not in tables or label not in tables[dataset]:
        avail = {d: sorted(v) for d, v in tables.items()}
        raise CodedResNeXtError(f"no paper scheme {dataset!r} {label!r}; available: {avail}")
    return CodingScheme(tuple(tables[dataset][label]))


# --- generator (paper Algorithm 1, docs/method.md section 3) ----------------------------------------

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
    C(M, k) is small, else a randomised greedy start, then tabu swap search where every
    (remove i, add j) move is scored by one matrix product. Returns (row indices, sum of squares).
    """
    m, n = mat.shape
    n_act = int(mat[0].sum())
    target = _best_sumsq(k, n, n_act)
    q, rem = divmod(k * n_act, n)
    if math.comb(m, k) <= _EXHAUSTIVE:  # small: try every choice (exact, first best wins)
        combos = np.array(list(itertools.combinations(range(m), k)), dtype=np.int64)  # (C, k)
        sums = np.zeros((len(combos), n), np.int64)
        for j in range(k):
            sums += mat[combos[:, j]]
        ss = (sums * sums).sum(1)
        best = int(np.argmin(ss))
        return combos[best], int(ss[best])
    worst = np.iinfo(np.int64).max
    best_idx, best_ss = np.arange(k), worst
    # a_i . b_j of every pair once (one BLAS call); the loop then only gathers, because small
    # multi-threaded BLAS calls crawl on a busy machine (OpenBLAS threads spin)
    overlap = None
    if m <= _OVERLAP_MAX:
        matf = mat.astype(np.float64)
        overlap = np.rint(matf @ matf.T).astype(np.int16)  # (M, M)
    for _ in range(restarts):
        order = rng.permutation(m)
        sel = np.zeros(m, bool)
        s = np.zeros(n, np.int64)  # (N,) column sums of the selection
        for _ in range(k):  # greedy start: the word that keeps sum(s^2) smallest
            cand = order[~sel[order]]
            j = cand[int(np.argmin(mat[cand] @ s))]
            sel[j] = True
            s += mat[j]
        ss = int((s * s).sum())
        if ss < best_ss:
            best_idx, best_ss = np.flatnonzero(sel), ss
            if ss - target <= _REPAIR_GAP and (fix := _pair_repair(mat, sel, s, q, rem, rng)):
                sel[fix[0]], sel[fix[1]] = False, True
                return np.flatnonzero(sel), int((mat[sel].sum(0) ** 2).sum())
        tabu = np.zeros(m, np.int64)  # iteration until which a word may not move
        tenure = max(2, min(k, m - k) // 4)
        last_gain = 0
        for it in range(iters):
            if best_ss == target or it - last_gain > _STALL:
                break
            if it % 50 == 0 and time.monotonic() > deadline:
                raise TimeoutError
            ins, outs = np.flatnonzero(sel), np.flatnonzero(~sel)
            ms = mat @ s  # (M,) s . word, integer (no BLAS)
            ab = overlap[np.ix_(ins, outs)] if overlap is not None else mat[ins] @ mat[outs].T
            # sum((s - a_i + b_j)^2) - sum(s^2) = 2 s.b_j - 2 s.a_i + 2 N_act - 2 a_i.b_j
            delta = 2 * ms[outs][None, :] - 2 * ms[ins][:, None] + 2 * n_act - 2 * ab.astype(np.int64)
            allowed = (tabu[ins] <= it)[:, None] & (tabu[outs] <= it)[None, :]
            allowed |= ss + delta < best_ss  # aspiration: a tabu move that beats the best
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
            if ss < best_ss:
                best_idx, best_ss, last_gain = np.flatnonzero(sel), ss, it
                if ss - target <= _REPAIR_GAP and (fix := _pair_repair(mat, sel, s, q, rem, rng)):
                    sel[fix[0]], sel[fix[1]] = False, True
                    return np.flatnonzero(sel), int((mat[sel].sum(0) ** 2).sum())
        if best_ss == target:
            break
    return best_idx, best_ss


def _iters(k: int, m: int, n: int) -> int:
    """Tabu iterations: _ITERS for small problems, fewer when one move costs k*m*n."""
    return int(max(200, min(_ITERS, 3e8 // max(1, k * max(1, m - k) * n))))


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
    (ties: larger H); with `h_min` given, that H is kept and the spread minimised. For 1000 classes on N=32
    use paper_scheme('imagenet', ...).
    """
    k = int(num_classes)
    if k < 1 or n < 1 or not 1 <= n_act <= n:
        raise CodedResNeXtError(
            f"need num_classes >= 1 and 1 <= n_act <= n; got K={num_classes}, n={n}, n_act={n_act}"
        )
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
    deadline = time.monotonic() + time_limit
    rng = np.random.default_rng(seed)
    cands = _words(n, n_act)  # (C(n, n_act),) ascending
    if h_min is not None:
        levels = [int(h_min)]
    elif k == 1:
        levels = [n + 1]
    else:
        levels = list(range(max(2, 2 * min(n_act, n - n_act)), 1, -2))
    target = _best_sumsq(k, n, n_act)
    q = (k * n_act) // n
    best = None  # (sum of squares, -H, (K, N) matrix) of the best unbalanced choice
    largest = 0
    try:
        for h in levels:
            lex = _greedy_code(cands, h, deadline)
            largest = max(largest, len(lex))
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
                    return CodingScheme.from_matrix(mat[idx])
                if best is None or (ss, -h) < best[:2]:
                    best = (ss, -h, mat[idx])
    except TimeoutError:
        raise CodedResNeXtError(
            f"no balanced scheme for K={k}, n={n}, n_act={n_act} within time_limit={time_limit} s; "
            "raise time_limit, pass a smaller h_min, or use fewer branches n"
        ) from None
    if best is None:
        raise CodedResNeXtError(
            f"the greedy code with H_min={levels[0]} has at most {largest} words for {k} classes; "
            "lower h_min or raise n"
        )
    return CodingScheme.from_matrix(best[2])
