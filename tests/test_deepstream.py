"""`codedresnext deepstream`: nvinfer configs use only keys nvinfer documents, and nvinfer's
preprocessing (net-scale-factor * (x - offsets)) followed by the DeepStream twin graph gives the
detector's own scores on real CIFAR images."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from test_runtime_graphs import MEAN, STD, make_export

from codedresnext.artifact import Preprocessing, load_manifest, save_manifest
from codedresnext.deploy.deepstream import nvinfer_preprocessing, parse_config, write_deepstream
from codedresnext.errors import GraphError
from codedresnext.runtime import Detector, open_backend

# The [property] keys Gst-nvinfer parses, from its property parser, gstnvinfer_property_parser.h
# (DeepStream SDK API reference, 8.0: docs.nvidia.com/metropolis/deepstream/dev-guide/sdk-api/
# gstnvinfer__property__parser_8h.html), and the Gst-nvinfer plugin manual's property table.
NVINFER_KEYS = {
    "parse-func", "gie-unique-id", "process-mode", "interval", "labelfile-path", "gpu-id",
    "secondary-reinfer-interval", "output-tensor-meta", "disable-output-host-copy", "auto-inc-mem",
    "max-gpu-mem-per", "enable-dla", "use-dla-core", "dump-input-tensor", "dump-output-tensor",
    "batch-size", "network-mode", "model-engine-file", "int8-calib-file", "workspace-size",
    "output-blob-names", "is-classifier", "network-type", "force-implicit-batch-dim", "infer-dims",
    "model-color-format", "net-scale-factor", "offsets", "mean-file", "maintain-aspect-ratio",
    "symmetric-padding", "scaling-filter", "scaling-compute-hw", "onnx-file", "model-file",
    "proto-file", "tlt-encoded-model", "tlt-model-key", "uff-file", "custom-lib-path",
    "engine-create-func-name", "parse-bbox-func-name", "parse-classifier-func-name",
    "num-detected-classes", "classifier-threshold", "classifier-async-mode", "classifier-type",
    "operate-on-gie-id", "operate-on-class-ids", "filter-out-class-ids", "input-object-min-width",
    "input-object-min-height", "input-object-max-width", "input-object-max-height",
    "cluster-mode", "segmentation-threshold", "output-io-formats", "layer-device-precision",
    "network-input-order", "crop-objects-to-roi-boundary", "input-tensor-from-meta",
}  # fmt: skip
REQUIRED = {
    "onnx-file", "model-engine-file", "network-mode", "batch-size", "net-scale-factor", "offsets",
    "model-color-format", "classifier-threshold", "labelfile-path", "process-mode", "operate-on-class-ids",
}  # fmt: skip


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    d = make_export(tmp_path_factory.mktemp("ds_export"))
    m = load_manifest(d)
    m.preprocessing = Preprocessing(mean=MEAN, std=STD, size=32)
    save_manifest(d, m)
    return d


@pytest.fixture(scope="module")
def ds_dir(export_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    write_deepstream(export_dir, ["cat", "dog"], out, precision="fp32", batch=8)
    return out


def test_configs_use_documented_keys_and_the_detector_threshold(export_dir, ds_dir):
    m = load_manifest(export_dir)
    for name in ("class_cat", "class_dog"):
        cfg = parse_config((ds_dir / f"config_{name}.txt").read_text())
        prop = cfg["property"]
        assert set(prop) <= NVINFER_KEYS, set(prop) - NVINFER_KEYS
        assert REQUIRED <= set(prop)
        assert prop["process-mode"] == "2" and prop["network-type"] == "1" and prop["network-mode"] == "0"
        assert prop["batch-size"] == "8" and prop["model-color-format"] == "0"
        assert float(prop["classifier-threshold"]) == m.graph(name).thresholds[m.graph(name).classes[0]]
        assert (ds_dir / prop["onnx-file"]).is_file()
        assert (ds_dir / prop["labelfile-path"]).read_text() == m.graph(name).classes[0] + "\n"
    app = parse_config((ds_dir / "deepstream_app.txt").read_text())
    assert [app[f"secondary-gie{i}"]["config-file"] for i in (0, 1)] == [
        "config_class_cat.txt",
        "config_class_dog.txt",
    ]
    assert app["secondary-gie0"]["gie-unique-id"] != app["secondary-gie1"]["gie-unique-id"]


def test_nvinfer_preprocessing_then_twin_equals_the_export(export_dir, ds_dir, real_images):
    """One scale + per-channel offsets, then the twin's Mul, == (x/255 - mean[c]) / std[c] per channel."""
    frames = real_images.images[:32]
    prop = parse_config((ds_dir / "config_class_cat.txt").read_text())["property"]
    scale = float(prop["net-scale-factor"])
    offsets = np.array([float(v) for v in prop["offsets"].split(";")], np.float32)
    x = frames.astype(np.float32).transpose(0, 3, 1, 2)  # nvinfer: planar RGB, 0..255
    y = scale * (x - offsets[None, :, None, None])
    _, _, factor = nvinfer_preprocessing(load_manifest(export_dir).preprocessing)
    want = (frames.astype(np.float32) / 255 - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    np.testing.assert_allclose(
        y * factor[None, :, None, None], want.transpose(0, 3, 1, 2), rtol=1e-5, atol=1e-5
    )
    with open_backend("ort", ds_dir / prop["onnx-file"], threads=1) as be:
        got = be.infer({"images": np.ascontiguousarray(y, np.float32)})["logits"][:, 0]
    with Detector(export_dir, "class_cat", threads=1) as det:
        ref = det.score(frames)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert not np.allclose(factor, 1.0)  # CIFAR's std is per channel: the twin's Mul is needed


def test_missing_twin_and_unknown_class_write_nothing(export_dir, tmp_path):
    with pytest.raises(GraphError, match="no fp16 twin of class_cat"):
        write_deepstream(export_dir, ["cat"], tmp_path / "a", precision="fp16")
    with pytest.raises(GraphError, match="no detector graph for class"):
        write_deepstream(export_dir, ["zebra"], tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    r = subprocess.run(
        [sys.executable, "-m", "codedresnext.cli", "deepstream", str(export_dir), "--classes", "zebra"]
        + ["--out", str(tmp_path / "c")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "zebra" in r.stderr
