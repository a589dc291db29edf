"""Joint early-exit threshold search vs the greedy baseline, on constructed and random cascades."""

from __future__ import annotations

import numpy as np
import pytest

from codedresnext.runtime.thresholds.calibrate import calibrate_exit_thresholds
from codedresnext.runtime.thresholds.exit_guard import (
    search_cross_validated,
    tradeoff_curve,
    without_exit_credit,
)
from codedresnext.runtime.thresholds.exit_search import (
    NEVER,
    ExitOutcomes,
    exit_values,
    greedy_search,
    joint_search,
    min_correct_for,
    summarise,
)

SEG = [10.0, 10.0, 80.0]  # exit 0 after 10 FLOPs, exit 1 after 20, the end after 100


def _scores(conf: np.ndarray, right: np.ndarray, labels: np.ndarray, k: int = 2) -> np.ndarray:
    """(n, k) exit scores whose max is `conf` and whose argmax is the label where `right`."""
    n = len(conf)
    pred = np.where(right, labels, (labels + 1) % k)
    s = np.zeros((n, k))
    s[np.arange(n), pred] = conf
    s[np.arange(n), (pred + 1) % k] = 1 - conf
    return s


def greedy_trap(n: int = 1000):
    """Exit 0's confident samples are right only half the time; exit 1 is right on 595 of 600
    confident samples, but its single most confident sample is wrong. With a 1-point budget (10
    errors) the greedy pass spends the budget on exit 0 and then cannot open exit 1 at all; exit 0
    off and exit 1 open on all 600 costs 5 errors and saves 600 * 80 FLOPs: 48% of the compute."""
    labels = np.zeros(n, np.int64)
    c0, r0 = np.full(n, 0.5), np.ones(n, bool)
    c1, r1 = np.full(n, 0.5), np.ones(n, bool)
    c0[:40] = 0.99 - 0.001 * np.arange(40)
    r0[:40] = np.arange(40) % 2 == 0
    c1[40:640] = np.linspace(0.99, 0.6, 600)
    r1[[40, 100, 200, 300, 400]] = False  # index 40: the most confident at exit 1
    logits = np.eye(2)[labels] * 5.0  # the final classifier is always right
    return [_scores(c0, r0, labels), _scores(c1, r1, labels)], logits, labels


def _saved(exits, logits, labels, th):
    o = ExitOutcomes.from_outputs(exits, logits, labels, SEG, [0, 1])
    return summarise(o, th)


def test_joint_search_beats_greedy_where_greedy_is_provably_suboptimal():
    exits, logits, labels = greedy_trap()
    o = ExitOutcomes.from_outputs(exits, logits, labels, SEG, [0, 1])
    known = summarise(o, [NEVER, 0.55])  # the feasible solution described in greedy_trap
    assert known["accuracy_loss_points"] == pytest.approx(0.5) and known["compute_saved"] == pytest.approx(
        0.48
    )
    for candidates in (200, None):
        tg, rg = calibrate_exit_thresholds(
            exits, logits, labels, max_accuracy_loss=1.0, seg_flops=SEG, exit_segments=[0, 1], search="greedy"
        )
        tj, rj = calibrate_exit_thresholds(
            exits,
            logits,
            labels,
            max_accuracy_loss=1.0,
            seg_flops=SEG,
            exit_segments=[0, 1],
            candidates=candidates,
        )
        assert rg["compute_saved"] < 0.04  # greedy: exit 0 only (at most 40 samples x 90 FLOPs)
        assert rg["exit_fractions"][1] == 0.0
        assert rj["compute_saved"] >= 0.48 - 1e-9 > 10 * rg["compute_saved"]
        assert rj["accuracy_loss_points"] <= 1.0 + 1e-9 and rg["accuracy_loss_points"] <= 1.0 + 1e-9
        assert rj["exit_fractions"][1] >= 0.6


@pytest.mark.parametrize("seed", range(6))
def test_joint_never_worse_than_greedy_and_within_budget_on_random_cascades(seed):
    rng = np.random.default_rng(seed)
    n, k, m = 1500, 10, 3
    labels = rng.integers(0, k, n)
    logits = np.eye(k)[labels] * 4 + rng.standard_normal((n, k)) * 1.5  # final: ~95% right
    exits = []
    for j in range(m):
        conf = rng.uniform(0.1, 1.0, n)
        p_right = np.clip(conf * (0.5 + 0.2 * j) + rng.normal(0, 0.1, n), 0, 1)
        exits.append(_scores(conf, rng.uniform(size=n) < p_right, labels, k))
    seg = list(rng.uniform(5, 50, m + 1))
    o = ExitOutcomes.from_outputs(exits, logits, labels, seg, list(range(m))).with_grid(200)
    for budget in (0.0, 0.5, 2.0):
        need = min_correct_for(o, budget)
        g = greedy_search(o, need)
        res = joint_search(o, budget)
        sj, sg = summarise(o, res["thresholds"]), summarise(o, g)
        assert sj["accuracy_loss_points"] <= budget + 1e-9
        assert sg["accuracy_loss_points"] <= budget + 1e-9
        assert sj["compute_saved"] >= sg["compute_saved"] - 1e-12
        assert o.score(res["thresholds"])[0] >= need
        cv = search_cross_validated(o, budget)  # the guarded search stays within it too
        assert summarise(o, cv["thresholds"])["accuracy_loss_points"] <= budget + 1e-9


def test_curve_is_monotone_in_the_budget_and_within_it():
    exits, logits, labels = greedy_trap()
    o = ExitOutcomes.from_outputs(exits, logits, labels, SEG, [0, 1]).with_grid(200)
    pts = tradeoff_curve(o, o, [0.0, 0.5, 1.0, 3.0])
    saved = [p["calibration"]["compute_saved"] for p in pts]
    assert all(p["calibration"]["accuracy_loss_points"] <= p["max_accuracy_loss"] + 1e-9 for p in pts)
    assert saved == sorted(saved) and saved[-1] > saved[0]
    assert pts[0]["evaluation"] == pts[0]["calibration"]  # the same samples scored twice


def test_exit_rule_drops_an_exit_that_costs_more_than_it_saves():
    """Exit 0 stops only a few samples; with a hand-over that costs 2% of the full graph per
    sample going past it, keeping it loses compute, and the rule drops it; exit 1 stays."""
    exits, logits, labels = greedy_trap()
    o = ExitOutcomes.from_outputs(exits, logits, labels, SEG, [0, 1]).with_grid(200)
    free = exit_values(o, 1.0, decoder_cost=[0.0, 0.0], handover_cost=0.0)
    assert free["kept"] == [1] or free["kept"] == [0, 1]
    costly = exit_values(o, 1.0, decoder_cost=[0.0, 0.0], handover_cost=0.02)
    assert costly["kept"] == [1]
    assert costly["net_compute_saved"] == pytest.approx(costly["compute_saved"] - costly["overhead"])
    assert costly["contribution_with_all_exits"]["0"] <= 0 < costly["contribution_with_all_exits"]["1"]


def _torn_cascade(n: int = 1000):
    """Exit 0's wrong samples are torn between two classes (scores 0.5 / 0.45 / 0.05: the highest
    top score, margin 0.05); its right ones are not (0.4 / 0.3 / 0.3: margin 0.1). Ranked by the top
    score the mistakes come first, so no sample can leave within a zero budget; ranked by the
    margin the 800 right ones leave, saving 0.8 * 90% of the compute."""
    labels = np.zeros(n, np.int64)
    right = np.arange(n) < 800
    s0 = np.where(right[:, None], [0.4, 0.3, 0.3], [0.45, 0.5, 0.05]).astype(np.float32)
    s1 = np.full((n, 3), 1 / 3, np.float32)  # exit 1 never sure
    logits = np.eye(3)[labels] * 5.0
    return [s0, s1], logits, labels


def test_margin_confidence_is_top_minus_runner_up_in_the_scores_dtype():
    from codedresnext.runtime.api.postprocess import exit_confidence

    s = np.array([[0.1, 0.7, 0.2], [0.5, 0.4, 0.1], [0.3, 0.3, 0.4]], np.float16)
    m = exit_confidence(s, "margin")
    assert m.dtype == np.float16
    expect = np.array([s[0, 1] - s[0, 2], s[1, 0] - s[1, 1], s[2, 2] - s[2, 0]])  # float16 arithmetic
    assert expect.dtype == np.float16
    np.testing.assert_array_equal(m, expect)
    np.testing.assert_array_equal(exit_confidence(s, "max"), s.max(1))
    with pytest.raises(ValueError, match="unknown exit confidence"):
        exit_confidence(s, "entropy")


def test_calibration_keeps_the_confidence_that_saves_more_on_the_calibration_half():
    from codedresnext.runtime.thresholds.exits import _pick_confidence

    exits, logits, labels = _torn_cascade()
    by_rule = {
        r: ExitOutcomes.from_outputs(exits, logits, labels, [10.0, 10.0, 80.0], [0, 1], confidence=r)
        for r in ("max", "margin")
    }
    rule, found, per_rule = _pick_confidence(by_rule, "joint", "none", 0.0, 0.0)
    assert per_rule["max"]["calibration"]["compute_saved"] == pytest.approx(0.0)
    assert per_rule["margin"]["calibration"]["compute_saved"] == pytest.approx(0.8 * 0.9)
    assert rule == "margin" and found["thresholds"][0] < 0.1
    assert summarise(by_rule["margin"], found["thresholds"])["accuracy_loss_points"] == 0.0
    # the offline cascade agrees with the search under the same rule
    th, rep = calibrate_exit_thresholds(
        exits, logits, labels, max_accuracy_loss=0.0, seg_flops=SEG, exit_segments=[0, 1], confidence="margin"
    )
    assert rep["compute_saved"] == pytest.approx(0.72) and rep["accuracy_loss_points"] == 0.0
    # ties go to "max" (docs/method.md's confidence): a cascade both rules rank alike keeps it
    same = {r: by_rule["max"] for r in ("max", "margin")}
    assert _pick_confidence(same, "joint", "none", 0.0, 0.0)[0] == "max"


def _noisy_cascade(seed: int, n: int = 2000):
    """Final classifier 90% right; exit 0 (after 10 of 100 FLOPs) right with a probability that
    grows with its confidence; exit 1 (after 20) a little better."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    final_right = rng.uniform(size=n) < 0.9
    logits = np.eye(10)[np.where(final_right, labels, (labels + 1) % 10)] * 5.0
    exits = []
    for j in range(2):
        conf = rng.uniform(0.1, 1.0, n)
        exits.append(_scores(conf, rng.uniform(size=n) < np.clip(conf + 0.1 * j, 0, 1), labels, 10))
    return ExitOutcomes.from_outputs(exits, logits, labels, SEG, [0, 1]).with_grid(200)


def test_without_exit_credit_counts_an_exit_right_only_where_the_final_classifier_is():
    o = _noisy_cascade(0)
    p = without_exit_credit(o)
    final = o.correct[:, o.m]
    np.testing.assert_array_equal(p.correct[:, o.m], final)
    np.testing.assert_array_equal(p.correct[:, : o.m], o.correct[:, : o.m] & final[:, None])
    assert (o.correct[:, : o.m] & ~final[:, None]).any()  # the case has credit to take away
    for th in ([0.5, 0.5], [0.0, 0.0], [NEVER, 0.3]):  # the cascade without credit never gains
        assert summarise(p, th)["accuracy_loss_points"] >= 0.0
        assert summarise(p, th)["accuracy_loss_points"] >= summarise(o, th)["accuracy_loss_points"]


@pytest.mark.parametrize("seed", range(3))
def test_cv_guard_takes_the_lowest_price_whose_held_out_and_calibration_loss_hold(seed):
    o = _noisy_cascade(seed)
    for budget in (0.25, 1.0):
        res = search_cross_validated(o, budget)
        trace = res["cross_validation"]
        prices = [t["price"] for t in trace]
        assert prices == sorted(prices, reverse=True)
        k = prices.index(res["price"])
        holds = [
            t["held_out_loss"] <= budget + 1e-9 and t["calibration_loss"] <= budget + 1e-9 for t in trace
        ]
        assert all(holds[: k + 1])  # every price down to the chosen one held the budget
        assert trace[k + 1 :] == [] or not holds[k + 1]  # the search stopped at the first that broke it
        own = summarise(o, res["thresholds"])
        assert own["accuracy_loss_points"] == pytest.approx(res["searched_budget"])
        assert own["accuracy_loss_points"] <= budget + 1e-9 and own["compute_saved"] > 0.0
    assert search_cross_validated(o, 1.0)["price"] <= search_cross_validated(o, 0.25)["price"]


def test_cv_guard_takes_no_exit_when_even_the_highest_price_breaks_the_budget():
    o = _noisy_cascade(0)
    res = search_cross_validated(o, -5.0)  # 5 points MORE accurate than the full graph: impossible
    assert res["thresholds"] == [NEVER, NEVER] and res["price"] is None and res["searched_budget"] is None
    assert len(res["cross_validation"]) == 1 and res["cross_validation"][0]["held_out_loss"] > -5.0
