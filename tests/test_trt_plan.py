"""TensorRT planning without TensorRT: version branching (10 vs 11), cache keys, profiles; FP16
graph parity in ONNX Runtime; a real build test that skips where TensorRT is not installed."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from codedresnext.errors import BackendUnavailable, GraphError
from codedresnext.runtime.backends.trt.plan import (
    choose_source,
    engine_cache_key,
    graph_precision,
    plan_precision,
    profile_shapes,
    trt_major,
)


@pytest.mark.parametrize(
    "version, precision, graph, strongly_typed, flags",
    [
        ("10.3.0", "fp32", "fp32", False, ()),
        ("10.3.0", "fp16", "fp32", False, ("FP16",)),  # JetPack 6: builder flag on the fp32 graph
        ("10.3.0", "fp16", "fp16", True, ()),  # an FP16 graph carries its own types
        ("10.3.0", "int8", "int8", False, ("INT8",)),  # explicit Q/DQ
        ("11.0.0", "fp32", "fp32", True, ()),
        ("11.2.1", "fp16", "fp16", True, ()),  # no precision flags exist on 11
        ("11.0.0", "int8", "int8", True, ()),
    ],
)
def test_precision_plan_per_tensorrt_major(version, precision, graph, strongly_typed, flags):
    plan = plan_precision(precision, trt_version=version, graph=graph)
    assert plan.strongly_typed is strongly_typed
    assert plan.builder_flags == flags


@pytest.mark.parametrize(
    "version, strongly_typed, flags",
    [("10.3.0", False, ("INT8", "FP16")), ("11.1.0", True, ())],  # TRT 11: types come from the graph
)
def test_int8_with_fp16_float_parts(version, strongly_typed, flags):
    plan = plan_precision("int8", trt_version=version, graph="int8", int8_fp16=True)
    assert (plan.strongly_typed, plan.builder_flags) == (strongly_typed, flags)
    assert plan_precision("fp16", trt_version="10.3.0", graph="fp32", int8_fp16=True).builder_flags == (
        "FP16",
    )


@pytest.mark.parametrize("version", ["10.3.0", "11.0.0"])
@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_the_ort_cpu_int8_form_is_refused(version, precision):
    with pytest.raises(GraphError, match="NAME_int8"):
        plan_precision(precision, trt_version=version, graph="int8-cpu")


def test_choose_source_builds_the_int8_twin():
    from codedresnext.artifact import ManifestEntry

    graphs = {
        "full": ManifestEntry("full", "full.onnx", "full", precision="fp32"),
        "full_int8": ManifestEntry("full_int8", "full_int8.onnx", "full", precision="int8"),
        "full_int8_cpu": ManifestEntry("full_int8_cpu", "full_int8_cpu.onnx", "full", precision="int8-cpu"),
        "class_cat": ManifestEntry("class_cat", "class_cat.onnx", "class", precision="fp32"),
    }
    for v in ("10.3.0", "11.0.0"):
        assert choose_source(graphs["full"], graphs, "int8", v).file == "full_int8.onnx"
        assert choose_source(graphs["full_int8"], graphs, "int8", v).file == "full_int8.onnx"
    with pytest.raises(GraphError, match="--int8 DATA"):
        choose_source(graphs["class_cat"], graphs, "int8", "10.3.0")


def test_int8_cache_keys_differ_from_fp32_and_fp16():
    base = dict(graph_sha256="a" * 64, compute_capability="8.7", trt_version="10.3.0", profile=(1, 8, 32))
    keys = {engine_cache_key(precision=p, **base) for p in ("fp32", "fp16", "int8", "int8+fp16")}
    assert len(keys) == 4 and any("-int8-" in k for k in keys)


@pytest.mark.parametrize(
    "version, precision, graph, match",
    [
        ("11.0.0", "fp16", "fp32", r"export \.\.\. --fp16"),
        ("10.3.0", "int8", "fp32", "Q/DQ"),
        ("11.0.0", "int8", "fp16", "Q/DQ"),
        ("10.3.0", "fp32", "int8", "--precision int8"),
        ("11.0.0", "fp32", "fp16", "--precision fp16"),
        ("10.3.0", "bf16", "fp32", "precision must be one of"),
    ],
)
def test_impossible_precisions_say_what_to_export(version, precision, graph, match):
    with pytest.raises(GraphError, match=match):
        plan_precision(precision, trt_version=version, graph=graph)


def test_old_or_garbled_tensorrt_versions():
    with pytest.raises(BackendUnavailable, match="too old"):
        plan_precision("fp32", trt_version="8.6.1", graph="fp32")
    with pytest.raises(BackendUnavailable, match="cannot parse"):
        trt_major("ten")
    assert trt_major("10.3.0.26") == 10 and trt_major("11.0.0") == 11


def test_choose_source_uses_the_fp16_graph_on_trt11_only():
    from codedresnext.artifact import ManifestEntry

    graphs = {
        "full": ManifestEntry("full", "full.onnx", "full", precision="fp32"),
        "full_fp16": ManifestEntry("full_fp16", "full_fp16.onnx", "full", precision="fp16"),
        "class_cat": ManifestEntry("class_cat", "class_cat.onnx", "class", precision="fp32"),
    }
    assert choose_source(graphs["full"], graphs, "fp16", "11.0.0").file == "full_fp16.onnx"
    assert choose_source(graphs["full"], graphs, "fp16", "10.3.0").file == "full.onnx"
    assert choose_source(graphs["full"], graphs, "fp32", "11.0.0").file == "full.onnx"
    with pytest.raises(GraphError, match="--fp16"):
        choose_source(graphs["class_cat"], graphs, "fp16", "11.0.0")


def test_engine_cache_key_changes_with_every_component():
    base = dict(
        graph_sha256="a" * 64,
        precision="fp16",
        compute_capability="8.7",
        trt_version="10.3.0",
        profile=(1, 8, 32),
    )
    k = engine_cache_key(**base)
    assert k.startswith("aaaaaaaaaaaa-fp16-sm87-trt10.3.0-b1_8_32-")
    assert engine_cache_key(**base) == k  # deterministic
    for field, other in [
        ("graph_sha256", "b" * 64),
        ("precision", "fp32"),
        ("compute_capability", "9.0"),
        ("trt_version", "11.0.0"),
        ("profile", (1, 16, 32)),
    ]:
        assert engine_cache_key(**{**base, field: other}) != k, field


def test_profile_shapes_vary_only_the_batch():
    shapes = profile_shapes(
        [("images", (None, 3, 32, 32)), ("features", (None, 512, 8, 8))],
        min_batch=1,
        opt_batch=8,
        max_batch=32,
    )
    assert shapes["images"] == ((1, 3, 32, 32), (8, 3, 32, 32), (32, 3, 32, 32))
    assert shapes["features"][2] == (32, 512, 8, 8)
    with pytest.raises(GraphError, match="min <= opt <= max"):
        profile_shapes([("images", (None, 3, 32, 32))], min_batch=8, opt_batch=4, max_batch=32)
    with pytest.raises(GraphError, match="dynamic non-batch"):
        profile_shapes([("images", (None, 3, None, None))], min_batch=1, opt_batch=1, max_batch=1)


def _conv_graph(fp16: bool, seed: int = 0) -> onnx.ModelProto:
    """conv -> relu -> GAP -> gemm; the FP16 variant keeps float32 I/O (Cast in and out)."""
    r = np.random.default_rng(seed)
    wc = (r.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)
    wf = (r.standard_normal((4, 8)) * 0.5).astype(np.float32)
    dt = np.float16 if fp16 else np.float32
    nodes, x = [], "images"
    if fp16:
        nodes.append(helper.make_node("Cast", ["images"], ["x16"], to=TensorProto.FLOAT16))
        x = "x16"
    nodes += [
        helper.make_node("Conv", [x, "wc"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "wf"], ["l16" if fp16 else "logits"], transB=1),
    ]
    if fp16:
        nodes.append(helper.make_node("Cast", ["l16"], ["logits"], to=TensorProto.FLOAT))
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["b", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 4])],
        [numpy_helper.from_array(wc.astype(dt), "wc"), numpy_helper.from_array(wf.astype(dt), "wf")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def test_graph_precision_detection(tmp_path):
    from codedresnext.export import quantize as Q

    onnx.save(_conv_graph(False), tmp_path / "a.onnx")
    onnx.save(_conv_graph(True), tmp_path / "b.onnx")
    assert graph_precision(tmp_path / "a.onnx") == "fp32"
    assert graph_precision(tmp_path / "b.onnx") == "fp16"
    m = _conv_graph(False)
    for i, n in enumerate(m.graph.node):
        n.name = f"n{i}"
    x = np.random.default_rng(0).standard_normal((4, 3, 16, 16)).astype(np.float32)
    ranges = Q.calibrate(m, [x])
    for p in Q.INT8_PRECISIONS:
        onnx.save(Q.quantize(m, ranges, p), tmp_path / f"{p}.onnx")
        assert graph_precision(tmp_path / f"{p}.onnx") == p


def test_fp16_graph_parity_in_onnxruntime(tmp_path, real_images):
    """An FP16 graph with float32 I/O (what TensorRT 11 builds for --precision fp16) agrees with
    its fp32 twin on real images within FP16 tolerance."""
    from codedresnext.runtime import open_backend

    onnx.save(_conv_graph(False), tmp_path / "fp32.onnx")
    onnx.save(_conv_graph(True), tmp_path / "fp16.onnx")
    x = real_images.images[:16, 8:24, 8:24].astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    x = np.ascontiguousarray(x)
    a = open_backend("ort", tmp_path / "fp32.onnx", threads=1).infer({"images": x})["logits"]
    b16 = open_backend("ort", tmp_path / "fp16.onnx", threads=1)
    assert b16.inputs[0].dtype == np.float32 and b16.outputs[0].dtype == np.float32
    b = b16.infer({"images": x})["logits"]
    assert np.abs(a - b).max() <= 2e-2 * max(1.0, np.abs(a).max())
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.9


def test_exporter_fp16_graph_parity(tmp_path, real_images):
    """The exporter's FP16 full graph vs its fp32 full graph on real CIFAR images (ORT CPU)."""
    export = pytest.importorskip("codedresnext.export")
    pytest.importorskip("torch")
    try:
        export.export_graphs(
            export.ExportOptions(out=tmp_path / "e", preset="tiny", fp16=True, progress=False, verify=False)
        )
    except TypeError as e:  # pragma: no cover - older exporter without fp16
        pytest.skip(f"exporter has no fp16 option: {e}")
    from codedresnext.runtime import open_backend

    x = (real_images.images[:32].astype(np.float32) / 255 - (0.4914, 0.4822, 0.4465)) / (
        0.2023,
        0.1994,
        0.2010,
    )
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32)
    a = open_backend("ort", tmp_path / "e" / "full.onnx", threads=1).infer({"images": x})["logits"]
    b = open_backend("ort", tmp_path / "e" / "full_fp16.onnx", threads=1).infer({"images": x})["logits"]
    assert np.abs(a - b).max() <= 5e-2 * max(1.0, np.abs(a).max())


@pytest.mark.trt
def test_tensorrt_build_and_compare(tmp_path):
    """Real engine build + Polygraphy TrtRunner vs OnnxrtRunner (GPU machines with TensorRT only)."""
    pytest.importorskip(
        "tensorrt", reason="TensorRT is not installed (needs an NVIDIA GPU): pip install tensorrt"
    )
    pytest.importorskip("polygraphy", reason="polygraphy is not installed: pip install polygraphy")
    from codedresnext.runtime.backends.trt.engine import TrtBackend, build_engine, compare_with_onnxrt

    onnx.save(_conv_graph(False), tmp_path / "g.onnx")
    plan, info = build_engine(
        tmp_path / "g.onnx", precision="fp32", batch=(1, 4, 8), cache_dir=tmp_path / "c"
    )
    assert plan.is_file() and not info["cached"]
    _, again = build_engine(tmp_path / "g.onnx", precision="fp32", batch=(1, 4, 8), cache_dir=tmp_path / "c")
    assert again["cached"]
    assert compare_with_onnxrt(tmp_path / "g.onnx", plan, batch=4)
    be = TrtBackend().load(plan)
    out = be.infer({"images": np.zeros((3, 3, 16, 16), np.float32)})
    assert out["logits"].shape == (3, 4)


def test_build_cli_without_tensorrt_says_what_to_install(tmp_path):
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    from test_runtime_graphs import make_export

    d = make_export(tmp_path / "e")
    r = subprocess.run(
        [sys.executable, "-m", "codedresnext.cli", "build", str(d), "--precision", "fp16"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert "pip install tensorrt" in r.stderr
