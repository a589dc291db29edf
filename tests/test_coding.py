"""Coding schemes: the paper's shipped tables, the Algorithm 1 generator, validation
(docs/method.md section 3)."""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codedresnext.coding import CodingScheme, paper_scheme
from codedresnext.coding_balance import balanced_targets, best_sumsq, choose_balanced, pair_repair
from codedresnext.coding_search import _greedy_code, _popcount, _to_matrix, _words, generate_scheme
from codedresnext.errors import CodedResNeXtError

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CODEDRESNEXT_SHARED", ROOT.parent / "shared")).resolve()
REFERENCE = SHARED / "reference" / "paper_coding_schemes.json"

# (dataset, label, K, N, N_act, H_min, column-sum min, column-sum max), docs/method.md section 3
PAPER = [
    ("cifar10", "5/10", 10, 10, 5, 4, 5, 5),
    ("cifar10", "3/10", 10, 10, 3, 4, 3, 3),
    ("cifar100", "8/20", 100, 20, 8, 8, 40, 40),
    ("cifar100", "4/20", 100, 20, 4, 4, 20, 20),
    ("imagenet", "16/32", 1000, 32, 16, 10, 499, 501),
    ("imagenet", "8/32", 1000, 32, 8, 6, 249, 251),
]
# (K, N, N_act) -> the paper's H_min: the generator must reach it with equal column sums
GENERATOR_CASES = {(10, 10, 5): 4, (10, 10, 3): 4, (100, 20, 8): 8, (100, 20, 4): 4}


def naive_min_distance(words: tuple[str, ...]) -> int:
    return min(sum(a != b for a, b in zip(u, v)) for u, v in itertools.combinations(words, 2))


# --- the paper's tables ------------------------------------------------------------------------


@pytest.mark.parametrize("dataset,label,k,n,n_act,h_min,smin,smax", PAPER)
def test_paper_scheme_properties(dataset, label, k, n, n_act, h_min, smin, smax):
    s = paper_scheme(dataset, label)
    assert (s.num_classes, s.n, s.n_act, s.label) == (k, n, n_act, label)
    assert all(w.count("1") == n_act for w in s.codewords)
    assert len(set(s.codewords)) == k
    assert s.min_distance() == h_min
    sums = s.column_sums()
    assert sums.sum() == k * n_act
    assert (int(sums.min()), int(sums.max())) == (smin, smax)
    assert s.is_balanced() == (smin == smax)


def test_paper_min_distance_matches_naive_count():
    s = paper_scheme("cifar10", "5/10")
    assert s.min_distance() == naive_min_distance(s.codewords) == 4


def test_package_data_equals_shared_reference():
    if not REFERENCE.is_file():
        pytest.skip(f"reference tables not found at {REFERENCE} (set CODEDRESNEXT_SHARED)")
    ref = json.loads(REFERENCE.read_text())
    for dataset, tables in ref.items():
        for label, words in tables.items():
            assert paper_scheme(dataset, label).codewords == tuple(words)
    shipped = ROOT / "codedresnext" / "resources" / "paper_coding_schemes.json"
    assert json.loads(shipped.read_text()) == ref


def test_unknown_paper_scheme_lists_available():
    with pytest.raises(CodedResNeXtError, match=r"available.*cifar10"):
        paper_scheme("cifar10", "4/10")
    with pytest.raises(CodedResNeXtError, match="no paper scheme 'mnist'"):
        paper_scheme("mnist", "5/10")


# --- the generator -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated() -> dict[tuple[int, int, int], CodingScheme]:
    return {case: generate_scheme(*case) for case in GENERATOR_CASES}


@pytest.mark.parametrize("case", list(GENERATOR_CASES))
def test_generator_reaches_paper_h_min_with_equal_columns(generated, case):
    k, n, n_act = case
    s = generated[case]
    assert (s.num_classes, s.n, s.n_act) == (k, n, n_act)
    assert all(len(w) == n and w.count("1") == n_act for w in s.codewords)
    assert len(set(s.codewords)) == k
    assert s.min_distance() == GENERATOR_CASES[case]
    sums = s.column_sums()
    assert (sums == k * n_act // n).all(), sums


@pytest.mark.parametrize("case", [(10, 10, 5), (100, 20, 8)])
def test_generator_h_min_is_maximal(case):
    """One step above the paper's H_min (distances are even) the greedy code is too small."""
    with pytest.raises(CodedResNeXtError, match="lower h_min or raise n"):
        generate_scheme(*case, h_min=GENERATOR_CASES[case] + 2)


def test_generator_is_deterministic_per_seed(generated):
    assert generate_scheme(10, 10, 5, seed=0) == generated[(10, 10, 5)]
    assert generate_scheme(7, 10, 3, seed=3) == generate_scheme(7, 10, 3, seed=3)


def test_generator_fixed_h_min_is_respected():
    s = generate_scheme(12, 10, 5, h_min=4)
    assert s.min_distance() >= 4
    assert s.is_balanced()


def test_generator_user_k_not_divisible():
    """7 classes on N=10 (config.py's tiny preset for a 7-class ImageFolder): sums differ by <= 1."""
    for n_act, h in ((5, 4), (3, 4)):
        s = generate_scheme(7, 10, n_act)
        sums = s.column_sums()
        assert int(sums.max() - sums.min()) == 1  # 7*n_act/10 is not an integer
        assert s.min_distance() == h


def test_generator_lowers_h_min_when_needed():
    """A(10, 4, 5) = 36 words at distance >= 4 exist, so 37 classes must fall back to H_min 2."""
    s = generate_scheme(37, 10, 5)
    assert s.min_distance() == 2
    assert s.is_balanced()
    assert len(set(s.codewords)) == 37


def test_generator_single_class():
    s = generate_scheme(1, 10, 5)
    assert s.codewords == ("0000011111",)  # the first word in increasing integer order


def test_generator_too_many_classes_says_raise_n():
    with pytest.raises(CodedResNeXtError, match=r"C\(10, 3\) = 120 .* raise n"):
        generate_scheme(121, 10, 3)


def test_generator_refuses_imagenet_size_and_points_to_tables():
    with pytest.raises(CodedResNeXtError, match=r"paper_scheme\('imagenet'"):
        generate_scheme(1000, 32, 16)


def test_generator_time_limit_is_a_clear_error():
    with pytest.raises(CodedResNeXtError, match="within time_limit=0.0 s; raise time_limit"):
        generate_scheme(100, 22, 11, time_limit=0.0)


@pytest.mark.parametrize("args", [(0, 10, 5), (10, 10, 0), (10, 10, 11), (10, 0, 0)])
def test_generator_rejects_bad_sizes(args):
    with pytest.raises(CodedResNeXtError, match="1 <= n_act <= n"):
        generate_scheme(*args)


def test_words_enumeration_in_increasing_order():
    w = _words(12, 5)
    assert len(w) == math.comb(12, 5)
    assert (np.diff(w.astype(np.int64)) > 0).all()
    assert (_popcount(w) == 5).all()
    expected = [v for v in range(1 << 12) if bin(v).count("1") == 5]
    assert w.tolist() == expected


@pytest.mark.parametrize("n,w,h", [(10, 5, 4), (10, 3, 4), (14, 7, 6), (14, 7, 4), (12, 4, 6)])
def test_greedy_code_matches_literal_algorithm_1(n, w, h):
    """The chunked, vectorised greedy pass keeps exactly the words a plain loop keeps."""
    kept: list[int] = []
    for v in range(1 << n):
        if bin(v).count("1") == w and all(bin(v ^ u).count("1") >= h for u in kept):
            kept.append(v)
    assert _greedy_code(_words(n, w), h).tolist() == kept


def test_balanced_targets_nearest_to_current_sums():
    assert balanced_targets(np.array([4, 2, 2, 2, 0]), 2, 0)[0].tolist() == [2, 2, 2, 2, 2]
    got = [t.tolist() for t in balanced_targets(np.array([3, 3, 2, 2, 1]), 2, 1)]
    assert got == [[3, 2, 2, 2, 2], [2, 3, 2, 2, 2]]  # the +1 goes to one of the largest columns
    got = [t.tolist() for t in balanced_targets(np.array([4, 3, 2, 1, 1]), 2, 1)]
    assert got == [[3, 2, 2, 2, 2]]


def test_double_swap_repair_restores_balance():
    """H_min 6 code: single swaps move >= 6 column sums; the repair finds the 2-out/2-in fix."""
    k, n, n_act = 150, 20, 8
    mat = _to_matrix(_greedy_code(_words(n, n_act), 6), n)  # (411, 20)
    target = best_sumsq(k, n, n_act)
    idx, ss = choose_balanced(mat, k, np.random.default_rng(0), 1, 3000)
    assert ss == target and len(set(idx.tolist())) == k
    rng = np.random.default_rng(1)
    for _ in range(5):
        sel = np.zeros(len(mat), bool)
        sel[idx] = True
        sel[rng.choice(np.flatnonzero(sel), 2, replace=False)] = False
        sel[rng.choice(np.flatnonzero(~sel & ~np.isin(np.arange(len(mat)), idx)), 2, replace=False)] = True
        s = mat[sel].sum(0)
        assert int((s * s).sum()) > target
        fix = pair_repair(mat, sel, s, k * n_act // n, 0, rng)
        assert fix is not None
        (a1, a2), (b1, b2) = fix
        assert sel[[a1, a2]].all() and not sel[[b1, b2]].any()
        sel[[a1, a2]], sel[[b1, b2]] = False, True
        assert sel.sum() == k and (mat[sel].sum(0) == k * n_act // n).all()


def test_generator_balances_beyond_the_paper_cases():
    """150 classes on N=20, 8 active: H_min 8 gives only 130 greedy words, H_min 6 balances."""
    s = generate_scheme(150, 20, 8)
    assert s.min_distance() == 6
    assert (s.column_sums() == 60).all()
    assert len(set(s.codewords)) == 150


def test_popcount_fallback_without_numpy_bitwise_count(monkeypatch):
    x = np.array([0, 1, 0xFF, 2**62 + 3, 2**64 - 1], dtype=np.uint64)
    expected = [0, 1, 8, 3, 64]
    assert _popcount(x).tolist() == expected
    x32 = np.array([0, 1, 0xFF, 2**31 + 3, 2**32 - 1], dtype=np.uint32)
    expected32 = [0, 1, 8, 3, 32]
    assert _popcount(x32).tolist() == expected32
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    assert _popcount(x).tolist() == expected
    assert _popcount(x32).tolist() == expected32


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_generator_properties_small(data):
    n = data.draw(st.integers(3, 10), label="n")
    n_act = data.draw(st.integers(1, n - 1), label="n_act")
    k = data.draw(st.integers(1, min(math.comb(n, n_act), 16)), label="K")
    s = generate_scheme(k, n, n_act, seed=data.draw(st.integers(0, 3), label="seed"))
    assert s.num_classes == k and s.n == n
    assert all(w.count("1") == n_act for w in s.codewords)
    assert len(set(s.codewords)) == k
    assert s.is_balanced(), s.column_sums()
    if k > 1:
        assert s.min_distance() == naive_min_distance(s.codewords)
        assert s.min_distance() % 2 == 0 and s.min_distance() >= 2


# --- the type: validation, kept branches -------------------------------------------------------


@pytest.mark.parametrize(
    "words,match",
    [
        (("0110", "01a0"), "must be a string of 4 characters"),
        (("0110", "011"), "must be a string of 4 characters"),
        (("0110", "0111"), r"same number of ones .*\[2, 3\]"),
        (("0000", "0000"), "at least one active branch"),
        ((), "at least one codeword"),
    ],
)
def test_scheme_validation(words, match):
    with pytest.raises(CodedResNeXtError, match=match):
        CodingScheme(words)


def test_from_matrix_round_trip_and_uncoded():
    s = paper_scheme("cifar10", "3/10")
    assert CodingScheme.from_matrix(s.matrix) == s
    u = CodingScheme.uncoded(4, 6)
    assert u.codewords == ("111111",) * 4 and not u.is_coded and u.ratio == 1.0


def test_kept_branches_is_union_of_paths():
    s = paper_scheme("cifar10", "3/10")  # class 0: 1001001000, class 1: 0110001000
    assert s.kept_branches([0]) == [0, 3, 6]
    assert s.kept_branches([1]) == [1, 2, 6]
    assert s.kept_branches([0, 1]) == [0, 1, 2, 3, 6]
    m = s.matrix
    for classes in ([2, 5], [0, 4, 9], list(range(10))):
        union = np.flatnonzero(m[classes].max(0)).tolist()
        assert s.kept_branches(classes) == union
    with pytest.raises(CodedResNeXtError, match="out of range 0..9"):
        s.kept_branches([10])
