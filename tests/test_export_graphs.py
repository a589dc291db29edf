"""Graph-level exporter tests on the tiny preset: pruned == masked reference, counts, every kind."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from export_helpers import make_model, preprocess, run, torch_logits

from codedresnext.artifact import read_metadata
from codedresnext.export import builder, kinds
from codedresnext.export.counting import count_flops, count_params
from codedresnext.export.layout import analytic_params, block_layout, keep_branches
from codedresnext.export.meta import graph_metadata
from codedresnext.export.ops import TRT_ALLOWED_OPS, check_graph
from codedresnext.export.pruner import derive, load_full_graph, prune

TOL = 1e-4


@pytest.fixture(scope="module")
def tiny():
    import torch

    torch.set_num_threads(1)
    return make_model("tiny", seed=1)


@pytest.fixture(scope="module")
def full(tiny):
    from codedresnext.export.fold import fold_weights

    cfg = tiny.cfg
    spec = kinds.full_spec(cfg)
    meta = graph_metadata(cfg, spec, checkpoint_sha256="0" * 64, untrained=True, opset=17)
    return builder.build_graph(cfg, fold_weights(tiny), spec, metadata=meta)


@pytest.fixture(scope="module")
def fg(full):
    return load_full_graph(full)


@pytest.fixture(scope="module")
def inputs(real_images, tiny):
    """4 fresh random normalised images + 16 real CIFAR-10 test images (normalised)."""
    rnd = np.random.default_rng(7).standard_normal((4, 3, 32, 32)).astype(np.float32)
    real = preprocess(real_images.images[:16], tiny.cfg)
    return {"random": rnd, "real": real}


def _check(model_proto):
    check_graph(model_proto)  # checker full_check + allowlist + opset
    onnx.shape_inference.infer_shapes(model_proto, check_type=True, strict_mode=True)


def test_full_graph_matches_pytorch(tiny, full, inputs):
    _check(full)
    for x in inputs.values():
        got = run(full, {"images": x})["logits"]
        np.testing.assert_allclose(got, torch_logits(tiny, x), rtol=0, atol=TOL)
    assert count_params(full) == sum(p.numel() for p in tiny.parameters())


def test_every_class_graph_equals_masked_reference(tiny, fg, inputs):
    cfg = tiny.cfg
    layout = block_layout(cfg)
    for k, name in enumerate(cfg.class_names):
        g = prune(fg, [name])
        _check(g)
        for x in inputs.values():
            got = run(g, {"images": x})["logits"]
            assert got.shape == (len(x), 1)
            np.testing.assert_allclose(got, torch_logits(tiny, x, [k]), rtol=0, atol=TOL)
        keep = keep_branches(layout, [k])
        # physically pruned: every coded block's convs hold only the kept branches
        inits = {t.name: tuple(t.dims) for t in g.graph.initializer}
        groups = {n.name: a.i for n in g.graph.node for a in n.attribute if a.name == "group"}
        for b, kb in zip(layout, keep):
            if b.coded:
                nk = len(kb)
                assert nk == b.active
                assert inits[f"block{b.index}/reduce.weight"] == (nk * b.width, b.c_in, 1, 1)
                assert inits[f"block{b.index}/conv.weight"] == (nk * b.width, b.width, 3, 3)
                assert inits[f"block{b.index}/gram"] == (nk * b.width, b.width, 1, 1)
                aligned = nk * b.width + (-nk * b.width % builder.EXPAND_ALIGN)  # zero columns: _expand
                assert inits[f"block{b.index}/expand.weight"] == (b.c_out, aligned, 1, 1)
                assert groups[f"block{b.index}/conv"] == nk == groups[f"block{b.index}/gram_conv"]
        assert inits["head/fc.weight"] == (1, layout[-1].c_out)
        assert read_metadata(g)["codedresnext.classes"] == [name]


def _torch_path_params(model, classes) -> int:
    """Independent count from the PyTorch modules: parameters of the kept channels only."""
    total = 0
    masks = model.keep_masks(classes)
    for name, p in model.named_parameters():
        if name.startswith("fc."):
            total += p.shape[1] * len(classes)
            continue
        if not name.startswith("blocks."):
            total += p.numel()
            continue
        i = int(name.split(".")[1])
        blk, mask = model.blocks[i], masks[i]
        if (
            mask is None
            or ".shortcut." in name
            or name.endswith(f"{i}.bn.weight")
            or name.endswith(f"{i}.bn.bias")
        ):
            total += p.numel()
            continue
        frac = int(mask.sum().item()) / blk.branches  # kept share of the branch channels
        total += round(p.numel() * frac)
    return total


def test_param_counts_equal_analytic_and_pytorch(tiny, fg):
    cfg = tiny.cfg
    layout = block_layout(cfg)
    for k in range(cfg.num_classes):
        g = prune(fg, [k])
        n = count_params(g)
        assert n == analytic_params(cfg, keep_branches(layout, [k]), 1) == _torch_path_params(tiny, [k])
    g = prune(fg, ["cat", "dog", "ship"])
    assert count_params(g) == _torch_path_params(tiny, [3, 5, 8])


def test_flops_counted_from_graph(tiny, full, fg):
    cfg = tiny.cfg
    macs = 3 * 9 * cfg.stem_channels * 32 * 32
    for b in block_layout(cfg):
        p_in, p_out = b.size_in**2, b.size_out**2
        nd = b.branches * b.width
        macs += p_in * b.c_in * nd + p_out * nd * b.width * 9 + p_out * nd * b.c_out
        macs += p_out * nd * b.width if b.coded else 0  # Gram conv of the energies
        macs += p_out * b.c_in * b.c_out if b.projection else 0
    macs += cfg.num_classes * block_layout(cfg)[-1].c_out
    assert count_flops(full) == {"macs": macs, "flops": 2 * macs}
    assert count_flops(prune(fg, ["cat"]))["macs"] < 0.7 * macs


def test_subset_union_of_paths_in_chosen_order(tiny, fg, inputs):
    for names in (["dog", "cat"], ["airplane", "truck", "frog"]):
        idx = [tiny.cfg.class_names.index(n) for n in names]
        g = prune(fg, names)
        _check(g)
        assert read_metadata(g)["codedresnext.classes"] == names
        for x in inputs.values():
            got = run(g, {"images": x})["logits"]
            np.testing.assert_allclose(got, torch_logits(tiny, x, idx), rtol=0, atol=TOL)


def test_masked_graph_computes_everything_and_matches(tiny, fg, full, inputs):
    g = derive(fg, kinds.path_spec(tiny.cfg, [2], masked=True))
    _check(g)
    assert any(n.op_type == "Mul" and n.name.endswith("/masked") for n in g.graph.node)
    assert count_flops(g)["macs"] == count_flops(full)["macs"] - tiny.cfg.num_classes * 256 + 256
    x = inputs["real"]
    np.testing.assert_allclose(run(g, {"images": x})["logits"], torch_logits(tiny, x, [2]), rtol=0, atol=TOL)


def test_multi_exit_matches_pytorch_early_decoders(tiny, fg, inputs):
    import torch

    from codedresnext.model import early_decode

    g = derive(fg, kinds.multi_exit_spec(tiny.cfg))
    _check(g)
    x = inputs["real"]
    out = run(g, {"images": x})
    with torch.no_grad():
        ref = tiny(torch.from_numpy(x))
    np.testing.assert_allclose(out["logits"], ref.logits.numpy(), rtol=0, atol=TOL)
    assert len(ref.energies) == len(tiny.coded_blocks) == 4
    for j, (e, bi) in enumerate(zip(ref.energies, tiny.coded_blocks)):
        scores = torch.softmax(-early_decode(e, tiny.blocks[bi].codewords), 1).numpy()
        np.testing.assert_allclose(out[f"exit{j}_scores"], scores, rtol=0, atol=TOL)
        np.testing.assert_allclose(out[f"exit{j}_energies"], e.numpy(), rtol=0, atol=TOL)
        np.testing.assert_allclose(out[f"exit{j}_energies"].sum(1), tiny.blocks[bi].branches, rtol=1e-5)


@pytest.mark.parametrize("cuts", [None, [0, 3], [2]])
def test_chained_segments_equal_full_graph(tiny, fg, full, inputs, cuts):
    segs = kinds.segment_specs(tiny.cfg, cuts)
    assert len(segs) == (3 if cuts is None else len(cuts) + 1)  # default: after blocks 2 and 3
    x = inputs["random"]
    feats = x
    for i, sp in enumerate(segs):
        g = derive(fg, sp)
        _check(g)
        in_name = "images" if i == 0 else ("features" if i + 1 == len(segs) else "features_in")
        assert g.graph.input[0].name == in_name
        out = run(g, {in_name: feats})
        if i + 1 < len(segs):
            feats = out["features"]
            assert "logits" not in out
    # float rounding only: at a cut ONNX Runtime cannot fuse the block's expand Conv + residual Add + Relu
    # across the graph output as it does inside the full graph (seen: 1.4e-6)
    np.testing.assert_allclose(out["logits"], run(full, {"images": x})["logits"], rtol=0, atol=1e-5)


def test_segment_exit_scores_match_pytorch(tiny, fg, inputs):
    import torch

    from codedresnext.model import early_decode

    seg0 = derive(fg, kinds.segment_specs(tiny.cfg)[0])
    x = inputs["real"]
    out = run(seg0, {"images": x})
    with torch.no_grad():
        e = tiny(torch.from_numpy(x)).energies[1]  # block 2 = the second coded block
        ref = torch.softmax(-early_decode(e, tiny.blocks[2].codewords), 1).numpy()
    np.testing.assert_allclose(out["exit_scores"], ref, rtol=0, atol=TOL)


def test_reject_pair_equals_class_graph(tiny, fg, inputs):
    import torch

    from codedresnext.model import early_decode

    k, j = 4, 1
    a_spec, b_spec = kinds.reject_specs(tiny.cfg, k, j)
    a, b = derive(fg, a_spec), derive(fg, b_spec)
    _check(a)
    _check(b)
    x = inputs["real"]
    oa = run(a, {"images": x})
    ob = run(b, {"features": oa["features"]})
    np.testing.assert_allclose(ob["logits"], run(prune(fg, [k]), {"images": x})["logits"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(ob["logits"], torch_logits(tiny, x, [k]), rtol=0, atol=TOL)
    with torch.no_grad():  # block 1 (first coded block) with all branches: the full model's energies
        e = tiny(torch.from_numpy(x)).energies[0]
        dist = early_decode(e, tiny.blocks[1].codewords[k : k + 1]).numpy()
    np.testing.assert_allclose(oa["reject_distance"], dist, rtol=0, atol=TOL)
    with pytest.raises(Exception, match="coded block"):
        kinds.reject_specs(tiny.cfg, k, 0)  # block 0 is plain


def test_uint8_graph_equals_preprocessing_plus_float_graph(tiny, fg, full, real_images):
    g = derive(fg, kinds.path_spec(tiny.cfg, [3], uint8=True))
    _check(g)
    frames = real_images.images[:16]
    assert g.graph.input[0].name == "frames"
    got = run(g, {"frames": frames})["logits"]
    want = run(prune(fg, [3]), {"images": preprocess(frames, tiny.cfg)})["logits"]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    gf = derive(fg, kinds.full_spec(tiny.cfg, uint8=True))
    np.testing.assert_allclose(
        run(gf, {"frames": frames})["logits"],
        run(full, {"images": preprocess(frames, tiny.cfg)})["logits"],
        rtol=0,
        atol=1e-5,
    )


def test_fp16_graph_parity(tiny, fg, full, inputs):
    from onnx import TensorProto

    x = inputs["real"]
    for spec, ref in (
        (kinds.full_spec(tiny.cfg, fp16=True), run(full, {"images": x})["logits"]),
        (kinds.path_spec(tiny.cfg, [6], fp16=True), torch_logits(tiny, x, [6])),
    ):
        g = derive(fg, spec)
        _check(g)
        assert g.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
        assert g.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
        types = {t.name: t.data_type for t in g.graph.initializer}
        assert types["block3/conv.weight"] == TensorProto.FLOAT16
        assert types["block3/gram"] == TensorProto.FLOAT  # energies stay float32
        got = run(g, {"images": x})["logits"]
        err = np.abs(got - ref).max()
        assert err <= 5e-2 * max(1.0, np.abs(ref).max()), err
        assert err > 0  # really computed in half precision


def test_allowlist_covers_only_trt_ops(fg, tiny):
    used = set()
    for sp in (
        kinds.multi_exit_spec(tiny.cfg, uint8=True, fp16=True),
        *kinds.reject_specs(tiny.cfg, 0, 1),
        kinds.path_spec(tiny.cfg, [0], masked=True),
    ):
        used |= {n.op_type for n in derive(fg, sp).graph.node}
    assert used <= TRT_ALLOWED_OPS
    assert {"Conv", "ReduceSum", "Softmax", "Gather", "Cast", "Transpose", "Gemm"} <= used
    bad = prune(fg, ["cat"])
    bad.graph.node[0].op_type = "NonMaxSuppression"
    with pytest.raises(Exception, match="allowlist|checker"):
        check_graph(bad)


def test_batch_dimension_survives_shape_inference(fg, tiny):
    """Every kind keeps the input's symbolic batch on every value; a Reshape to -1 loses it and
    check_graph refuses the graph (ONNX Runtime would leave Conv + Add + Relu unfused)."""
    from onnx import numpy_helper, shape_inference

    from codedresnext.errors import GraphError
    from codedresnext.export.ops import batch_dim_lost

    cfg = tiny.cfg
    for sp in (
        kinds.multi_exit_spec(cfg, uint8=True, fp16=True),
        *kinds.reject_specs(cfg, 0, 1),
        kinds.reject_probe_spec(cfg, 2),
        kinds.path_spec(cfg, [0], masked=True),
        kinds.path_spec(cfg, [3, 1]),
        *kinds.segment_specs(cfg, "all"),
    ):
        inferred = shape_inference.infer_shapes(derive(fg, sp))
        typed = {v.name for v in [*inferred.graph.value_info, *inferred.graph.output]}
        assert {o for n in inferred.graph.node for o in n.output} <= typed  # inference saw every value
        assert batch_dim_lost(inferred) == []
    bad = prune(fg, ["cat"])
    init = next(t for t in bad.graph.initializer if t.name.endswith("/branch_shape"))
    init.CopyFrom(numpy_helper.from_array(np.array([-1, *numpy_helper.to_array(init)[1:]]), init.name))
    assert batch_dim_lost(shape_inference.infer_shapes(bad))
    with pytest.raises(GraphError, match="batch dimension"):
        check_graph(bad)


def test_onnxruntime_fuses_every_residual_add(full, fg, tmp_path):
    """ONNX Runtime (the pinned version, CPU, ORT_ENABLE_ALL) folds each block's residual Add and
    ReLU into the expand conv, coded blocks included: no Add/Relu kernel of a residual runs."""
    import json
    from pathlib import Path

    import onnxruntime as ort

    for name, model in (("full", full), ("class", prune(fg, ["cat"]))):
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = 1
        so.enable_profiling = True
        so.profile_file_prefix = str(tmp_path / name)
        s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        s.run(None, {"images": np.zeros((2, 3, 32, 32), np.float32)})
        events = json.loads(Path(s.end_profiling()).read_text())
        kernels = {e["name"][: -len("_kernel_time")] for e in events if e["name"].endswith("_kernel_time")}
        assert {f"block{i}/expand_nchwc" for i in range(5)} <= kernels  # the fused convs ran
        assert not {k for k in kernels if k.endswith(("/residual", "/out"))}, name


def test_graphs_are_deterministic(tiny, fg):
    from codedresnext.export.fold import fold_weights

    cfg = tiny.cfg
    spec = kinds.full_spec(cfg)
    meta = graph_metadata(cfg, spec, checkpoint_sha256="0" * 64, untrained=True, opset=17)
    a = builder.build_graph(cfg, fold_weights(tiny), spec, metadata=meta).SerializeToString()
    b = builder.build_graph(cfg, fold_weights(tiny), spec, metadata=meta).SerializeToString()
    assert a == b
    assert (
        prune(fg, ["cat"]).SerializeToString()
        == prune(load_full_graph(onnx.load_from_string(a)), ["cat"]).SerializeToString()
    )


def test_pruner_carries_thresholds_of_kept_classes(full):
    import json

    m = onnx.ModelProto()
    m.CopyFrom(full)
    e = m.metadata_props.add()
    e.key, e.value = "codedresnext.thresholds", json.dumps({"cat": 1.5, "dog": -0.25})
    fg2 = load_full_graph(m)
    assert read_metadata(prune(fg2, ["dog", "cat"]))["codedresnext.thresholds"] == {"dog": -0.25, "cat": 1.5}
    assert "codedresnext.thresholds" not in read_metadata(prune(fg2, ["ship"]))  # no threshold known


def test_paper_fraction_explained_by_projection_shortcuts():
    """46.3% with the always-kept projection shortcuts; without them the paper's 38% / 27%."""
    from codedresnext.model_config import build_config

    for preset, ours, paper in (("cifar10", 0.463, 0.38), ("cifar100", 0.374, 0.27)):
        cfg = build_config(preset)
        layout = block_layout(cfg)
        full_n = analytic_params(cfg, [None] * len(layout), cfg.num_classes)
        cls_n = analytic_params(cfg, keep_branches(layout, [0]), 1)
        sc = sum(b.c_in * b.c_out + 2 * b.c_out for b in layout if b.projection)
        assert round(cls_n / full_n, 3) == ours
        assert abs((cls_n - sc) / (full_n - sc) - paper) < 0.01


def test_expand_inputs_are_channel_aligned_and_exact(real_images, monkeypatch):
    """Odd branch widths (nk*d never a multiple of EXPAND_ALIGN): every expand conv reads a
    zero-padded input and zero weight columns, and the graphs stay exact (full == PyTorch,
    class == masked reference, == the unaligned build) with counts that leave the padding out."""
    import dataclasses

    import torch
    from export_helpers import randomize_bn
    from onnx import numpy_helper

    from codedresnext.export.fold import fold_weights
    from codedresnext.model import CodedResNeXt
    from codedresnext.model_config import build_config

    base = build_config("tiny")
    widths = (3, 5, 7)
    cfg = dataclasses.replace(
        base, stages=tuple(dataclasses.replace(s, width=w) for s, w in zip(base.stages, widths))
    )
    torch.manual_seed(3)
    model = randomize_bn(CodedResNeXt(cfg), 3)
    spec = kinds.full_spec(cfg)
    meta = graph_metadata(cfg, spec, checkpoint_sha256="0" * 64, untrained=True, opset=17)
    full = builder.build_graph(cfg, fold_weights(model), spec, metadata=meta)
    cls = prune(load_full_graph(full), ["cat"])  # the pruner reads the padded weights back
    monkeypatch.setattr(builder, "EXPAND_ALIGN", 1)
    plain_full = builder.build_graph(cfg, fold_weights(model), spec, metadata=meta)
    plain_cls = prune(load_full_graph(plain_full), ["cat"])
    monkeypatch.undo()

    layout = block_layout(cfg)
    x = np.concatenate([
        preprocess(real_images.images[:8], cfg),
        np.random.default_rng(11).standard_normal((4, 3, 32, 32)).astype(np.float32),
    ])  # fmt: skip
    for g, keep, ref in (
        (full, keep_branches(layout, None), torch_logits(model, x)),
        (cls, keep_branches(layout, [3]), torch_logits(model, x, [3])),
    ):
        _check(g)
        inits = {t.name: numpy_helper.to_array(t) for t in g.graph.initializer}
        pads = {n.name for n in g.graph.node if n.op_type == "Pad"}
        for b, kb in zip(layout, keep):
            nd = (b.branches if kb is None else len(kb)) * b.width
            w = inits[f"block{b.index}/expand.weight"]
            assert w.shape[1] == nd + (-nd % builder.EXPAND_ALIGN) and w.shape[1] % builder.EXPAND_ALIGN == 0
            assert nd % builder.EXPAND_ALIGN == 0 or f"block{b.index}/expand_align" in pads
            assert not w[:, nd:].any()  # the padding columns are zeros
        np.testing.assert_allclose(run(g, {"images": x})["logits"], ref, rtol=0, atol=TOL)
    assert len([n for n in full.graph.node if n.op_type == "Pad"]) == len(layout)
    assert not [n for n in plain_full.graph.node if n.op_type == "Pad"]
    for g, plain in ((full, plain_full), (cls, plain_cls)):
        assert count_params(g) == count_params(plain)
        assert count_flops(g) == count_flops(plain)
        np.testing.assert_allclose(
            run(g, {"images": x})["logits"], run(plain, {"images": x})["logits"], rtol=0, atol=1e-5
        )
    assert count_params(full) == sum(p.numel() for p in model.parameters())
    assert count_params(cls) == analytic_params(cfg, keep_branches(layout, [3]), 1)
    half = derive(load_full_graph(full), kinds.path_spec(cfg, [3], fp16=True))  # Pad on float16 h
    _check(half)
    ref = run(cls, {"images": x})["logits"]
    err = np.abs(run(half, {"images": x})["logits"] - ref).max()
    assert "block1/expand_align" in {n.name for n in half.graph.node}
    assert err <= 5e-2 * max(1.0, np.abs(ref).max()), err
