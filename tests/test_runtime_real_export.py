"""The runtime on real exporter output (tiny preset, random weights) and real CIFAR-10 images."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from codedresnext.artifact import GraphKind, load_manifest
from codedresnext.runtime import Detector, EarlyExitClassifier, RejectDetector, open_backend
from codedresnext.runtime.api.postprocess import reject_score

INF = float("inf")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    export = pytest.importorskip("codedresnext.export")
    pytest.importorskip("torch")
    from codedresnext.model_config import build_config

    out = tmp_path_factory.mktemp("tiny_rt") / "export"
    export.export_graphs(
        export.ExportOptions(
            out=out,
            preset="tiny",
            classes=["cat"],
            masked=True,
            multi_exit=True,
            segments=True,
            reject_block=build_config("tiny").coded_blocks[0],
            progress=False,
            verify=False,
        )
    )
    return out


def _x(frames):
    x = (frames.astype(np.float32) / 255 - (0.4914, 0.4822, 0.4465)) / (0.2023, 0.1994, 0.2010)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32)


def _exit_of_segment(manifest, name):
    """Coded-block exit index j of a segment's exit (its last block)."""
    return manifest.model.coded_blocks.index(manifest.graph(name).blocks[1])


def test_cascade_equals_multi_exit_graph_on_real_segments(tiny, real_images):
    m = load_manifest(tiny)
    casc = EarlyExitClassifier.from_directory(tiny, thresholds=None, threads=1)
    assert casc.thresholds == [INF] * casc.num_exits  # uncalibrated: never exits early
    x = _x(real_images.images)
    me = open_backend("ort", tiny / "multi_exit.onnx", threads=1).infer({"images": x})
    res = casc.predict(x)
    np.testing.assert_array_equal(res.predictions, me["logits"].argmax(1))
    assert (res.exit_index == casc.num_exits).all()
    exits, logits = casc.run_all(x)
    np.testing.assert_allclose(logits, me["logits"], atol=1e-4, rtol=1e-4)
    for j, si in enumerate(casc.exit_segments):
        jj = _exit_of_segment(m, casc.refs[si].name)
        np.testing.assert_allclose(exits[j], me[f"exit{jj}_scores"], atol=1e-5, rtol=1e-4)


def test_real_per_sample_exits_with_compaction(tiny, real_images):
    x = _x(real_images.images)
    full = EarlyExitClassifier.from_directory(tiny, threads=1)
    exits, logits = full.run_all(x)
    c0 = exits[0].max(1)
    t0 = float(np.median(c0))
    casc = EarlyExitClassifier.from_directory(tiny, thresholds=[t0, INF], threads=1)
    res = casc.predict(x)
    left = c0 > t0
    assert 0 < left.sum() < len(x)
    np.testing.assert_array_equal(res.exit_index, np.where(left, 0, 2))
    np.testing.assert_array_equal(res.predictions, np.where(left, exits[0].argmax(1), logits.argmax(1)))
    fl = [g.flops for g in load_manifest(tiny).of_kind(GraphKind.SEGMENT)]
    np.testing.assert_allclose(res.flops, np.where(left, fl[0], sum(fl)))


def test_detector_on_real_pruned_graph_equals_masked_graph(tiny, real_images):
    det = Detector(tiny, "class_cat", threshold=0.0, threads=1)
    masked = open_backend("ort", tiny / "masked_cat.onnx", threads=1).infer(
        {"images": _x(real_images.images)}
    )
    np.testing.assert_allclose(det.score(real_images.images), masked["logits"][:, 0], atol=1e-4, rtol=1e-4)


def test_real_early_reject_compaction(tiny, real_images):
    keep_all = RejectDetector.from_directory(tiny, "cat", threshold=0.0, reject_threshold=INF, threads=1)
    base = keep_all.run(real_images.images)
    assert not base.rejected.any() and np.isfinite(base.scores).all()
    t = float(np.median(base.distance))
    det = RejectDetector.from_directory(tiny, "cat", threshold=0.0, reject_threshold=t, threads=1)
    res = det.run(real_images.images)
    np.testing.assert_array_equal(res.rejected, base.distance > t)
    np.testing.assert_allclose(res.scores[~res.rejected], base.scores[~res.rejected], atol=1e-5)
    assert res.flops[res.rejected].max() < res.flops[~res.rejected].min()


def test_calibrate_cli_on_real_export(tiny, cifar10_tgz, real_images, tmp_path):
    import shutil

    d = tmp_path / "e"
    shutil.copytree(tiny, d)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "codedresnext.cli",
            "calibrate",
            str(d),
            "--data",
            str(cifar10_tgz),
            "--limit",
            "100",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    m = load_manifest(d)
    cal = m.calibration["early_exit"]
    assert cal["calibration"]["accuracy_loss_points"] <= 0.5 + 1e-9
    assert "test split" in m.calibration["split"]
    casc = EarlyExitClassifier.from_directory(d, threads=1)
    assert casc.thresholds == list(cal["thresholds"].values())
    # the reject pair: the learned rule (fitted on the training split) sits on part A, and the
    # detector built from the directory applies it to the energies part A outputs
    rule = m.graph("reject_cat_a").reject_rule
    assert rule is not None and "training split" in rule.fitted_on
    assert m.calibration["early_reject"]["rule"]["rule"] == "learned"
    assert m.graph("reject_cat_b").reject_rule is None
    with RejectDetector.from_directory(d, "cat", threads=1) as det:
        assert det.reject_rule == rule
        res = det.run(real_images.images)
        np.testing.assert_allclose(res.distance, reject_score(rule, res.energies), rtol=1e-12)
    with RejectDetector.from_directory(d, "cat", reject_rule="distance", threads=1) as det:
        assert det.reject_rule is None  # forced back to the codeword distance part A outputs
        res = det.run(real_images.images)
        np.testing.assert_array_equal(
            res.distance, det.a.run(real_images.images)["reject_distance"].reshape(-1)
        )


def test_calibrate_learned_rule_needs_a_training_split(tiny, cifar100_npz, tmp_path):
    import shutil

    from codedresnext.errors import DataError
    from codedresnext.runtime.thresholds.calibrate import calibrate_directory

    d = tmp_path / "e"
    shutil.copytree(tiny, d)
    before = (d / "manifest.json").read_bytes()
    with pytest.raises(DataError, match="training split.*reject_rule='distance'"):  # an API argument
        calibrate_directory(d, cifar100_npz, reject_rule="learned")
    assert (d / "manifest.json").read_bytes() == before  # nothing half-written


def test_predict_cli(tiny, real_images, tmp_path):
    from PIL import Image

    files = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(real_images.images[i]).save(p)
        files.append(str(p))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "codedresnext.cli",
            "predict",
            *files,
            "--dir",
            str(tiny),
            "--graph",
            "full",
            "--top",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(files[0]) and lines[0].count(",") == 1
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "codedresnext.cli",
            "predict",
            files[0],
            "--graph",
            str(tiny / "class_cat.onnx"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "cat logit" in r.stdout and "no decision" in r.stdout and "evaluate" in r.stdout
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "codedresnext.cli",
            "predict",
            str(tmp_path / "missing.png"),
            "--graph",
            str(tiny / "full.onnx"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "no such file" in r.stderr
