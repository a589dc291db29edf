"""Detector / SubsetDetector / RejectDetector: scores, thresholds, input validation, early reject."""

from __future__ import annotations

import numpy as np
import pytest
from test_runtime_graphs import MEAN, STD, make_export, reference, weights

from codedresnext.errors import GraphError
from codedresnext.runtime import Detector, RejectDetector, SubsetDetector, open_backend
from codedresnext.runtime.thresholds.calibrate import calibrate_reject_threshold


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("detector_export"))


def _normalise(frames):
    x = (frames.astype(np.float32) / 255 - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def test_detector_scores_equal_the_full_graph_column(export_dir, real_images):
    det = Detector(export_dir, "class_cat", threads=1)
    assert det.class_name == "cat" and det.threshold == 0.5
    x = _normalise(real_images.images)
    full = open_backend("ort", export_dir / "full.onnx", threads=1).infer({"images": x})["logits"]
    s = det.score(x)
    assert s.shape == (len(x),)
    np.testing.assert_allclose(s, full[:, 3], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(det.decide(x), full[:, 3] > 0.5)
    # uint8 HWC frames are normalised with the graph's metadata and give the same scores
    np.testing.assert_allclose(det.score(real_images.images), s, rtol=1e-5, atol=1e-5)


def test_detector_from_a_file_finds_its_manifest_entry(export_dir):
    det = Detector(export_dir / "class_dog.onnx", threads=1)
    assert det.ref.entry.name == "class_dog" and det.threshold == -0.5  # manifest beats metadata (0.5)
    assert Detector(export_dir / "class_dog.onnx", threshold=1.25, threads=1).threshold == 1.25


def test_uint8_graph_takes_frames(export_dir, real_images):
    be = open_backend("ort", export_dir / "full_uint8.onnx", threads=1)
    out = be.infer({"frames": real_images.images[:8]})["logits"]
    ref = reference(_normalise(real_images.images[:8]), weights(0))["logits"]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "x, match",
    [
        (np.zeros((32, 32, 3), np.uint8), r"one image .* x\[None\]"),
        (np.zeros((2, 32, 32, 4), np.uint8), r"\(batch, H, W, 3\) RGB"),
        (np.zeros((2, 16, 16, 3), np.uint8), "16x16 but the graph takes 32x32"),
        (np.zeros((2, 3, 32, 32), np.float64), "must be float32"),
        (np.zeros((2, 32, 32, 3), np.float32), r"NCHW \(batch, 3, H, W\)"),
        (np.zeros((2, 3, 24, 24), np.float32), "24x24 but the graph takes 32x32"),
        ([[0.0]], "numpy array"),
        (np.zeros((2, 3, 32), np.float32), "4-d batch"),
    ],
)
def test_detector_validation_errors(export_dir, x, match):
    det = Detector(export_dir, "class_cat", threads=1)
    with pytest.raises(GraphError, match=match):
        det.score(x)


def test_float_input_into_a_frames_graph_is_refused(export_dir):
    from codedresnext.runtime.api.graphs import prepare_batch

    with pytest.raises(GraphError, match="takes uint8 frames"):
        prepare_batch(np.zeros((1, 3, 32, 32), np.float32), "frames", (None, 32, 32, 3), {})


def test_detector_needs_a_one_class_graph(export_dir):
    with pytest.raises(GraphError, match="SubsetDetector"):
        Detector(export_dir, "subset_cat_dog", threads=1)


def test_missing_threshold_says_how_to_fix(tmp_path):
    d = make_export(tmp_path / "e")
    import json

    m = json.loads((d / "manifest.json").read_text())
    for g in m["graphs"]:
        g.pop("thresholds", None)
    (d / "manifest.json").write_text(json.dumps(m))
    import onnx

    model = onnx.load(d / "class_cat.onnx")
    keep = [p for p in model.metadata_props if p.key != "codedresnext.thresholds"]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    onnx.save(model, d / "class_cat.onnx")
    det = Detector(d, "class_cat", threads=1, verify_hash=False)  # the graph was edited above
    with pytest.raises(GraphError, match="pass thresholds="):
        det.decide(np.zeros((1, 3, 32, 32), np.float32))


def test_unknown_graph_lists_names(export_dir):
    with pytest.raises(GraphError, match="available"):
        Detector(export_dir, "class_zebra", threads=1)


def test_subset_detector(export_dir, real_images):
    det = SubsetDetector(export_dir, "subset_cat_dog", threads=1)
    assert det.classes == ["cat", "dog"]
    np.testing.assert_allclose(det.thresholds, [0.5, -0.5])
    x = _normalise(real_images.images)
    full = open_backend("ort", export_dir / "full.onnx", threads=1).infer({"images": x})["logits"]
    np.testing.assert_allclose(det.score(x), full[:, [3, 5]], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(det.decide(x), full[:, [3, 5]] > np.array([0.5, -0.5]))


def test_early_reject_with_compaction(export_dir, real_images):
    x = _normalise(real_images.images)
    ref = reference(x, weights(0))
    dist = ref["reject"][:, 0]
    t = float(np.median(dist))
    det = RejectDetector.from_directory(export_dir, "cat", reject_threshold=t, threads=1)
    det.b.record_timing = True
    res = det.run(x)
    np.testing.assert_array_equal(res.rejected, dist > t)
    assert 0 < res.rejected.sum() < len(x)
    full_cat = ref["logits"][:, 3]
    np.testing.assert_allclose(res.scores[~res.rejected], full_cat[~res.rejected], rtol=1e-4, atol=1e-4)
    assert np.isneginf(res.scores[res.rejected]).all()
    np.testing.assert_array_equal(res.decisions, (full_cat > 0.5) & ~res.rejected)
    np.testing.assert_allclose(res.flops, np.where(res.rejected, 1000.0, 1300.0))
    assert len(det.b.timing.latencies_s) == 1  # part B ran once, on the survivors only


def test_reject_detector_refuses_an_unknown_rule(export_dir):
    with pytest.raises(GraphError, match="'distance' or None"):
        RejectDetector.from_directory(export_dir, "cat", reject_rule="cosine", threads=1)


def test_reject_threshold_keeps_the_expected_recall_loss_on_new_data_within_budget():
    rng = np.random.default_rng(1)
    d = rng.uniform(0, 10, 500)
    detected = rng.uniform(size=500) < 0.8
    n_det = int(detected.sum())
    top = np.sort(d[detected])[::-1]
    for loss in (1.0, 5.0):
        t = calibrate_reject_threshold(d, detected, max_recall_loss=loss)
        m = int(np.sum(top >= t))  # t is the m-th largest detected score
        assert t == top[m - 1]
        assert int(np.sum(detected & (d > t))) == m - 1  # m - 1 lost on the calibration half
        expected = lambda m: 100.0 * m / (n_det + 1) * n_det / len(d)  # noqa: E731
        assert expected(m) <= loss + 1e-9 < expected(m + 1)  # the largest m within budget
    assert calibrate_reject_threshold(d, detected, max_recall_loss=0.0) == np.inf  # never reject
    assert calibrate_reject_threshold(d, np.zeros(500, bool), max_recall_loss=1.0) == d.min()  # none to lose
    assert calibrate_reject_threshold(d, detected, max_recall_loss=100.0) == d.min()


def test_reject_threshold_budget_holds_on_average_over_new_draws():
    """The point of the rule: over many calibration/new-data draws of the same distribution the
    mean recall loss on NEW positives stays within the budget (fitting the calibration half
    exactly, one more positive lost, overshoots it)."""
    rng = np.random.default_rng(7)
    new_loss, fit_exact_loss = [], []
    for _ in range(400):
        d, dn = rng.normal(size=500), rng.normal(size=500)
        det, detn = rng.uniform(size=500) < 0.9, rng.uniform(size=500) < 0.9
        t = calibrate_reject_threshold(d, det, max_recall_loss=1.0)
        new_loss.append(100.0 * np.mean(detn & (dn > t)))
        exact = np.sort(d[det])[::-1][5]  # the in-sample fit: 5 of 500 lost on the calibration half
        fit_exact_loss.append(100.0 * np.mean(detn & (dn > exact)))
    assert 0.8 < np.mean(new_loss) <= 1.05  # by design ~1.0; 400 draws: Monte Carlo error ~0.03
    assert np.mean(fit_exact_loss) > 1.15
