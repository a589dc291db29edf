"""Detector metrics against cases computed by hand, and AUC against the pairwise definition."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codedresnext.evaluate.metrics import (
    binary_report,
    f1_optimal_threshold,
    precision_recall_f1,
    roc_auc,
)
from codedresnext.evaluate.sampling import negatives_for_ratio, stratified_subset


def test_f1_optimal_threshold_hand_computed():
    # sorted scores with labels 1 1 0 1 0 0 (3 positives). F1 after the top i:
    # top1 2/4=.5, top2 4/5=.8, top3 4/6, top4 6/7=.857, top5 6/8, top6 6/9 -> cut after 0.6
    scores = np.array([0.55, 0.9, 0.4, 0.7, 0.8, 0.6])
    labels = np.array([0, 1, 0, 0, 1, 1])
    thr, f1 = f1_optimal_threshold(scores, labels)
    assert thr == pytest.approx(0.575, abs=1e-12)
    assert f1 == pytest.approx(6 / 7, abs=1e-12)
    m = precision_recall_f1(scores, labels, thr)
    assert (m["tp"], m["fp"], m["fn"]) == (3, 1, 0)
    assert m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(6 / 7)


def test_f1_threshold_never_splits_ties():
    # the tie at 0.5 holds one positive and one negative: cutting inside it is impossible.
    # cuts: {0.9}: tp1 fp0 -> 2/3; {0.9, 0.5, 0.5}: tp2 fp1 -> 4/5; all: tp2 fp2 -> 4/6
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 0, 0])
    thr, f1 = f1_optimal_threshold(scores, labels)
    assert thr == pytest.approx(0.3)
    assert f1 == pytest.approx(0.8)


def test_f1_threshold_all_positive_and_highest_among_equal():
    thr, f1 = f1_optimal_threshold(np.array([2.0, 1.0]), np.array([1, 1]))
    assert thr == pytest.approx(0.0)  # 1.0 below the lowest score
    assert f1 == pytest.approx(1.0)
    # labels 1 0 0 1: F1 is 2/3 after the top one, 2/4, 2/5, then 4/6 = 2/3 for all: the higher wins
    thr, f1 = f1_optimal_threshold(np.array([4.0, 3.0, 2.0, 1.0]), np.array([1, 0, 0, 1]))
    assert f1 == pytest.approx(2 / 3) and thr == pytest.approx(3.5)
    with pytest.raises(ValueError, match="no positive"):
        f1_optimal_threshold(np.array([1.0, 2.0]), np.array([0, 0]))


def test_precision_recall_strict_inequality_and_empty_predictions():
    m = precision_recall_f1(np.array([1.0, 2.0, 3.0]), np.array([0, 1, 1]), 2.0)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 0, 1)  # score == threshold is negative
    assert m["precision"] == 1.0 and m["recall"] == 0.5 and m["f1"] == pytest.approx(2 / 3)
    m = precision_recall_f1(np.array([1.0, 2.0]), np.array([0, 1]), 5.0)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0


def test_auc_hand_computed_with_ties():
    # positives 0.8, 0.4; negatives 0.4, 0.2, 0.1. Pairs: 0.8 beats all 3; 0.4 ties 0.4 (0.5),
    # beats 0.2 and 0.1 -> (3 + 2.5) / 6
    scores = np.array([0.8, 0.4, 0.4, 0.2, 0.1])
    labels = np.array([1, 1, 0, 0, 0])
    assert roc_auc(scores, labels) == pytest.approx(5.5 / 6, abs=1e-12)
    assert roc_auc(np.array([1.0, 1.0, 1.0]), np.array([1, 0, 0])) == pytest.approx(0.5)
    assert roc_auc(np.array([0.0, 1.0]), np.array([1, 0])) == pytest.approx(0.0)
    assert np.isnan(roc_auc(np.array([0.0, 1.0]), np.array([1, 1])))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=2, max_size=30))
def test_auc_equals_pairwise_definition(pairs):
    s = np.array([p[0] for p in pairs], dtype=float)
    y = np.array([p[1] for p in pairs])
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        assert np.isnan(roc_auc(s, y))
        return
    diff = pos[:, None] - neg[None, :]
    expect = (np.sum(diff > 0) + 0.5 * np.sum(diff == 0)) / diff.size
    assert roc_auc(s, y) == pytest.approx(expect, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-4, 4), st.booleans()), min_size=1, max_size=25))
def test_f1_threshold_beats_every_other_cut(pairs):
    s = np.array([p[0] for p in pairs], dtype=float)
    y = np.array([p[1] for p in pairs])
    if not y.any():
        return
    thr, f1 = f1_optimal_threshold(s, y)
    assert precision_recall_f1(s, y, thr)["f1"] == pytest.approx(f1, abs=1e-12)
    for t in np.r_[np.unique(s), s.min() - 1]:  # every achievable decision set
        assert precision_recall_f1(s, y, t)["f1"] <= f1 + 1e-12


def test_binary_report_counts():
    r = binary_report(np.array([3.0, 2.0, 1.0, 0.0]), np.array([1, 0, 1, 0]), 1.5)
    assert (r["positives"], r["negatives"]) == (2, 2)
    assert r["precision"] == 0.5 and r["recall"] == 0.5
    assert r["auc"] == pytest.approx(0.75)


def test_negative_sampling_gives_ten_percent_positives_for_100_classes():
    labels = np.repeat(np.arange(100), 100)  # CIFAR-100 test: 100 per class
    for k in (0, 37, 99):
        neg = negatives_for_ratio(labels, k, positive_fraction=0.1, seed=3)
        assert len(neg) == 900  # 100 positives are 10% of 1000
        assert len(np.unique(neg)) == 900 and not np.any(labels[neg] == k)
        assert np.array_equal(neg, negatives_for_ratio(labels, k, positive_fraction=0.1, seed=3))
        assert len(np.unique(labels[neg])) > 90  # drawn across the other classes
    assert not np.array_equal(negatives_for_ratio(labels, 5, seed=0), negatives_for_ratio(labels, 5, seed=1))


def test_negative_sampling_keeps_all_when_positives_are_ten_percent():
    labels = np.repeat(np.arange(10), 50)
    neg = negatives_for_ratio(labels, 4, positive_fraction=0.1, seed=0)
    assert np.array_equal(neg, np.nonzero(labels != 4)[0])


def test_stratified_subset_keeps_class_proportions():
    labels = np.repeat(np.arange(10), 500)
    idx = stratified_subset(labels, 300, seed=1)
    assert len(idx) == 300 and len(np.unique(idx)) == 300
    assert np.all(np.bincount(labels[idx], minlength=10) == 30)
    assert np.array_equal(idx, stratified_subset(labels, 300, seed=1))
    assert len(stratified_subset(labels, None, seed=0)) == 5000
    uneven = np.r_[np.zeros(90, int), np.ones(10, int)]
    assert np.bincount(uneven[stratified_subset(uneven, 20, seed=0)]).tolist() == [18, 2]
