"""Backends, detectors and cascades close what they open; use after close is a clear error."""

from __future__ import annotations

import numpy as np
import pytest
from test_runtime_graphs import make_export

from codedresnext.errors import BackendClosed, GraphError
from codedresnext.runtime import EarlyExitClassifier, RejectDetector, SubsetDetector, open_backend
from codedresnext.runtime.api.detector import Detector


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("lifecycle"))


def _frames(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_backend_context_manager_releases_the_session(export_dir):
    with open_backend("ort", export_dir / "full.onnx", threads=1) as be:
        out = be.infer(be.random_feed(2))
        assert out["logits"].shape == (2, 10) and be.session is not None and not be.closed
    assert be.closed and be.session is None  # the ONNX Runtime session is dropped
    with pytest.raises(BackendClosed, match="closed; open the graph again"):
        be.infer(be.random_feed(2))
    be.close()  # idempotent


def test_backend_closes_on_error_inside_with(export_dir):
    with (
        pytest.raises(GraphError, match="missing input"),
        open_backend("ort", export_dir / "full.onnx") as be,
    ):
        be.infer({})
    assert be.closed


def test_random_feed_matches_the_inputs(export_dir):
    with open_backend("ort", export_dir / "full_uint8.onnx", threads=1) as be:
        feed = be.random_feed(3, seed=1)
        assert feed["frames"].dtype == np.uint8 and feed["frames"].shape == (3, 32, 32, 3)
        np.testing.assert_array_equal(feed["frames"], be.random_feed(3, seed=1)["frames"])


def test_detectors_close_their_backend(export_dir):
    with Detector(export_dir, "class_cat", threads=1) as det:
        assert det.score(_frames()).shape == (4,)
    assert det.closed and det.backend.closed
    with pytest.raises(BackendClosed):
        det.score(_frames())
    sub = SubsetDetector(export_dir, "subset_cat_dog", threads=1)
    sub.close()
    with pytest.raises(BackendClosed):
        sub.decide(_frames())


def test_a_refused_detector_leaves_nothing_open(export_dir, monkeypatch):
    opened = []
    import codedresnext.runtime.api.detector as detector_mod

    real = detector_mod.open_backend

    def spy(*a, **kw):
        be = real(*a, **kw)
        opened.append(be)
        return be

    monkeypatch.setattr(detector_mod, "open_backend", spy)
    with pytest.raises(GraphError, match="SubsetDetector"):
        Detector(export_dir, "subset_cat_dog")  # two classes: refused after the backend was opened
    assert opened and all(be.closed for be in opened)


def test_reject_detector_closes_both_parts(export_dir):
    with RejectDetector.from_directory(export_dir, "cat", threads=1) as rej:
        r = rej.run(_frames())
        assert r.scores.shape == (4,)
    assert rej.a.closed and rej.b.closed
    with pytest.raises(BackendClosed):
        rej.run(_frames())


def test_cascade_closes_every_segment(export_dir):
    with EarlyExitClassifier.from_directory(export_dir, threads=1) as casc:
        assert casc.predict(_frames()).predictions.shape == (4,)
    assert len(casc.segments) == 3 and all(s.closed for s in casc.segments)
    with pytest.raises(BackendClosed):
        casc.predict(_frames())


def test_cascade_refused_for_bad_thresholds_closes_segments(export_dir, monkeypatch):
    import codedresnext.runtime.api.cascade as cascade_mod

    opened = []
    real = cascade_mod.open_backend
    monkeypatch.setattr(
        cascade_mod, "open_backend", lambda *a, **kw: opened.append(real(*a, **kw)) or opened[-1]
    )
    with pytest.raises(GraphError, match="thresholds given"):
        EarlyExitClassifier.from_directory(export_dir, thresholds=[0.5], threads=1)
    assert len(opened) == 3 and all(be.closed for be in opened)
