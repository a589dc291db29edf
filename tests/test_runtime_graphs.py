"""Small hand-made ONNX exports (onnx.helper) that mimic the exporter's artifact format, and the
backend-interface tests that use them. Other runtime tests import `make_export` from here.

The synthetic network: f0 = relu(GAP(x) @ A0) (segment 0, exit 0 = softmax(f0 @ E0)),
f1 = relu(f0 @ A1) (segment 1, exit 1 = softmax(f1 @ E1)), logits = f1 @ W (segment 2).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from codedresnext._io import sha256_file
from codedresnext.artifact import (
    META_CLASSES,
    META_FORMAT,
    META_KIND,
    META_PREPROCESSING,
    META_THRESHOLDS,
    GraphKind,
    Manifest,
    ManifestEntry,
    SegmentInfo,
    TensorInfo,
    save_manifest,
)
from codedresnext.errors import BackendUnavailable, GraphError

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
HID = 16
SEG_FLOPS = [1000.0, 500.0, 100.0]


def weights(seed: int = 0, k: int = 10) -> dict[str, np.ndarray]:
    r = np.random.default_rng(seed)
    return {
        "A0": r.standard_normal((3, HID)).astype(np.float32) * 2,
        "E0": r.standard_normal((HID, k)).astype(np.float32) * 3,
        "A1": r.standard_normal((HID, HID)).astype(np.float32) / 2,
        "E1": r.standard_normal((HID, k)).astype(np.float32) * 3,
        "W": r.standard_normal((HID, k)).astype(np.float32),
        "C": r.standard_normal((1, HID)).astype(np.float32),
    }


def reference(x: np.ndarray, w: dict) -> dict[str, np.ndarray]:
    """numpy forward of the synthetic network on normalised float NCHW input."""
    g = x.mean((2, 3))
    f0 = np.maximum(g @ w["A0"], 0)
    f1 = np.maximum(f0 @ w["A1"], 0)

    def sm(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    return {
        "f0": f0,
        "exit0": sm(f0 @ w["E0"]),
        "f1": f1,
        "exit1": sm(f1 @ w["E1"]),
        "logits": f1 @ w["W"],
        "reject": np.linalg.norm(f0 - w["C"], axis=1, keepdims=True),
    }


def _vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def _model(nodes, inputs, outputs, inits, meta: dict, fp16: bool = False) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(v.astype(np.float16) if fp16 else v, k) for k, v in inits.items()]
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    for k, v in meta.items():
        m.metadata_props.add(key=k, value=json.dumps(v))
    onnx.checker.check_model(m)
    return m


def _stem(inp: str, out: str, uint8: bool) -> tuple[list, dict]:
    """images/frames -> (B, 3) pooled features."""
    nodes, inits = [], {}
    src = inp
    if uint8:
        inits.update(
            {"mean": np.array(MEAN, np.float32) * 255, "istd": 1 / (np.array(STD, np.float32) * 255)}
        )
        nodes += [
            helper.make_node("Cast", [inp], ["xf"], to=TensorProto.FLOAT),
            helper.make_node("Sub", ["xf", "mean"], ["xs"]),
            helper.make_node("Mul", ["xs", "istd"], ["xn"]),
            helper.make_node("Transpose", ["xn"], ["xt"], perm=[0, 3, 1, 2]),
        ]
        src = "xt"
    nodes += [
        helper.make_node("GlobalAveragePool", [src], ["gp"]),
        helper.make_node("Flatten", ["gp"], [out], axis=1),
    ]
    return nodes, inits


def build_graphs(w: dict, size: int = 32) -> dict[str, tuple[onnx.ModelProto, str, list[str]]]:
    """{name: (model, kind, classes)}: full, masked, class, subset, multi-exit, segments, reject, frames."""
    pre = {"mean": list(MEAN), "std": list(STD), "size": size, "layout": "NCHW", "dtype": "float32"}
    img = _vi("images", TensorProto.FLOAT, ["batch", 3, size, size])
    frames = _vi("frames", TensorProto.UINT8, ["batch", size, size, 3])
    feat = _vi("features", TensorProto.FLOAT, ["batch", HID])

    def meta(kind, classes, th=None):
        d = {META_FORMAT: "1", META_KIND: kind, META_CLASSES: classes, META_PREPROCESSING: pre}
        if th is not None:
            d[META_THRESHOLDS] = th
        return d

    def trunk(inp, uint8=False):
        nodes, inits = _stem(inp, "g", uint8)
        nodes += [
            helper.make_node("MatMul", ["g", "A0"], ["h0"]),
            helper.make_node("Relu", ["h0"], ["f0"]),
            helper.make_node("MatMul", ["f0", "A1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["f1"]),
        ]
        return nodes, {**inits, "A0": w["A0"], "A1": w["A1"]}

    out = {}
    k = w["W"].shape[1]
    nodes, inits = trunk("images")
    full_nodes = nodes + [helper.make_node("MatMul", ["f1", "W"], ["logits"])]
    logits_vi = _vi("logits", TensorProto.FLOAT, ["batch", k])
    out["full"] = (
        _model(full_nodes, [img], [logits_vi], {**inits, "W": w["W"]}, meta("full", CLASSES)),
        "full",
        CLASSES,
    )
    out["masked_cat"] = (
        _model(full_nodes, [img], [logits_vi], {**inits, "W": w["W"]}, meta("masked", CLASSES)),
        "masked",
        CLASSES,
    )
    for c in (3, 5):
        nodes_c = nodes + [helper.make_node("MatMul", ["f1", "Wc"], ["logits"])]
        out[f"class_{CLASSES[c]}"] = (
            _model(
                nodes_c,
                [img],
                [_vi("logits", TensorProto.FLOAT, ["batch", 1])],
                {**inits, "Wc": w["W"][:, c : c + 1]},
                meta("class", [CLASSES[c]], {CLASSES[c]: 0.5}),
            ),
            "class",
            [CLASSES[c]],
        )
    nodes_s = nodes + [helper.make_node("MatMul", ["f1", "Ws"], ["logits"])]
    out["subset_cat_dog"] = (
        _model(
            nodes_s,
            [img],
            [_vi("logits", TensorProto.FLOAT, ["batch", 2])],
            {**inits, "Ws": w["W"][:, [3, 5]]},
            meta("subset", ["cat", "dog"], {"cat": 0.5, "dog": -0.5}),
        ),
        "subset",
        ["cat", "dog"],
    )
    me_nodes = full_nodes + [
        helper.make_node("MatMul", ["f0", "E0"], ["z0"]),
        helper.make_node("Softmax", ["z0"], ["exit0_scores"], axis=1),
        helper.make_node("MatMul", ["f1", "E1"], ["z1"]),
        helper.make_node("Softmax", ["z1"], ["exit1_scores"], axis=1),
    ]
    out["multi_exit"] = (
        _model(
            me_nodes,
            [img],
            [
                logits_vi,
                _vi("exit0_scores", TensorProto.FLOAT, ["batch", k]),
                _vi("exit1_scores", TensorProto.FLOAT, ["batch", k]),
            ],
            {**inits, "W": w["W"], "E0": w["E0"], "E1": w["E1"]},
            meta("multi-exit", CLASSES),
        ),
        "multi-exit",
        CLASSES,
    )
    exit_vi = _vi("exit_scores", TensorProto.FLOAT, ["batch", k])
    s_nodes, s_inits = _stem("images", "g", False)
    s0 = s_nodes + [
        helper.make_node("MatMul", ["g", "A0"], ["h0"]),
        helper.make_node("Relu", ["h0"], ["features"]),
        helper.make_node("MatMul", ["features", "E0"], ["z0"]),
        helper.make_node("Softmax", ["z0"], ["exit_scores"], axis=1),
    ]
    out["segment0"] = (
        _model(s0, [img], [feat, exit_vi], {"A0": w["A0"], "E0": w["E0"]}, meta("segment", CLASSES)),
        "segment",
        CLASSES,
    )
    s1_nodes = [
        helper.make_node("MatMul", ["features", "A1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["f1"]),
        helper.make_node("MatMul", ["f1", "E1"], ["z1"]),
        helper.make_node("Softmax", ["z1"], ["exit_scores"], axis=1),
        helper.make_node("Identity", ["f1"], ["features_next"]),
    ]
    out["segment1"] = (
        _model(
            s1_nodes,
            [feat],
            [_vi("features_next", TensorProto.FLOAT, ["batch", HID]), exit_vi],
            {"A1": w["A1"], "E1": w["E1"]},
            meta("segment", CLASSES),
        ),
        "segment",
        CLASSES,
    )
    s2 = [helper.make_node("MatMul", ["features_next", "W"], ["logits"])]
    out["segment2"] = (
        _model(
            s2,
            [_vi("features_next", TensorProto.FLOAT, ["batch", HID])],
            [logits_vi],
            {"W": w["W"]},
            meta("segment", CLASSES),
        ),
        "segment",
        CLASSES,
    )
    ra = s_nodes + [
        helper.make_node("MatMul", ["g", "A0"], ["h0"]),
        helper.make_node("Relu", ["h0"], ["features"]),
        helper.make_node("Sub", ["features", "C"], ["d"]),
        helper.make_node("ReduceL2", ["d"], ["reject_distance"], axes=[1], keepdims=1),
    ]
    out["reject_cat_a"] = (
        _model(
            ra,
            [img],
            [_vi("reject_distance", TensorProto.FLOAT, ["batch", 1]), feat],
            {"A0": w["A0"], "C": w["C"]},
            meta("reject", ["cat"], {"cat": 0.5}),
        ),
        "reject",
        ["cat"],
    )
    rb = [
        helper.make_node("MatMul", ["features", "A1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["f1"]),
        helper.make_node("MatMul", ["f1", "Wc"], ["logits"]),
    ]
    out["reject_cat_b"] = (
        _model(
            rb,
            [feat],
            [_vi("logits", TensorProto.FLOAT, ["batch", 1])],
            {"A1": w["A1"], "Wc": w["W"][:, 3:4]},
            meta("reject", ["cat"], {"cat": 0.5}),
        ),
        "reject",
        ["cat"],
    )
    f_nodes, f_inits = trunk("frames", uint8=True)
    f_nodes += [helper.make_node("MatMul", ["f1", "W"], ["logits"])]
    out["full_uint8"] = (
        _model(f_nodes, [frames], [logits_vi], {**f_inits, "W": w["W"]}, meta("full", CLASSES)),
        "full",
        CLASSES,
    )
    return out


def make_export(directory: Path, seed: int = 0) -> Path:
    """Write the synthetic graphs and a manifest in the exporter's format; returns the directory."""
    w = weights(seed)
    directory.mkdir(parents=True, exist_ok=True)
    flops = {
        "full": sum(SEG_FLOPS),
        "masked_cat": sum(SEG_FLOPS),
        "class_cat": 800.0,
        "class_dog": 800.0,
        "subset_cat_dog": 1200.0,
        "multi_exit": sum(SEG_FLOPS) + 40,
        "segment0": SEG_FLOPS[0],
        "segment1": SEG_FLOPS[1],
        "segment2": SEG_FLOPS[2],
        "reject_cat_a": 1000.0,
        "reject_cat_b": 300.0,
        "full_uint8": sum(SEG_FLOPS),
    }
    entries = []
    for name, (model, kind, classes) in build_graphs(w).items():
        path = directory / f"{name}.onnx"
        onnx.save(model, path)
        params = int(sum(np.prod(t.dims) for t in model.graph.initializer))
        entry = ManifestEntry(
            name=name,
            file=path.name,
            kind=kind,
            classes=classes,
            params=params,
            flops=flops[name],
            inputs=[TensorInfo(v.name) for v in model.graph.input],
            outputs=[TensorInfo(v.name) for v in model.graph.output],
            sha256=sha256_file(path),
        )
        if kind == GraphKind.SEGMENT:
            entry.segment = SegmentInfo(index=int(name[-1]))
        if kind in (GraphKind.CLASS, GraphKind.SUBSET, GraphKind.REJECT):
            entry.thresholds = {c: (0.5 if c == "cat" else -0.5) for c in classes}
        entries.append(entry)
    save_manifest(directory, Manifest(graphs=entries, untrained=True))
    return directory


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    return make_export(tmp_path_factory.mktemp("synthetic_export"))


# --- backend interface ------------------------------------------------------------------------


def test_ort_backend_matches_numpy_reference(export_dir, real_images):
    from codedresnext.runtime import open_backend

    be = open_backend("ort", export_dir / "multi_exit.onnx", threads=1)
    x = ((real_images.images[:16].astype(np.float32) / 255 - MEAN) / STD).transpose(0, 3, 1, 2)
    x = np.ascontiguousarray(x, np.float32)
    out = be.infer({"images": x})
    ref = reference(x, weights(0))
    np.testing.assert_allclose(out["logits"], ref["logits"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["exit1_scores"], ref["exit1"], rtol=1e-4, atol=1e-5)
    assert [s.name for s in be.inputs] == ["images"]
    assert be.inputs[0].shape == (None, 3, 32, 32) and be.inputs[0].dtype == np.float32
    assert be.output_names == ["logits", "exit0_scores", "exit1_scores"]
    info = be.info()
    assert info["intra_op_threads"] == 1 and info["inter_op_threads"] == 1
    assert info["providers"] == ["CPUExecutionProvider"]


@pytest.mark.parametrize(
    "kw, allow, stop",
    [
        ({}, "0", "1"),  # the library default: workers sleep between ops
        ({"spinning": True}, "1", "1"),  # spin while a run is in flight, stop when it returns
        ({"spinning": True, "stop_spinning": False}, "1", "0"),  # ONNX Runtime's own default
    ],
)
def test_session_options_spin_only_during_a_run(kw, allow, stop):
    from codedresnext.runtime.backends.onnxrt.session import session_options

    so = session_options(threads=3, **kw)
    assert so.intra_op_num_threads == 3 and so.inter_op_num_threads == 1
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == allow
    assert so.get_session_config_entry("session.force_spinning_stop") == stop


def test_backend_timing_records_each_call(export_dir):
    from codedresnext.runtime import open_backend

    be = open_backend("ort", export_dir / "full.onnx", threads=1)
    be.record_timing = True
    x = np.zeros((2, 3, 32, 32), np.float32)
    for _ in range(3):
        be.infer({"images": x})
    assert len(be.timing.latencies_s) == 3 and all(t > 0 for t in be.timing.latencies_s)


@pytest.mark.parametrize(
    "feeds, match",
    [
        ({}, "missing input"),
        ({"images": np.zeros((2, 3, 32, 32), np.float64)}, "float32"),
        ({"images": np.zeros((2, 3, 16, 16), np.float32)}, r"expects \(batch, 3, 32, 32\)"),
        ({"images": [[1.0]]}, "numpy float32"),
    ],
)
def test_backend_rejects_bad_feeds(export_dir, feeds, match):
    from codedresnext.runtime import open_backend

    be = open_backend("ort", export_dir / "full.onnx", threads=1)
    with pytest.raises(GraphError, match=match):
        be.infer(feeds)


def test_missing_graph_file_is_a_clear_error(tmp_path):
    from codedresnext.runtime import open_backend

    with pytest.raises(GraphError, match="does not exist"):
        open_backend("ort", tmp_path / "nope.onnx")


def test_corrupt_onnx_file_gives_a_graph_error(tmp_path):
    """ONNX Runtime's own exception (InvalidProtobuf) becomes a GraphError that says what to do."""
    from codedresnext.runtime import open_backend

    bad = tmp_path / "full.onnx"
    bad.write_bytes(b"\x08\x07 this is not a protobuf \xff\xfe" * 20)
    with pytest.raises(GraphError, match=r"ONNX Runtime cannot load .*full\.onnx.*re-export"):
        open_backend("ort", bad, threads=1)
    good = make_export(tmp_path / "e") / "full.onnx"
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(GraphError, match=r"ONNX Runtime cannot load .*truncated\.onnx"):
        open_backend("ort", truncated, threads=1)


def test_unknown_backend_lists_choices(export_dir):
    from codedresnext.runtime import open_backend

    with pytest.raises(BackendUnavailable, match="choose one of"):
        open_backend("openvino", export_dir / "full.onnx")


def test_tensorrt_unavailable_names_the_package(export_dir, monkeypatch):
    from codedresnext.runtime import open_backend

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on a machine without TensorRT
    with pytest.raises(BackendUnavailable, match=r"pip install tensorrt"):
        open_backend("trt", export_dir / "full.onnx")


def test_ort_gpu_provider_unavailable_names_onnxruntime_gpu(export_dir):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    from codedresnext.runtime import open_backend

    with pytest.raises(BackendUnavailable, match="onnxruntime-gpu"):
        open_backend("ort", export_dir / "full.onnx", provider="cuda")


def test_torch_unavailable_names_the_package(export_dir, monkeypatch):
    from codedresnext.runtime import open_backend

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(BackendUnavailable, match=r"pip install torch"):
        open_backend("torch", export_dir / "full.onnx")


def test_runtime_imports_no_torch():
    """Layering: the runtime runs on devices without torch (import fails there)."""
    mods = [
        "runtime.backends.base",
        "runtime.backends.onnxrt.session",
        "runtime.backends.trt.engine",
        "runtime.backends.pytorch.runner",
        "runtime.api.detector",
        "runtime.api.cascade",
        "runtime.api.predict",
        "runtime.thresholds.calibrate",
        "runtime.bench.run",
        "runtime.bench.gpuinfo",
        "deploy.triton",
    ]
    code = (
        "import sys; sys.modules['torch'] = None\n"
        + "".join(f"import codedresnext.{m}\n" for m in mods)
        + "from codedresnext.runtime.bench.environment import environment\n"
        "assert environment(1, 'ort', 'cpu')['libraries']['onnx']\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
