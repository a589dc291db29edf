"""The learned early-reject score (runtime/thresholds/reject_logistic.py) on constructed energies,
its errors, and its manifest record."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from codedresnext.artifact import RejectProbeInfo, RejectRule
from codedresnext.errors import DataError, GraphError
from codedresnext.runtime.api.postprocess import reject_score
from codedresnext.runtime.thresholds.reject_logistic import fit_class_rule, fit_reject_rule
from codedresnext.runtime.thresholds.reject_search import calibrate_reject_threshold

WORD = np.array([1.0, 1.0, 0.0, 0.0])  # class k's codeword, N = 4, N_act = 2


def _draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised energies where positives and negatives are mirror images in branches 2 and 3:
    ||v - w_k|| is the same for both, the per-branch log energies are not."""
    pos = rng.uniform(size=n) < 0.2
    hi, lo = rng.uniform(0.6, 1.0, n), rng.uniform(0.02, 0.2, n)
    e = np.stack([rng.uniform(1.0, 2.0, n), rng.uniform(1.0, 2.0, n), hi, lo], 1)
    e[~pos, 2], e[~pos, 3] = lo[~pos], hi[~pos]  # swap for the negatives
    e *= 4.0 / e.sum(1, keepdims=True)  # normalised: sums to N
    return e, pos


def _distance(e: np.ndarray) -> np.ndarray:
    return np.linalg.norm(e * (WORD.sum() / len(WORD)) - WORD, axis=1)


def _stopped(score_fit, score, rng) -> float:
    """Threshold at a 1-point budget on one draw, negatives stopped on a new one."""
    e_cal, p_cal = _draw(rng, 4000)
    t = calibrate_reject_threshold(score_fit(e_cal)[p_cal], np.ones(p_cal.sum(), bool), max_recall_loss=1.0)
    e_new, p_new = _draw(rng, 4000)
    return float(np.mean(score(e_new)[~p_new] > t)), float(np.mean(score(e_new)[p_new] > t))


def test_learned_rule_separates_what_the_codeword_distance_cannot():
    rng = np.random.default_rng(0)
    e, pos = _draw(rng, 3000)
    rule = fit_reject_rule(e, pos, fitted_on="draw 0")
    assert rule.fitted_on == "draw 0" and len(rule.weights) == 4
    assert rule.weights[2] < 0 < rule.weights[3]  # a loud branch 2 says "positive", a loud 3 "negative"
    learned = lambda x: reject_score(rule, x)  # noqa: E731
    stop_l, lost_l = _stopped(learned, learned, rng)
    stop_d, lost_d = _stopped(_distance, _distance, rng)
    assert stop_l > 0.95 and lost_l < 0.03
    assert stop_d < 0.1  # mirror images: the distance stops about as many negatives as positives


def test_score_is_the_linear_rule_on_log_energies():
    rule = RejectRule(weights=[1.0, -2.0, 0.5], bias=0.25, eps=0.01)
    e = np.array([[1.0, 1.5, 0.5], [0.0, 3.0, 0.0]])
    want = np.log(e + 0.01) @ np.array([1.0, -2.0, 0.5]) + 0.25
    np.testing.assert_allclose(reject_score(rule, e), want, rtol=1e-12)


def test_bad_inputs_say_what_to_do():
    rng = np.random.default_rng(1)
    e, pos = _draw(rng, 200)
    with pytest.raises(DataError, match="both positives and negatives"):
        fit_reject_rule(e, np.ones(200, bool))
    with pytest.raises(DataError, match="labels"):
        fit_reject_rule(e, pos[:10])
    with pytest.raises(DataError, match="samples, branches"):
        fit_reject_rule(e[:, 0], pos)
    rule = fit_reject_rule(e, pos)
    with pytest.raises(DataError, match="re-run `codedresnext calibrate`"):
        reject_score(rule, e[:, :3])
    from types import SimpleNamespace

    fit = SimpleNamespace(class_names=["cat", "dog"], labels=np.zeros(200, int))  # no dog at all
    with pytest.raises(DataError, match="'dog'.*raise reject_fit_images"):
        fit_class_rule(e, fit, "dog", None)
    with pytest.raises(DataError, match="'frog' is not among"):
        fit_class_rule(e, fit, "frog", None)
    with pytest.raises(GraphError, match="finite"):
        RejectRule(weights=[1.0, math.nan], bias=0.0, eps=1e-3)
    with pytest.raises(GraphError, match="eps > 0"):
        RejectRule(weights=[1.0], bias=0.0, eps=0.0)


def test_probe_record_round_trips_rules_and_never_thresholds_as_strict_json():
    rule = RejectRule(weights=[0.5, -1.0], bias=2.0, eps=1e-3, fitted_on="training split")
    info = RejectProbeInfo(
        class_name="cat",
        blocks=[1, 2],
        reject_thresholds={"1": 0.75, "2": math.inf},  # +inf: that block never rejects
        reject_rules={"1": rule, "2": rule},
    )
    d = info.to_dict()
    text = json.dumps(d, allow_nan=False)  # strict JSON: inf is written as null
    assert d["reject_thresholds"] == {"1": 0.75, "2": None}
    back = RejectProbeInfo.from_dict(json.loads(text))
    assert back == info
    with pytest.raises(GraphError, match="unknown key"):
        RejectProbeInfo.from_dict({**d, "reject_rules": {"1": {**rule.to_dict(), "scale": 1.0}}})
