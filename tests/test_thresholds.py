"""Thresholds land in the manifest and in the ONNX metadata, the sha256 follows, graphs still run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from codedresnext import artifact
from codedresnext._io import sha256_file
from codedresnext.errors import GraphError
from codedresnext.runtime.thresholds.detector import read_thresholds, write_thresholds


def _graph(path, classes, kind, seed):
    """A minimal detector-shaped graph: images (B,3,4,4) -> logits (B, len(classes))."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed).normal(size=(48, len(classes))).astype(np.float32)
    g = helper.make_graph(
        [
            helper.make_node("Flatten", ["images"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        ],
        "det",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(classes)])],
        [numpy_helper.from_array(w, "w")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    meta = {artifact.META_FORMAT: "1", artifact.META_KIND: kind, artifact.META_CLASSES: classes}
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, json.dumps(v)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return artifact.ManifestEntry(
        name=path.stem, file=path.name, kind=kind, classes=classes, sha256=sha256_file(path)
    )


@pytest.fixture
def export_dir(tmp_path):
    graphs = [
        _graph(tmp_path / "full.onnx", ["cat", "dog", "frog"], "full", 0),
        _graph(tmp_path / "class_cat.onnx", ["cat"], "class", 1),
        _graph(tmp_path / "class_dog.onnx", ["dog"], "class", 2),
        _graph(tmp_path / "subset_cat_frog.onnx", ["cat", "frog"], "subset", 3),
    ]
    artifact.Manifest(graphs=graphs).save(tmp_path)
    return tmp_path


def _run(path, x):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]


def test_thresholds_written_to_manifest_and_metadata(export_dir):
    x = np.random.default_rng(5).normal(size=(3, 3, 4, 4)).astype(np.float32)
    before = _run(export_dir / "class_cat.onnx", x)
    full_sha = sha256_file(export_dir / "full.onnx")
    updated = write_thresholds(export_dir, {"cat": 0.25, "dog": -1.5}, source={"criterion": "max F1"})
    assert updated == ["class_cat", "class_dog"]  # the subset also needs frog: left alone

    m = artifact.load_manifest(export_dir)
    assert m.graph("class_cat").thresholds == {"cat": 0.25}
    assert m.graph("class_dog").thresholds == {"dog": -1.5}
    assert m.graph("subset_cat_frog").thresholds is None and m.graph("full").thresholds is None
    assert m.thresholds == {"cat": 0.25, "dog": -1.5}
    assert m.thresholds_source == {"criterion": "max F1"}
    for g in m.graphs:  # every sha256 matches the file on disk
        assert g.sha256 == sha256_file(export_dir / g.file)
    assert sha256_file(export_dir / "full.onnx") == full_sha

    meta = artifact.read_metadata(export_dir / "class_dog.onnx")
    assert meta[artifact.META_THRESHOLDS] == {"dog": -1.5}
    assert meta[artifact.META_CLASSES] == ["dog"]  # other metadata kept
    assert read_thresholds(export_dir) == {"class_cat": {"cat": 0.25}, "class_dog": {"dog": -1.5}}
    np.testing.assert_array_equal(_run(export_dir / "class_cat.onnx", x), before)
    assert not list(export_dir.glob(".*.tmp"))  # atomic writes leave no temp files

    # a second call replaces (never duplicates) the metadata entry and fills in the subset
    write_thresholds(export_dir, {"cat": 1.0, "frog": 2.0})
    import onnx

    props = [p.key for p in onnx.load(str(export_dir / "class_cat.onnx")).metadata_props]
    assert props.count(artifact.META_THRESHOLDS) == 1
    got = read_thresholds(export_dir)
    assert got["class_cat"] == {"cat": 1.0} and got["class_dog"] == {"dog": -1.5}
    assert got["subset_cat_frog"] == {"cat": 1.0, "frog": 2.0}


def test_bad_thresholds_are_refused_and_nothing_changes(export_dir):
    before = (export_dir / "manifest.json").read_bytes()
    with pytest.raises(GraphError, match="finite"):
        write_thresholds(export_dir, {"cat": float("nan")})
    with pytest.raises(GraphError, match="--classes all"):
        write_thresholds(export_dir, {"horse": 0.0})
    assert (export_dir / "manifest.json").read_bytes() == before
    with pytest.raises(GraphError, match="manifest"):
        write_thresholds(export_dir / "nowhere", {"cat": 0.0})


def test_disagreeing_manifest_is_detected(export_dir):
    write_thresholds(export_dir, {"cat": 0.5})
    m = artifact.load_manifest(export_dir)
    m.graph("class_cat").thresholds = {"cat": 9.0}
    artifact.save_manifest(export_dir, m)
    with pytest.raises(GraphError, match="differ"):
        read_thresholds(export_dir)


def test_runtime_detector_uses_the_written_thresholds(export_dir):
    from codedresnext.runtime.api.detector import Detector, SubsetDetector

    write_thresholds(export_dir, {"cat": 0.25, "dog": -1.5, "frog": 3.0})
    det = Detector(export_dir, "class_dog")
    assert det.threshold == pytest.approx(-1.5)
    x = np.random.default_rng(1).normal(size=(64, 3, 4, 4)).astype(np.float32)
    score = det.score(x)
    np.testing.assert_array_equal(det.decide(x), score > np.float32(-1.5))
    assert 0 < det.decide(x).sum() < 64  # the threshold really splits this batch
    sub = SubsetDetector(export_dir, "subset_cat_frog")
    np.testing.assert_allclose(sub.thresholds, [0.25, 3.0])
    # also from the graph file alone (metadata), without the manifest entry
    (export_dir / "manifest.json").unlink()
    assert Detector(export_dir / "class_cat.onnx").threshold == pytest.approx(0.25)
