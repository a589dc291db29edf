"""Early-exit cascade: equivalence with the multi-exit graph, per-sample exits with compaction,
threshold calibration on held-out real images."""

from __future__ import annotations

import numpy as np
import pytest
from test_runtime_graphs import MEAN, SEG_FLOPS, STD, make_export

from codedresnext.artifact import load_manifest
from codedresnext.errors import GraphError
from codedresnext.runtime import EarlyExitClassifier, open_backend
from codedresnext.runtime.thresholds.calibrate import (
    calibrate_directory,
    calibrate_exit_thresholds,
    cascade_outcome,
)
from codedresnext.runtime.thresholds.samples import heldout_split

INF = float("inf")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("cascade_export"))


def _normalise(frames: np.ndarray) -> np.ndarray:
    x = (frames.astype(np.float32) / 255 - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def test_never_exit_equals_multi_exit_graph(export_dir, real_images):
    casc = EarlyExitClassifier.from_directory(export_dir, thresholds=[INF, INF], threads=1)
    assert casc.num_exits == 2 and [r.name for r in casc.refs] == ["segment0", "segment1", "segment2"]
    x = _normalise(real_images.images)
    res = casc.predict(x)
    me = open_backend("ort", export_dir / "multi_exit.onnx", threads=1).infer({"images": x})
    np.testing.assert_array_equal(res.predictions, me["logits"].argmax(1))
    assert (res.exit_index == 2).all()
    np.testing.assert_allclose(res.flops, sum(SEG_FLOPS))
    exits, logits = casc.run_all(x)
    np.testing.assert_allclose(logits, me["logits"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(exits[0], me["exit0_scores"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(exits[1], me["exit1_scores"], rtol=1e-5, atol=1e-6)


def test_uint8_frames_give_the_same_cascade_as_normalised_tensors(export_dir, real_images):
    casc = EarlyExitClassifier.from_directory(export_dir, thresholds=[0.6, 0.6], threads=1)
    a = casc.predict(real_images.images[:32])
    b = casc.predict(_normalise(real_images.images[:32]))
    np.testing.assert_array_equal(a.predictions, b.predictions)
    np.testing.assert_array_equal(a.exit_index, b.exit_index)


@pytest.mark.parametrize("rule", ["max", "margin"])
def test_per_sample_exits_with_compaction(export_dir, real_images, rule):
    """Thresholds at the median confidence: some samples leave at each exit, some run to the end;
    each prediction must equal the output of the exit it left at (multi-exit graph on the full batch)."""
    x = _normalise(real_images.images)
    me = open_backend("ort", export_dir / "multi_exit.onnx", threads=1).infer({"images": x})
    s0, s1 = me["exit0_scores"], me["exit1_scores"]
    if rule == "max":
        c0, c1 = s0.max(1), s1.max(1)
    else:  # top score minus the runner-up, computed independently of postprocess.exit_confidence
        srt0, srt1 = np.sort(s0, 1), np.sort(s1, 1)
        c0, c1 = srt0[:, -1] - srt0[:, -2], srt1[:, -1] - srt1[:, -2]
    t0 = float(np.median(c0))
    t1 = float(np.median(c1[c0 <= t0]))
    casc = EarlyExitClassifier.from_directory(export_dir, thresholds=[t0, t1], confidence=rule, threads=1)
    res = casc.predict(x)
    expect_exit = np.where(c0 > t0, 0, np.where(c1 > t1, 1, 2))
    counts = np.bincount(expect_exit, minlength=3)
    assert (counts > 0).all(), counts  # the case really mixes all three outcomes
    np.testing.assert_array_equal(res.exit_index, expect_exit)
    expect_pred = np.select(
        [expect_exit == 0, expect_exit == 1],
        [me["exit0_scores"].argmax(1), me["exit1_scores"].argmax(1)],
        me["logits"].argmax(1),
    )
    np.testing.assert_array_equal(res.predictions, expect_pred)
    cum = np.cumsum(SEG_FLOPS)
    np.testing.assert_allclose(res.flops, cum[expect_exit])
    np.testing.assert_allclose(res.confidence[expect_exit == 0], c0[expect_exit == 0], rtol=1e-6)
    assert res.mean_flops() < sum(SEG_FLOPS)


def test_compaction_runs_later_segments_on_fewer_samples(export_dir, real_images):
    casc = EarlyExitClassifier.from_directory(
        export_dir, thresholds=[0.0, INF], threads=1
    )  # all leave at exit 0
    for seg in casc.segments:
        seg.record_timing = True
    res = casc.predict(real_images.images[:16])
    assert (res.exit_index == 0).all()
    assert [len(s.timing.latencies_s) for s in casc.segments] == [1, 0, 0]


def test_unknown_confidence_rule_is_refused(export_dir):
    with pytest.raises(GraphError, match="unknown exit confidence 'entropy'"):
        EarlyExitClassifier.from_directory(export_dir, confidence="entropy", threads=1)


def test_threshold_count_is_checked(export_dir):
    with pytest.raises(GraphError, match="3 thresholds given for 2 exits"):
        EarlyExitClassifier.from_directory(export_dir, thresholds=[0.5, 0.5, 0.5], threads=1)


def test_offline_cascade_matches_online(export_dir, real_images):
    x = _normalise(real_images.images)
    casc = EarlyExitClassifier.from_directory(export_dir, thresholds=[0.7, 0.6], threads=1)
    exits, logits = casc.run_all(x)
    p, idx, fl = cascade_outcome(exits, logits, [0.7, 0.6], SEG_FLOPS, casc.exit_segments)
    res = casc.predict(x)
    np.testing.assert_array_equal(p, res.predictions)
    np.testing.assert_array_equal(idx, res.exit_index)
    np.testing.assert_allclose(fl, res.flops)


def test_calibration_respects_the_accuracy_budget():
    """Synthetic outputs: exit 0 is right on confident samples only; the budget bounds the loss."""
    rng = np.random.default_rng(0)
    n, k = 2000, 10
    labels = rng.integers(0, k, n)
    logits = np.eye(k)[labels] * 5 + rng.standard_normal((n, k))  # final: ~always right
    conf = rng.uniform(0.1, 1.0, n)
    wrong = (labels + 1) % k
    pred0 = np.where(rng.uniform(size=n) < conf, labels, wrong)  # accuracy grows with confidence
    s0 = np.full((n, k), 0.0)
    s0[np.arange(n), pred0] = conf
    s1 = np.zeros((n, k))  # exit 1 never confident
    for budget in (0.0, 0.5, 2.0):
        th, rep = calibrate_exit_thresholds(
            [s0, s1], logits, labels, max_accuracy_loss=budget, seg_flops=SEG_FLOPS, exit_segments=[0, 1]
        )
        assert rep["accuracy_loss_points"] <= budget + 1e-9
        assert th[1] == INF or rep["exit_fractions"][1] == 0.0
    _, rep0 = calibrate_exit_thresholds(
        [s0, s1], logits, labels, max_accuracy_loss=0.0, seg_flops=SEG_FLOPS, exit_segments=[0, 1]
    )
    _, rep2 = calibrate_exit_thresholds(
        [s0, s1], logits, labels, max_accuracy_loss=2.0, seg_flops=SEG_FLOPS, exit_segments=[0, 1]
    )
    assert rep2["compute_saved"] > rep0["compute_saved"] >= 0.0  # a larger budget buys more early exits
    assert rep2["exit_fractions"][0] > 0.02


def test_heldout_split_is_disjoint_and_deterministic():
    a, b = heldout_split(101)
    assert len(a) == 50 and len(b) == 51 and not set(a) & set(b)
    a2, _ = heldout_split(101)
    np.testing.assert_array_equal(a, a2)


def test_calibrate_directory_writes_thresholds(tmp_path, cifar10_tgz):
    d = make_export(tmp_path / "exp")
    # ~30 cat positives per half: a 1-point recall budget could not lose even one (never rejects)
    summary = calibrate_directory(
        d, cifar10_tgz, max_accuracy_loss=0.5, max_recall_loss=10.0, limit=300, threads=1
    )
    ee = summary["early_exit"]
    assert "test split" in summary["split"]
    assert ee["calibration"]["accuracy_loss_points"] <= 0.5 + 1e-9
    m = load_manifest(d)
    # the report is strict JSON: an exit the search keeps shut has threshold None ("never", +inf)
    found = [float("inf") if t is None else t for t in (ee["thresholds"][f"segment{i}"] for i in (0, 1))]
    assert [m.graph("segment0").exit_threshold, m.graph("segment1").exit_threshold] == found
    assert m.graph("segment2").exit_threshold is None  # the last segment has no exit
    assert m.calibration["early_exit"]["max_accuracy_loss"] == 0.5
    casc = EarlyExitClassifier.from_directory(d, threads=1)  # picks the calibrated thresholds up
    assert casc.thresholds == found
    rej = summary["early_reject"]["classes"]["cat"]
    assert m.graph("reject_cat_a").reject_threshold == rej["reject_threshold"]
    # the fixture's pair predates the energies output: auto falls back to the distance, and says so
    assert summary["early_reject"]["rule"]["rule"] == "distance"
    assert "older version" in summary["early_reject"]["rule"]["why_not_learned"]
    assert m.graph("reject_cat_a").reject_rule is None
    ev = rej["evaluation"]
    assert ev["positives"] + ev["negatives"] == 300
    assert 0.0 < ev["negatives_rejected"]
    assert 0.0 <= ev["negatives_rejected"] <= 1.0
    # rejected negatives cost part A only (1000 FLOPs), the rest A + B (1300)
    assert ev["mean_flops_negative"] == pytest.approx(1000 + 300 * (1 - ev["negatives_rejected"]))
    assert ev["recall_with_reject"] <= ev["recall"]


def test_calibrate_refuses_an_export_without_segments(tmp_path):
    import json

    d = make_export(tmp_path / "e")
    m = json.loads((d / "manifest.json").read_text())
    m["graphs"] = [g for g in m["graphs"] if g["kind"] not in ("segment", "reject")]
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(GraphError, match="export with --segments"):
        calibrate_directory(d, tmp_path / "no-data-needed.tgz")
