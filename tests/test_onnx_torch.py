"""The torch backend runs the exported ONNX graphs themselves: parity with ONNX Runtime on every graph
kind the exporter writes (full, class, subset, masked, multi-exit, segments incl. a middle one,
reject pairs, FP16 twins, uint8 input), on real CIFAR-10 images and fresh random inputs; every op of
the allowlist on a synthetic graph; clear errors for what the importer cannot run."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from codedresnext.errors import BackendUnavailable, GraphError

torch = pytest.importorskip("torch")

from codedresnext.runtime import open_backend  # noqa: E402
from codedresnext.runtime.backends.pytorch.onnx_import import OPS, load_onnx  # noqa: E402

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
# tolerances, relative to the output's scale (max(1, max |ORT output|)): both runtimes compute in the
# graph's precision, so fp32 graphs agree to float rounding and FP16 graphs to half-precision rounding
FP32_TOL, FP16_TOL = 1e-4, 2e-2


def _graphs(directory) -> list[dict]:
    """The manifest's graph entries as plain JSON (the file format, whatever the manifest API)."""
    import json

    return json.loads((directory / "manifest.json").read_text())["graphs"]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    export = pytest.importorskip("codedresnext.export")
    from codedresnext.model_config import build_config

    root = tmp_path_factory.mktemp("onnx_torch")
    cfg = build_config("tiny")
    export.export_graphs(
        export.ExportOptions(
            out=root / "float",
            preset="tiny",
            classes=["cat", "dog"],
            subsets=[["cat", "dog"]],
            masked=True,
            multi_exit=True,
            segments=[1, 2],  # three segments: the middle one takes features_in
            reject_block=cfg.coded_blocks[0],
            fp16=True,
            progress=False,
            verify=False,
        )
    )
    export.export_graphs(
        export.ExportOptions(
            out=root / "uint8", preset="tiny", classes=["cat"], uint8=True, progress=False, verify=False
        )
    )
    return root


def _float_images(frames: np.ndarray) -> np.ndarray:
    x = (frames.astype(np.float32) / 255 - MEAN) / STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32)


def _feeds_for(directory, entry, frames, ort_cache) -> dict[str, np.ndarray]:
    """Real inputs for one graph: images/frames, or the features its predecessor computes on them."""
    name = entry["inputs"][0]["name"]
    if name == "frames":
        return {name: frames}
    if name == "images":
        return {name: _float_images(frames)}
    # features / features_in: chain through the graph that feeds this one (ORT, fp32 twin)
    prev = _predecessor(directory, entry)
    out = _ort(directory / prev["file"], _feeds_for(directory, prev, frames, ort_cache), ort_cache)
    return {name: out["features"]}


def _predecessor(directory, entry) -> dict:
    graphs = _graphs(directory)
    base = entry["name"].removesuffix("_fp16")
    if "reject" in entry:
        return next(g for g in graphs if g["name"] == entry["reject"]["a"])
    return next(g for g in graphs if (g.get("segment") or {}).get("next") == base)


def _ort(path, feeds, cache=None) -> dict[str, np.ndarray]:
    key = (str(path), tuple((k, v.shape) for k, v in feeds.items()))
    if cache is not None and key in cache:
        return cache[key]
    be = open_backend("ort", path, threads=1)
    out = be.infer(feeds)
    if cache is not None:
        cache[key] = out
    return out


def _check_parity(directory, entry, feeds, ort_cache):
    ref = _ort(directory / entry["file"], feeds, ort_cache)
    got = open_backend("torch", directory / entry["file"], threads=1).infer(feeds)
    assert set(got) == set(ref)
    tol = FP16_TOL if entry.get("precision") == "fp16" else FP32_TOL
    for k, r in ref.items():
        assert got[k].dtype == r.dtype and got[k].shape == r.shape, k
        err = float(np.abs(got[k] - r).max())
        assert err <= tol * max(1.0, float(np.abs(r).max())), (entry["name"], k, err)
    return ref, got


def test_every_exported_graph_matches_onnxruntime_on_real_images(exports, real_images):
    frames = real_images.images[:16]
    kinds = set()
    for sub in ("float", "uint8"):
        d = exports / sub
        cache: dict = {}
        for g in _graphs(d):
            ref, got = _check_parity(d, g, _feeds_for(d, g, frames, cache), cache)
            kinds.add((g["kind"], g.get("precision", "fp32"), g["inputs"][0]["name"]))
            if "logits" in ref and g["kind"] != "segment":  # same decisions, not only close numbers
                np.testing.assert_array_equal(got["logits"].argmax(1), ref["logits"].argmax(1))
    wanted = {"full", "class", "subset", "masked", "multi-exit", "segment", "reject"}
    assert {k for k, _, _ in kinds} == wanted
    assert {k for k, p, _ in kinds if p == "fp16"} == wanted
    assert {i for _, _, i in kinds} == {"images", "frames", "features", "features_in"}


def test_random_inputs_and_batch_sizes(exports):
    """Fresh random inputs (seeded) at batch 1 and 5 on the full and a pruned graph, fp32 and fp16."""
    d = exports / "float"
    rng = np.random.default_rng(7)
    for name in ("full.onnx", "class_cat.onnx", "full_fp16.onnx", "class_cat_fp16.onnx"):
        for b in (1, 5):
            x = rng.standard_normal((b, 3, 32, 32)).astype(np.float32)
            tol = FP16_TOL if "fp16" in name else FP32_TOL
            r = _ort(d / name, {"images": x})["logits"]
            g = open_backend("torch", d / name, threads=1).infer({"images": x})["logits"]
            assert np.abs(g - r).max() <= tol * max(1.0, np.abs(r).max()), (name, b)


def test_fp16_graph_runs_in_half_precision(exports):
    """The FP16 twin keeps float16 weights in torch (not silently upcast): its convolutions are half."""
    m = load_onnx(exports / "float" / "full_fp16.onnx")
    dtypes = {b.dtype for b in m.buffers() if b.dim() == 4}  # conv kernels
    assert torch.float16 in dtypes
    assert load_onnx(exports / "float" / "full.onnx").c0.dtype == torch.float32


def _allowlist_graph() -> onnx.ModelProto:
    """One graph that uses every allowlist op the exporter does not (and the ones it does)."""
    r = np.random.default_rng(0)
    f = lambda *s: r.standard_normal(s).astype(np.float32)  # noqa: E731
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    inits = {
        "w": f(6, 3, 3, 3),
        "bn_s": f(6) ** 2 + 0.5,
        "bn_b": f(6),
        "bn_m": f(6),
        "bn_v": f(6) ** 2 + 0.5,
        "gw": f(4, 6),
        "gc": f(4),
        "mm": f(4, 4),
        "lo": np.array(-0.5, np.float32),
        "hi": np.array(0.75, np.float32),
        "ax1": i64(1),
        "ax_hw": i64(2, 3),
        "shape": i64(0, -1),
        "st": i64(0),
        "en": i64(3),
        "sax": i64(1),
        "k2": i64(2),
        "gidx": i64(-1, 0),
        "pads": i64(0, 1, 0, 2, 0, 2, 1, 0),  # begins then ends: channels 1 + 2, rows 0 + 1, cols 2 + 0
        "pval": np.array(0.5, np.float32),
    }
    N = helper.make_node
    nodes = [
        N("Constant", [], ["c2"], value=numpy_helper.from_array(np.array(2.0, np.float32))),
        N("Conv", ["x", "w"], ["c"], pads=[0, 1, 2, 1], strides=[1, 1]),  # asymmetric pads
        N("BatchNormalization", ["c", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"], epsilon=1e-3),
        N("LeakyRelu", ["bn"], ["lr"], alpha=0.2),
        N("MaxPool", ["lr"], ["mp"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 0, 1]),
        N("AveragePool", ["lr"], ["ap"], kernel_shape=[2, 2], strides=[2, 2], count_include_pad=1),
        N("GlobalMaxPool", ["mp"], ["gmp"]),
        N("GlobalAveragePool", ["ap"], ["gap"]),
        N("Add", ["gmp", "gap"], ["g"]),
        N("Reshape", ["g", "shape"], ["g2"]),  # (B, 6): 0 copies the batch
        N("Gemm", ["g2", "gw", "gc"], ["ge"], alpha=0.5, beta=2.0, transB=1),
        N("MatMul", ["ge", "mm"], ["m"]),
        N("Clip", ["m", "lo", "hi"], ["cl"]),
        N("Sigmoid", ["cl"], ["sg"]),
        N("Tanh", ["m"], ["th"]),
        N("Max", ["sg", "th", "cl"], ["mx"]),
        N("Min", ["sg", "th"], ["mn"]),
        N("Abs", ["m"], ["ab"]),
        N("Exp", ["mn"], ["ex"]),
        N("Log", ["ex"], ["lg"]),
        N("Pow", ["ab", "c2"], ["pw"]),
        N("Reciprocal", ["ex"], ["rc"]),
        N("Concat", ["mx", "lg", "pw", "rc"], ["cat"], axis=1),  # (B, 16)
        N("Slice", ["cat", "st", "en", "sax"], ["sl"]),  # (B, 3)
        N("Unsqueeze", ["sl", "ax1"], ["us"]),  # (B, 1, 3)
        N("Transpose", ["us"], ["tr"], perm=[0, 2, 1]),  # (B, 3, 1)
        N("Squeeze", ["us", "ax1"], ["sq"]),
        N("ReduceMax", ["cat"], ["rmax"], axes=[1], keepdims=1),
        N("ReduceMin", ["cat"], ["rmin"], axes=[1], keepdims=0),
        N("ReduceMean", ["c"], ["rmean"], axes=[2, 3], keepdims=0),
        N("ReduceSum", ["c", "ax_hw"], ["rsum"], keepdims=0),
        N("Pad", ["c", "pads", "pval"], ["pd"]),  # constant mode, a non-zero fill
        N("Sqrt", ["ab"], ["sr"]),
        N("Neg", ["sr"], ["ng"]),
        N("Sub", ["ng", "rmax"], ["sb"]),
        N("Div", ["sb", "c2"], ["dv"]),
        N("Mul", ["dv", "dv"], ["ml"]),
        N("Softmax", ["ml"], ["sm"], axis=1),
        N("TopK", ["sm", "k2"], ["tkv", "tki"], axis=1),
        N("ArgMax", ["cat"], ["am"], axis=1, keepdims=0),
        N("ArgMin", ["cat"], ["an"], axis=1, keepdims=1),
        N("Gather", ["cat", "gidx"], ["ga"], axis=1),
        N("Flatten", ["tr"], ["fl"], axis=1),
        N("Relu", ["fl"], ["re"]),
        N("Identity", ["re"], ["id"]),
        N("Shape", ["c"], ["sh"], start=1),
        N("Cast", ["sh"], ["shf"], to=TensorProto.FLOAT),
    ]
    outs = ["sq", "rmin", "rmean", "tkv", "tki", "am", "an", "ga", "id", "shf", "sm", "pd"]
    g = helper.make_graph(
        nodes,
        "allowlist",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, 9, 9])],
        [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outs],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return onnx.shape_inference.infer_shapes(m, strict_mode=True)


def _qdq_graph() -> onnx.ModelProto:
    """Explicit quantization as TensorRT builds it: per-tensor int8 activations, per-channel int8
    weights (DequantizeLinear of an int8 initializer), and a uint8 round trip with a zero point."""
    r = np.random.default_rng(3)
    w = r.standard_normal((4, 3, 3, 3)).astype(np.float32)
    w_scale = (np.abs(w).reshape(4, -1).max(1) / 127).astype(np.float32)
    inits = {
        "w_q": np.clip(np.round(w / w_scale[:, None, None, None]), -127, 127).astype(np.int8),
        "w_s": w_scale,
        "a_s": np.array(0.02, np.float32),
        "a_z": np.array(0, np.int8),
        "u_s": np.array(0.05, np.float32),
        "u_z": np.array(128, np.uint8),
    }
    N = helper.make_node
    nodes = [
        N("QuantizeLinear", ["x", "a_s", "a_z"], ["xq"]),
        N("DequantizeLinear", ["xq", "a_s", "a_z"], ["xd"]),
        N("DequantizeLinear", ["w_q", "w_s"], ["wd"], axis=0),
        N("Conv", ["xd", "wd"], ["c"], pads=[1, 1, 1, 1]),
        N("QuantizeLinear", ["c", "u_s", "u_z"], ["cq"]),
        N("DequantizeLinear", ["cq", "u_s", "u_z"], ["y"]),
    ]
    g = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, 8, 8])],
        [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in ("y", "cq", "xq")],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return onnx.shape_inference.infer_shapes(m, strict_mode=True)


def test_every_allowlisted_op_matches_onnxruntime(tmp_path):
    from codedresnext.export.ops import TRT_ALLOWED_OPS

    assert TRT_ALLOWED_OPS - {"Constant"} <= set(OPS), "an allowlisted op has no torch implementation"
    graphs = {"ops": _allowlist_graph(), "qdq": _qdq_graph()}
    used = {n.op_type for m in graphs.values() for n in m.graph.node}
    assert set(TRT_ALLOWED_OPS) <= used, sorted(set(TRT_ALLOWED_OPS) - used)  # every op is exercised
    rng = np.random.default_rng(1)
    for name, m in graphs.items():
        onnx.save(m, tmp_path / f"{name}.onnx")
        shape = [d.dim_value or 3 for d in m.graph.input[0].type.tensor_type.shape.dim]
        x = rng.standard_normal(shape).astype(np.float32)
        ref = _ort(tmp_path / f"{name}.onnx", {"x": x})
        got = open_backend("torch", tmp_path / f"{name}.onnx", threads=1).infer({"x": x})
        for k, r in ref.items():
            assert got[k].dtype == r.dtype and got[k].shape == r.shape, k
            np.testing.assert_allclose(got[k], r, rtol=1e-5, atol=1e-5, err_msg=k)


def _tiny(nodes, inits, out_type=TensorProto.FLOAT) -> onnx.ModelProto:
    g = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])],
        [helper.make_tensor_value_info("y", out_type, None)],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_unsupported_graphs_fail_clearly(tmp_path):
    with pytest.raises(GraphError, match=r"op Erf .*not supported by the torch importer"):
        load_onnx(_tiny([helper.make_node("Erf", ["x"], ["y"])], []))
    shape_from_input = _tiny(
        [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Reshape", ["x", "s"], ["y"])], []
    )
    with pytest.raises(GraphError, match="computed at run time"):
        load_onnx(shape_from_input)
    old = _tiny([helper.make_node("Relu", ["x"], ["y"])], [])
    old.opset_import[0].version = 11
    with pytest.raises(GraphError, match="opset 11"):
        load_onnx(old)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage-not-protobuf" * 10)
    with pytest.raises(GraphError, match="not a readable ONNX file"):
        open_backend("torch", bad)


def test_backend_options_fail_clearly(exports):
    full = exports / "float" / "full.onnx"
    with pytest.raises(GraphError, match="cuda_graph needs device 'cuda'"):
        open_backend("torch", full, cuda_graph=True)
    with pytest.raises(BackendUnavailable, match="unknown torch device"):
        open_backend("torch", full, device="tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="sees no CUDA GPU"):
            open_backend("torch", full, device="cuda")
    be = open_backend("torch", full, threads=1)
    info = be.info()
    assert info["mode"] == "onnx" and info["device"] == "cpu" and info["torch"] == str(torch.__version__)
    with pytest.raises(GraphError, match="must be a numpy float32"):
        be.infer({"images": np.zeros((1, 3, 32, 32), np.float64)})


def test_bench_cli_with_the_torch_backend_lists_the_class_graphs(exports, tmp_path):
    """`codedresnext bench D --backend torch --batch 1,8 --json F` on an export with class graphs."""
    import json
    import subprocess
    import sys

    js = tmp_path / "rep" / "bench.json"
    r = subprocess.run(
        [
            sys.executable, "-m", "codedresnext.cli", "bench", str(exports / "float"), "--backend", "torch",
            "--batch", "1,8", "--duration", "0.05", "--threads", "1", "--quiet",
            "--out", str(tmp_path / "rep"),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rep = json.loads(js.read_text())
    cls = [g for g in rep["graphs"] if g["kind"] == "class"]
    # every precision of the export side by side: the fp32 class graphs and their FP16 twins
    assert [(g["name"], g["precision"]) for g in cls] == [
        ("class_cat", "fp32"), ("class_dog", "fp32"), ("class_cat_fp16", "fp16"), ("class_dog_fp16", "fp16"),
    ]  # fmt: skip
    for g in rep["graphs"]:
        assert [x["batch"] for x in g["results"]] == [1, 8] and all(
            x["iterations"] >= 1 for x in g["results"]
        )
        assert g["backend_info"]["backend"] == "torch"
    assert all(g["backend_info"]["mode"] == "onnx" and g["backend_info"]["device"] == "cpu" for g in cls)
    assert rep["env"]["backend"] == "torch" and rep["env"]["torch_cuda"]["torch"] == str(torch.__version__)
    assert "the ONNX graph through PyTorch / PyTorch eager" in r.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "codedresnext.cli", "bench", str(exports / "float"), "--device", "cuda"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "--backend torch" in bad.stderr
