"""Issue 28 items 1-3 reproduced on a real export (tiny preset, random weights, real CIFAR-10 images):
swapped graphs, paths outside the export, edited graphs, NaN/Inf input. Each must give the project's
own error (ManifestError / NonFiniteInput) naming the file or the batch indices.

Tried here (and what each gives now):
- class_cat.onnx replaced by class_dog.onnx: Detector, bench, Triton writer, write_thresholds ->
  ManifestError (sha256); with verify_hash=False -> ManifestError (graph metadata classes differ).
- a manifest `file` of "../other/x.onnx", an absolute path, "sub/x.onnx" -> ManifestError at parse.
- class_cat.onnx a symlink to a file outside the export -> ManifestError (resolves outside).
- graph missing -> ManifestError naming it; source.pt swapped -> ManifestError in bench.
- NaN / +Inf / -Inf in float input: fp32 and int8-cpu Detector, the cascade, RejectDetector, Backend.infer ->
  NonFiniteInput naming the indices; check_finite=False runs them (the fp32 scores are then NaN);
  uint8 frames are not checked.
- an interrupted `evaluate --graphs` write-back (a graph re-stamped, manifest not yet written) ->
  write_thresholds completes it, the runtime verifies the result.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from codedresnext.artifact import GraphKind, load_manifest
from codedresnext.errors import ManifestError, NonFiniteInput

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, small_tree) -> Path:
    export = pytest.importorskip("codedresnext.export")
    from codedresnext.export.options import Int8Options
    from codedresnext.model_config import build_config

    out = tmp_path_factory.mktemp("safety") / "export"
    export.export_graphs(
        export.ExportOptions(
            out=out,
            preset="tiny",
            classes=["cat", "dog"],
            segments=True,
            reject_block=build_config("tiny").coded_blocks[0],
            int8=Int8Options(small_tree, images=32, precisions=("int8-cpu",), eval_images=0),
            progress=False,
            verify=False,
        )
    )
    return out


@pytest.fixture
def d(export_dir, tmp_path) -> Path:
    """A fresh copy of the export that a test may damage."""
    return Path(shutil.copytree(export_dir, tmp_path / "copy"))


def _x(frames: np.ndarray) -> np.ndarray:
    x = (frames.astype(np.float32) / 255 - (0.4914, 0.4822, 0.4465)) / (0.2023, 0.1994, 0.2010)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32)


def _edit_manifest(d: Path, name: str, **fields) -> None:
    m = json.loads((d / "manifest.json").read_text())
    for g in m["graphs"]:
        if g["name"] == name:
            g.update(fields)
    (d / "manifest.json").write_text(json.dumps(m))


# --- swapped / edited graphs ------------------------------------------------------------------------
def test_swapped_class_graph_is_refused_by_hash_and_by_metadata(d):
    from codedresnext.runtime import Detector

    shutil.copyfile(d / "class_dog.onnx", d / "class_cat.onnx")
    with pytest.raises(ManifestError, match=r"class_cat.onnx has sha256 .*replaced or modified.*re-export"):
        Detector(d, "class_cat", threads=1)
    with pytest.raises(ManifestError, match=r"classes: graph \['dog'\], manifest \['cat'\]"):
        Detector(d, "class_cat", threads=1, verify_hash=False)


def test_an_intact_export_opens_and_the_same_file_path_is_verified_too(d, real_images):
    from codedresnext.runtime import Detector

    with Detector(d, "class_cat", threads=1) as a, Detector(d / "class_cat.onnx", threads=1) as b:
        assert a.class_name == b.class_name == "cat"
        np.testing.assert_array_equal(
            a.score(_x(real_images.images[:4])), b.score(_x(real_images.images[:4]))
        )
    shutil.copyfile(d / "class_dog.onnx", d / "class_cat.onnx")
    with pytest.raises(ManifestError, match="sha256"):
        Detector(d / "class_cat.onnx", threads=1)  # a file of an export goes through its manifest


def test_swapped_graph_fails_bench_triton_and_threshold_write_back(d, tmp_path):
    from codedresnext.deploy.triton import write_repository
    from codedresnext.runtime.bench.options import BenchOptions
    from codedresnext.runtime.bench.run import run_bench
    from codedresnext.runtime.thresholds.detector import write_thresholds

    shutil.copyfile(d / "class_dog.onnx", d / "class_cat.onnx")
    opts = BenchOptions(
        graphs=["class_cat"],
        batches=(1,),
        warmup=0.0,
        duration=0.01,
        rounds=1,
        min_iterations=1,
        torch_peer=False,
        memory=False,
        threads=1,
        progress=False,
    )
    with pytest.raises(ManifestError, match="class_cat"):
        run_bench(d, opts)
    repo = tmp_path / "repo"
    with pytest.raises(ManifestError, match="class_cat"):
        write_repository(d, repo, graphs=["class_cat"])
    assert not repo.exists()  # nothing half-written
    before = (d / "manifest.json").read_bytes()
    with pytest.raises(ManifestError, match="class_cat"):
        write_thresholds(d, {"cat": 0.1, "dog": 0.2})
    assert (d / "manifest.json").read_bytes() == before


def test_missing_graph_and_symlink_out_of_the_export(d, tmp_path):
    from codedresnext.runtime import Detector

    outside = tmp_path / "elsewhere.onnx"
    shutil.copyfile(d / "class_cat.onnx", outside)
    (d / "class_cat.onnx").unlink()
    with pytest.raises(ManifestError, match="lists class_cat.onnx but .* is missing"):
        Detector(d, "class_cat", threads=1)
    (d / "class_cat.onnx").symlink_to(outside)  # same bytes: only containment can refuse it
    with pytest.raises(ManifestError, match="outside the export directory"):
        Detector(d, "class_cat", threads=1)


@pytest.mark.parametrize("bad", ["../other/x.onnx", "/tmp/x.onnx", "sub/x.onnx", "..", "a\\b.onnx", ""])
def test_manifest_paths_must_be_plain_names(d, bad):
    from codedresnext.runtime import Detector, EarlyExitClassifier

    _edit_manifest(d, "class_cat", file=bad)
    with pytest.raises(ManifestError, match="not a plain file name"):
        load_manifest(d)
    with pytest.raises(ManifestError):
        Detector(d, "class_cat", threads=1)
    _edit_manifest(d, "class_cat", file="class_cat.onnx")
    seg = load_manifest(d).of_kind(GraphKind.SEGMENT)[0].name
    _edit_manifest(d, seg, file=bad)
    with pytest.raises(ManifestError):
        EarlyExitClassifier.from_directory(d, threads=1)


def test_swapped_source_checkpoint_is_refused_by_bench(d):
    from codedresnext.runtime.bench.run import check_source

    check_source(d, load_manifest(d))  # intact: passes
    (d / "source.pt").write_bytes(b"not the weights")
    with pytest.raises(ManifestError, match="source.pt has another sha256"):
        check_source(d, load_manifest(d))


def test_interrupted_threshold_write_back_is_completed(d):
    from codedresnext.runtime import Detector
    from codedresnext.runtime.thresholds.detector import _stamped, write_thresholds

    th = {"cat": 0.25, "dog": -0.5}
    # an earlier run re-stamped class_cat.onnx and died before writing the manifest
    (d / "class_cat.onnx").write_bytes(_stamped(d / "class_cat.onnx", {"cat": 0.25}))
    with pytest.raises(ManifestError, match="sha256"):
        Detector(d, "class_cat", threads=1)
    updated = write_thresholds(d, th)
    assert {"class_cat", "class_dog"} <= set(updated)
    with Detector(d, "class_cat", threads=1) as det:
        assert det.threshold == pytest.approx(0.25)
    # a swapped graph is not mistaken for an interrupted run
    shutil.copyfile(d / "class_dog.onnx", d / "class_cat.onnx")
    with pytest.raises(ManifestError, match="sha256"):
        write_thresholds(d, th)


def test_retyped_manifest_field_is_a_manifest_error(d):
    _edit_manifest(d, "class_cat", flops="many", classes="cat")
    with pytest.raises(ManifestError, match=r"expected .*got"):
        load_manifest(d)


# --- non-finite input -------------------------------------------------------------------------------
def _poisoned(real_images) -> np.ndarray:
    x = _x(real_images.images[:6])
    x[1, 0, 3, 3] = np.nan
    x[3, 2, 0, 0] = np.inf
    x[4, 1, 5, 5] = -np.inf
    return x


@pytest.mark.parametrize("name", ["class_cat", "class_cat_int8_cpu"])
def test_nan_inf_rejected_by_detectors_naming_the_indices(d, real_images, name):
    from codedresnext.runtime import Detector

    x = _poisoned(real_images)
    with Detector(d, name, threads=1) as det:
        with pytest.raises(NonFiniteInput, match=r"batch index 1, 3, 4;"):
            det.score(x)
        clean = det.score(np.delete(x, [1, 3, 4], axis=0))  # the others still run
        assert np.isfinite(clean).all() and clean.shape == (3,)
        assert np.isfinite(det.score(real_images.images[:4])).all()  # uint8 frames: no check needed
    with Detector(d, name, threads=1, check_finite=False) as det:
        scores = det.score(x)  # opted out: runs, and shows why the default refuses
    assert scores.shape == (6,)
    if name == "class_cat":
        assert np.isnan(scores[[1, 3, 4]]).all()


@pytest.mark.parametrize("precision", ["fp32", "int8-cpu"])
def test_nan_inf_rejected_by_the_cascade(d, real_images, precision):
    from codedresnext.runtime import EarlyExitClassifier

    x = _poisoned(real_images)
    with EarlyExitClassifier.from_directory(d, precision=precision, threads=1) as casc:
        with pytest.raises(NonFiniteInput, match=r"batch index 1, 3, 4;"):
            casc.predict(x)
        with pytest.raises(NonFiniteInput):
            casc.run_all(x)
        assert len(casc.predict(x[[0, 2, 5]]).predictions) == 3


def test_nan_inf_rejected_by_the_reject_detector(d, real_images):
    from codedresnext.runtime import RejectDetector

    x = _poisoned(real_images)
    with RejectDetector.from_directory(d, "cat", threads=1) as rej:
        with pytest.raises(NonFiniteInput, match=r"batch index 1, 3, 4;"):
            rej.score(x)
        assert rej.run(x[[0, 2, 5]]).scores.shape == (3,)
    with RejectDetector.from_directory(d, "cat", threads=1, check_finite=False) as rej:
        assert rej.run(x).distance.shape == (6,)


def test_backend_infer_checks_float_inputs_only(d):
    from codedresnext.runtime import open_backend

    x = np.zeros((40, 3, 32, 32), np.float32)
    x[[7, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 30]] = np.nan
    with open_backend("ort", d / "full.onnx", threads=1) as be:
        with pytest.raises(NonFiniteInput, match=r"7, 12, 13, .*\(12 in all\)"):
            be.infer({"images": x})
    with open_backend("ort", d / "full.onnx", threads=1, check_finite=False) as be:
        assert np.isnan(be.infer({"images": x})["logits"][7]).all()
