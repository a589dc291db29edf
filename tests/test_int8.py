"""`export --int8`: TensorRT-form Q/DQ twins of every graph kind, pruned INT8 == masked INT8, the
accuracy recorded per twin, and clear errors for bad calibration data. Real CIFAR-10 images and the
shipped (trained) demo model throughout."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from cli_helpers import run_cli
from onnx import numpy_helper

from codedresnext.artifact import Preprocessing, precision_suffix
from codedresnext.errors import GraphError
from codedresnext.export import ExportOptions, export_graphs, int8_checks, int8_surgery
from codedresnext.export import quantize as Q
from codedresnext.export.ops import TRT_ALLOWED_OPS
from codedresnext.export.options import Int8Options

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "demo" / "model.pt"


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory, small_tree):
    if not DEMO.is_file():
        pytest.skip(f"demo model {DEMO} missing")
    out = tmp_path_factory.mktemp("int8") / "graphs"
    export_graphs(  # the API: the masked peers and the small INT8 samples are not CLI options
        ExportOptions(
            out=out,
            checkpoint=DEMO,
            classes=["cat"],
            subsets=[["cat", "dog"]],
            masked=True,
            multi_exit=True,
            segments=True,
            reject_block=2,
            images=small_tree,
            verify_images=8,
            int8=Int8Options(small_tree, images=64, eval_images=100),
            progress=False,
        )
    )
    return out


def _manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def _logits(path: Path, x: np.ndarray, *, fuse: bool = True) -> np.ndarray:
    """ONNX Runtime's logits; fuse=False: graph optimizations off, so every Q/DQ node runs as written
    (the graph's own float semantics) instead of ONNX Runtime's fused integer kernels."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if not fuse:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return s.run(["logits"], {"images": x})[0]


def test_every_fp32_graph_has_both_int8_twins(int8_export):
    m = _manifest(int8_export)
    fp32 = [g for g in m["graphs"] if g["precision"] == "fp32"]
    kinds = {g["kind"] for g in fp32}
    assert kinds == {"full", "class", "subset", "masked", "multi-exit", "segment", "reject"}
    by_name = {g["name"]: g for g in m["graphs"]}
    for g in fp32:
        for p in Q.INT8_PRECISIONS:
            t = by_name[g["name"] + precision_suffix(p)]
            assert t["precision"] == p and t["kind"] == g["kind"] and t["fp32_twin"] == g["name"]
            assert t["flops"] == g["flops"] and t["params"] == g["params"]
            assert (int8_export / t["file"]).is_file() and t["bytes"] < g["bytes"]  # int8 weights
    assert by_name["segment0_int8"]["segment"]["next"] == "segment1_int8"
    assert by_name["reject_cat_a_int8_cpu"]["reject"]["b"] == "reject_cat_b_int8_cpu"
    assert m["int8"]["calibration_images"] == 64 and m["int8"]["calibration_split"] == "train"
    assert (int8_export / m["int8"]["ranges"]).is_file()


def test_int8_graphs_are_trt_explicit_quantization(int8_export):
    """Allowlisted ops; every Q/DQ zero point an int8 zero; conv weights int8 per output channel."""
    m = _manifest(int8_export)
    graphs = [g for g in m["graphs"] if g["precision"] == "int8"]
    assert len(graphs) == len([g for g in m["graphs"] if g["precision"] == "fp32"])  # one twin each
    for g in graphs:
        model = onnx.load(str(int8_export / g["file"]))
        assert {n.op_type for n in model.graph.node} <= TRT_ALLOWED_OPS
        inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
        assert qdq
        for n in qdq:
            zp = inits[n.input[2]]
            assert zp.dtype == np.int8 and not zp.any(), (g["name"], n.name)
        producer = {o: n for n in model.graph.node for o in n.output}
        for n in model.graph.node:
            if n.op_type == "Conv" and not n.name.endswith("/gram_conv"):
                dq = producer[n.input[1]]
                assert dq.op_type == "DequantizeLinear" and inits[dq.input[0]].dtype == np.int8
                assert inits[dq.input[1]].shape == (inits[dq.input[0]].shape[0],)  # one scale per out channel
                assert producer[n.input[0]].op_type == "DequantizeLinear"
            if n.op_type == "Conv" and n.name.endswith("/gram_conv"):
                assert n.input[1] in inits and inits[n.input[1]].dtype == np.float32  # energies stay float
        assert int8_checks.check_quantized(model, "int8")["zero_point_dtypes"] == ["int8"]


def test_exported_int8_full_graph_quantize_zero_points_are_int8_zeros(int8_export):
    model = onnx.load(str(int8_export / "full_int8.onnx"))
    inits = {t.name: t for t in model.graph.initializer}
    qs = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert len(qs) >= 10
    for n in qs:
        t = inits[n.input[2]]
        assert t.data_type == onnx.TensorProto.INT8
        assert not numpy_helper.to_array(t).any()


def test_cpu_form_is_rejected_by_the_trt_check(int8_export):
    """The check can fail: uint8 activations and int32 bias are not TensorRT's form."""
    model = onnx.load(str(int8_export / "full_int8_cpu.onnx"))
    with pytest.raises(GraphError, match="zero point|int32"):
        int8_checks.check_quantized(model, "int8")
    assert int8_checks.check_quantized(model, "int8-cpu")["quantized_convs"] > 0


@pytest.mark.parametrize("precision, max_abs, mean_abs", [("int8-cpu", 1e-5, 1e-6), ("int8", 0.08, 0.015)])
def test_int8_class_graph_equals_int8_masked_reference(
    int8_export, real_images, precision, max_abs, mean_abs
):
    """Pruned INT8 == masked INT8 on real images. int8-cpu runs integer kernels: equal to float32
    rounding. int8 runs on ONNX Runtime as float fake-quantization: the pruned convs sum fewer (zero)
    terms in another order, so a value near a rounding edge of the next QuantizeLinear can land one
    step away; the stated tolerance, and the mean difference, stay under half the int8-vs-fp32 one."""
    from codedresnext.runtime.api.graphs import prepare_batch

    m = _manifest(int8_export)
    x = prepare_batch(
        real_images.images, "images", (None, 3, 32, 32), Preprocessing.from_dict(m["preprocessing"])
    )
    sfx = precision_suffix(precision)
    c = _logits(int8_export / f"class_cat{sfx}.onnx", x)
    k = _logits(int8_export / f"masked_cat{sfx}.onnx", x)
    f = _logits(int8_export / "masked_cat.onnx", x)
    d = np.abs(c - k)
    assert d.max() <= max_abs and d.mean() <= mean_abs, (d.max(), d.mean())
    assert np.abs(k - f).mean() > 2 * d.mean()  # quantization is real; agreement is not trivial


@pytest.mark.parametrize("precision", ["int8", "int8-cpu"])
def test_torch_backend_runs_the_int8_twins_as_onnx_runtime_does(int8_export, real_images, precision):
    """The torch backend (CPU here, CUDA on a GPU) imports the Q/DQ graphs: same logits as ONNX
    Runtime running every Q/DQ node as written, on real images, up to the rounding-edge steps of
    float fake quantization (another summation order moves a value across a rounding edge now and
    then; the step is one quantization step of that tensor). Against ONNX Runtime's default fused
    integer kernels the `int8` form differs more (signed int8 activations on a CPU without VNNI; the
    `int8-cpu` form exists for that): measured on the small demo model, mean 0.021 of a logit scale
    of 5.4 vs 0.002 unfused, so that comparison would test ONNX Runtime's kernels, not the import."""
    pytest.importorskip("torch")
    from codedresnext.runtime import open_backend
    from codedresnext.runtime.api.graphs import prepare_batch

    m = _manifest(int8_export)
    x = prepare_batch(
        real_images.images, "images", (None, 3, 32, 32), Preprocessing.from_dict(m["preprocessing"])
    )
    for name in ("full", "class_cat"):
        path = int8_export / f"{name}{precision_suffix(precision)}.onnx"
        with open_backend("torch", path, threads=1) as t:
            got = t.infer({"images": x})["logits"]
        ref = _logits(path, x, fuse=False)
        d = np.abs(got - ref)
        assert d.max() <= 0.1 and d.mean() <= 0.005, (name, d.max(), d.mean())
        if name == "full":
            assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.95
            # fused or not, ONNX Runtime and the import agree on most decisions
            assert (got.argmax(1) == _logits(path, x).argmax(1)).mean() >= 0.9


def test_pruned_weights_use_full_graph_scales(int8_export):
    """Without the full graph's weight ranges the pruned expand convs get other scales (the control)."""
    full = onnx.load(str(int8_export / "full.onnx"))
    cls = onnx.load(str(int8_export / "class_cat.onnx"))
    ranges = Q.load_ranges(int8_export / Q.CALIBRATION_FILE)
    shipped = onnx.load(str(int8_export / "class_cat_int8_cpu.onnx"))
    again = Q.quantize(cls, ranges, "int8-cpu", full=int8_surgery.full_weights(full))
    assert again.SerializeToString() == shipped.SerializeToString()  # a device can redo it, bit for bit
    plain = Q.quantize(cls, ranges, "int8-cpu")
    scale = {t.name: numpy_helper.to_array(t) for t in plain.graph.initializer}
    ref = {t.name: numpy_helper.to_array(t) for t in shipped.graph.initializer}
    expand = [n for n in ref if n.endswith("expand.weight_scale")]
    assert expand and any(not np.array_equal(scale[n], ref[n]) for n in expand)


def test_accuracy_is_recorded_per_int8_graph(int8_export):
    m = _manifest(int8_export)
    assert m["int8"]["accuracy_images"] == 100 and "test split" in m["int8"]["accuracy_sample"]
    for g in (g for g in m["graphs"] if g["precision"] in Q.INT8_PRECISIONS):
        a = g["accuracy"]
        assert a["images"] == 100 and a["reference"]["name"] == g["fp32_twin"]
    full = next(g for g in m["graphs"] if g["name"] == "full_int8")["accuracy"]
    assert 0.5 < full["top1"] <= 1 and abs(full["top1"] - full["reference"]["top1"]) <= 0.05
    assert full["top1_agreement"] >= 0.9
    cls = next(g for g in m["graphs"] if g["name"] == "class_cat_int8")["accuracy"]
    assert (
        cls["decision_agreement"]["cat"] >= 0.9
        and abs(cls["auc"]["cat"] - cls["reference"]["auc"]["cat"]) < 0.05
    )
    segs = sorted(
        (g for g in m["graphs"] if g["kind"] == "segment" and g["precision"] == "int8"),
        key=lambda g: g["segment"]["index"],
    )
    assert len(segs) >= 3  # the default cuts give a middle segment
    assert segs[-1]["accuracy"]["top1_agreement"] >= 0.9  # behind every earlier one: the INT8 cascade
    assert min(segs[1]["accuracy"]["exit_top1_agreement"].values()) >= 0.9  # a middle segment's exit


def _junk_archive(d: Path) -> Path:
    (d / "junk.tar.gz").write_bytes(b"not a tar")
    return d / "junk.tar.gz"


def _empty_dir(d: Path) -> Path:
    (d / "empty").mkdir()
    return d / "empty"


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: d / "missing", "no such file or directory"),
        (_junk_archive, "not a tar"),
        (_empty_dir, "train"),
    ],
)
def test_bad_calibration_data_fails_cleanly(tmp_path, capsys, make, match):
    src = make(tmp_path)
    out = tmp_path / "out"
    assert run_cli(["export", "--preset", "tiny", "--out", str(out), "--quiet", "--int8", str(src)]) == 2
    err = capsys.readouterr().err
    assert "--int8" in err and match in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_int8_twins_of_every_exit_segment_and_reject_probe_take_fp32_calibration(
    tmp_path, small_tree, cifar10_tgz
):
    """`--segments all --reject-block all --int8`: each segment and reject probe gets its INT8 twins,
    `calibrate` writes the fp32-calibrated exit and reject thresholds into them (recorded as such),
    and the INT8 cascades and probes decide as the fp32 ones on real held-out images."""
    if not DEMO.is_file():
        pytest.skip(f"demo model {DEMO} missing")
    from codedresnext.artifact import FP32, GraphKind, load_manifest
    from codedresnext.runtime import EarlyExitClassifier
    from codedresnext.runtime.bench.accuracy import run_graph
    from codedresnext.runtime.thresholds.calibrate import calibrate_directory
    from codedresnext.runtime.thresholds.samples import load_heldout

    d = tmp_path / "d"
    export_graphs(
        ExportOptions(
            out=d,
            checkpoint=DEMO,
            classes=["cat"],
            segments="all",
            reject_block="all",
            verify=False,
            int8=Int8Options(small_tree, images=64, eval_images=100),
            progress=False,
        )
    )
    # guard "none": at 600 images the cv guard may keep every exit shut (test_runtime_segments)
    calibrate_directory(
        d, cifar10_tgz, max_accuracy_loss=1.0, limit=600, reject_limit=200, threads=1, guard="none"
    )
    m = load_manifest(d)
    probe = m.graph("reject_probe_cat")
    assert probe.reject_probe.blocks  # every coded block but the last
    assert set(probe.reject_probe.reject_thresholds) == {str(j) for j in probe.reject_probe.blocks}
    for p in Q.INT8_PRECISIONS:
        sfx = precision_suffix(p)
        for g in m.of_kind(GraphKind.SEGMENT, precision=FP32):
            t = m.graph(g.name + sfx)
            assert t.fp32_twin == g.name and t.segment.index == g.segment.index
            assert t.exit_threshold == g.exit_threshold
            assert t.exit_threshold_calibrated_on == g.exit_threshold_calibrated_on
            assert t.exit_confidence == g.exit_confidence  # the rule the threshold is for
        tp = m.graph(probe.name + sfx)
        assert tp.reject_probe.reject_thresholds == probe.reject_probe.reject_thresholds
        assert tp.reject_probe.pair_flops == probe.reject_probe.pair_flops
        assert tp.accuracy["decision_agreement"]["cat"] >= 0.9
    assert {g.exit_threshold_calibrated_on for g in m.of_kind(GraphKind.SEGMENT, precision="int8-cpu")} == {
        "fp32 segments",
        None,  # the last segment has no exit
    }
    ev = load_heldout(cifar10_tgz, limit=200)["evaluation"]
    fp32 = EarlyExitClassifier.from_directory(d, threads=1)
    r32 = fp32.predict(ev.images)
    # the search may keep an exit shut (+inf: "never"); at least one is open and used
    assert np.isfinite(fp32.thresholds).any() and (r32.exit_index < fp32.num_exits).any()
    d32 = run_graph(d, probe.name, ev.images, manifest=m)
    for p in Q.INT8_PRECISIONS:
        casc = EarlyExitClassifier.from_directory(d, precision=p, threads=1)
        assert casc.thresholds == fp32.thresholds
        r8 = casc.predict(ev.images)
        assert np.mean(r8.predictions == r32.predictions) >= 0.9
        assert np.mean(r8.exit_index == r32.exit_index) >= 0.8
        d8 = run_graph(d, probe.name + precision_suffix(p), ev.images, manifest=m)
        for j, rt in probe.reject_probe.reject_thresholds.items():
            if rt is not None:  # the same reject decision at block j on >= 90% of the images
                k = f"reject_distance_block{j}"
                assert np.mean((d8[k] > rt) == (d32[k] > rt)) >= 0.9, (p, j)


def test_int8_twins_where_full_and_class_graphs_pad_different_blocks(real_images):
    """Branch widths 3, 6, 5: the builder zero-pads the expand input of blocks whose kept channel
    count is not aligned (builder._expand), so block 1 (60 channels in the full graph) is padded
    only in the class graph (30). The twins drop that padding (int8_surgery.without_alignment), still
    quantize from the full graph's ranges, pass the TensorRT check where they should, and pruned
    INT8 == masked INT8 (int8-cpu: integer kernels)."""
    import dataclasses

    import torch
    from export_helpers import preprocess, randomize_bn, run

    from codedresnext.export import builder, kinds, names
    from codedresnext.export.fold import fold_weights
    from codedresnext.export.meta import graph_metadata
    from codedresnext.export.pruner import load_full_graph, prune
    from codedresnext.model import CodedResNeXt
    from codedresnext.model_config import build_config

    base = build_config("tiny")
    cfg = dataclasses.replace(
        base, stages=tuple(dataclasses.replace(s, width=w) for s, w in zip(base.stages, (3, 6, 5)))
    )
    torch.manual_seed(5)
    model = randomize_bn(CodedResNeXt(cfg), 5)
    spec = kinds.full_spec(cfg)
    meta = graph_metadata(cfg, spec, checkpoint_sha256="0" * 64, untrained=True, opset=17)
    full = builder.build_graph(cfg, fold_weights(model), spec, metadata=meta)
    fg = load_full_graph(full)
    cls, masked = prune(fg, ["cat"]), prune(fg, ["cat"], masked=True)
    pads = lambda g: {n.name for n in g.graph.node if n.op_type == "Pad"}  # noqa: E731
    assert "block1/expand_align" in pads(cls) and "block1/expand_align" not in pads(full)
    x = preprocess(real_images.images[:48], cfg)
    # the INT8 twins drop the fp32 channel alignment: the same function without the zero columns
    for g in (full, cls):
        bare = int8_surgery.without_alignment(g)
        assert pads(g) and not pads(bare)
        # uncoded block 0 (10 groups of 3): each group gets a zero output channel, 30 -> 40 aligned
        w = {t.name: t.dims for t in bare.graph.initializer}
        assert w[names.w(0, "conv")][0] == 40 and w[names.w(0, "expand")][1] == 40
        a, b = run(g, {"images": x})["logits"], run(bare, {"images": x})["logits"]
        assert np.abs(a - b).max() <= 1e-5 * max(1.0, np.abs(a).max())
    broken = copy.deepcopy(cls)  # padding that is not zero is not an alignment: refuse, do not drop it
    t = next(t for t in broken.graph.initializer if t.name == names.w(0, "expand"))
    t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) + 1, t.name))
    with pytest.raises(GraphError, match="not zero"):
        int8_surgery.without_alignment(broken)
    ranges = Q.calibrate(full, [x[:24], x[24:]])
    fw = int8_surgery.full_weights(full)
    for precision in Q.INT8_PRECISIONS:
        qc, qm = (Q.quantize(g, ranges, precision, full=fw) for g in (cls, masked))
        assert not pads(qc) and not pads(qm)
        if precision == "int8":
            int8_checks.check_quantized(qc, precision)
        c, k = run(qc, {"images": x})["logits"], run(qm, {"images": x})["logits"]
        tol = 1e-5 if precision == "int8-cpu" else 0.08
        assert np.abs(c - k).max() <= tol, (precision, np.abs(c - k).max())
