"""The shared trunk's re-laid groups (export/groups.py): the same function, the same counts, and the
pruner and the INT8 path see the model's own layout.

Tiny networks whose uncoded first stage is the cifar10 preset's (256 channels, 10 branches of 11,
stored as (1, 16): each group widened) or cifar100's (20 x 6, stored as (5, 32): five branches per
group), random weights with non-trivial BN statistics.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from export_helpers import preprocess, randomize_bn, run, torch_logits

from codedresnext.errors import GraphError
from codedresnext.export import groups, int8_surgery, kinds
from codedresnext.export import quantize as Q
from codedresnext.export.counting import count_flops, count_params
from codedresnext.export.layout import block_layout
from codedresnext.export.pruner import derive, load_full_graph, prune
from codedresnext.model_config import build_config


def _build(model):
    from codedresnext.export.builder import build_graph
    from codedresnext.export.fold import fold_weights
    from codedresnext.export.meta import graph_metadata

    cfg = model.cfg
    spec = kinds.full_spec(cfg)
    meta = graph_metadata(cfg, spec, checkpoint_sha256="0" * 64, untrained=True, opset=17)
    return build_graph(cfg, fold_weights(model), spec, metadata=meta)


def _model(width: int, branches: int, seed: int):
    import torch

    from codedresnext.model import CodedResNeXt

    base = build_config("tiny")
    first = dataclasses.replace(  # the presets' first stage: 3 blocks, 64 -> 256 channels
        base.stages[0], out_channels=256, depth=3, width=width, branches=branches, active=branches
    )
    cfg = dataclasses.replace(base, stem_channels=64, stages=(first, *base.stages[1:]))
    torch.manual_seed(seed)
    return randomize_bn(CodedResNeXt(cfg), seed)


def _unwidened(model):
    """The model built as before re-laying existed (GROUP_COST_MAX 1: no block qualifies)."""
    saved = groups.GROUP_COST_MAX
    groups.GROUP_COST_MAX = 1.0
    try:
        return _build(model)
    finally:
        groups.GROUP_COST_MAX = saved


@pytest.fixture(scope="module", params=["cifar10-like", "cifar100-like"])
def relaid(request):
    """(model, fp32 graph, the same built unwidened, stored layout of block 0)."""
    width, branches, layout = {"cifar10-like": (11, 10, (1, 16)), "cifar100-like": (6, 20, (5, 32))}[
        request.param
    ]
    model = _model(width, branches, 3)
    return model, _build(model), _unwidened(model), layout


@pytest.fixture(scope="module")
def wide(relaid):
    return relaid[:2]


@pytest.fixture(scope="module")
def unwidened(relaid):
    return relaid[2]


def _inputs(model, real_images) -> np.ndarray:
    noise = np.random.default_rng(5).standard_normal((3, 3, 32, 32)).astype(np.float32)
    return np.concatenate([noise, preprocess(real_images.images[:5], model.cfg)])


def _inits(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_which_blocks_are_relaid():
    layouts = {
        name: list(groups.layouts(build_config(name)).values())
        for name in ("cifar10", "cifar100", "imagenet", "tiny", "small")
    }
    # uncoded stage 1 only; coded stages as they are
    assert layouts["cifar10"] == [(1, 16)] * 3 + [(1, 22)] * 3 + [(1, 44)] * 3  # 11 -> 16 per branch
    assert layouts["cifar100"] == [(5, 32)] * 3 + [(1, 12)] * 3 + [(1, 24)] * 3  # 5 x 6 -> 32 per group
    assert layouts["imagenet"][:6] == [(4, 16)] * 3 + [(2, 16)] * 3  # 4 x 4, 2 x 8 = 16: no zero channel
    assert layouts["tiny"][0] == (1, 4) and layouts["small"][0] == (1, 4)  # every option > 1.6x: left alone
    for name in layouts:  # what is chosen is within the cost bound, stage by stage
        cfg = build_config(name)
        chosen = groups.layouts(cfg)
        for stage in range(len(cfg.stages)):
            bs = [b for b in block_layout(cfg) if b.stage == stage]
            cost = sum(groups._cost(b, chosen[b.index]) for b in bs)
            assert cost <= groups.GROUP_COST_MAX * sum(groups._cost(b, groups.model_layout(b)) for b in bs)


@pytest.mark.parametrize("layout", [(1, 16), (2, 32), (5, 64)])
def test_widen_and_narrow_are_inverse(layout):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 100, 3)).astype(np.float32)  # 10 branches of 10 channels on axis 1
    m, w = layout
    x = groups.widen(a, 1, 10, 10, layout)
    assert x.shape == (7, 10 // m * w, 3)
    keep = np.zeros(x.shape[1], bool)
    keep[groups.positions(10, 10, layout)] = True
    np.testing.assert_array_equal(x[:, ~keep], 0)
    np.testing.assert_array_equal(groups.narrow(x, 1, 10, 10, layout), a)
    conv = rng.standard_normal((100, 10, 3, 3)).astype(np.float32)
    wide = groups._conv_widen(conv, 10, 10, layout)
    assert wide.shape == (10 // m * w, w, 3, 3)
    np.testing.assert_array_equal(groups._conv_narrow(wide, 10, 10, layout), conv)
    assert np.count_nonzero(wide) == np.count_nonzero(conv)  # zeros between branches of a group


def test_widened_graph_is_the_same_function(relaid, real_images):
    model, full, unwidened, (m, w) = relaid
    n = model.cfg.stages[0].branches
    inits = _inits(full)
    assert inits["block0/conv.weight"].shape == (n // m * w, w, 3, 3)
    conv = next(nd for nd in full.graph.node if nd.name == "block0/conv")
    assert next(a.i for a in conv.attribute if a.name == "group") == n // m
    assert inits["block0/expand.weight"].shape[1] == n // m * w  # aligned: no expand_align Pad in block 0
    assert not any(nd.name == "block0/expand_align" for nd in full.graph.node)
    x = _inputs(model, real_images)
    got = run(full, {"images": x})["logits"]
    np.testing.assert_allclose(got, torch_logits(model, x), rtol=0, atol=1e-4)
    np.testing.assert_allclose(got, run(unwidened, {"images": x})["logits"], rtol=0, atol=1e-5)


def test_counts_leave_the_zero_channels_out(wide, unwidened):
    from codedresnext.model import count_parameters

    model, full = wide
    assert count_params(full) == count_params(unwidened) == count_parameters(model)
    assert count_flops(full) == count_flops(unwidened)


def test_pruner_reads_the_model_widths(relaid, real_images):
    model, full, _, (m, w) = relaid
    n, d = model.cfg.stages[0].branches, model.cfg.stages[0].width
    fg = load_full_graph(full)
    assert fg.weights["block0/conv.weight"].shape == (n * d, d, 3, 3)
    assert fg.weights["block0/reduce.weight"].shape[0] == n * d
    again, first = _inits(derive(fg, kinds.full_spec(model.cfg))), _inits(full)  # widened again, identically
    assert again.keys() == first.keys()
    for k in first:
        np.testing.assert_array_equal(again[k], first[k], err_msg=k)
    x = _inputs(model, real_images)
    k = model.cfg.class_names.index("cat")
    g = prune(fg, ["cat"])
    assert _inits(g)["block0/conv.weight"].shape == (n // m * w, w, 3, 3)  # class graphs share the trunk
    np.testing.assert_allclose(
        run(g, {"images": x})["logits"], torch_logits(model, x, [k]), rtol=0, atol=1e-4
    )


def test_int8_graphs_and_ranges_are_as_without_widening(relaid, real_images):
    model, full, unwidened, _ = relaid
    n, d = model.cfg.stages[0].branches, model.cfg.stages[0].width
    # INT8 graphs put the groups back to what an unwidened graph gets (d + the fewest aligning zeros)
    qa, qb = int8_surgery.without_alignment(full), int8_surgery.without_alignment(unwidened)
    a, b = _inits(qa), _inits(qb)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    conv = next(nd for nd in qa.graph.node if nd.name == "block0/conv")
    assert next(at.i for at in conv.attribute if at.name == "group") == n
    aligned = {11: 12, 6: 6}[d]  # 110 channels -> 12 output channels per group; 120 is aligned
    assert a["block0/conv.weight"].shape == (n * aligned, d, 3, 3)
    x = [preprocess(real_images.images[i : i + 8], model.cfg) for i in (0, 8)]
    ra, rb = Q.calibrate(full, x).data, Q.calibrate(unwidened, x).data
    pads = {f"block{i}/expand_align" for i in range(3)} if n * d % 4 else set()
    assert set(rb) - set(ra) == pads  # the unwidened graph's Pad output
    for k in ra:
        np.testing.assert_allclose(ra[k].range_value, rb[k].range_value, rtol=1e-6, atol=0, err_msg=k)


def test_a_graph_of_other_widths_is_refused(wide):
    from onnx import numpy_helper

    full = int8_surgery.relaid(
        wide[1], lambda b: (1, b.width + 2)
    )  # d + 2 per group: not what the builder writes
    n, d = wide[0].cfg.stages[0].branches, wide[0].cfg.stages[0].width
    assert numpy_helper.to_array(_inits_proto(full)["block0/conv.weight"]).shape[0] == n * (d + 2)
    with pytest.raises(GraphError, match="not written by codedresnext export"):
        load_full_graph(full)


def _inits_proto(model):
    return {t.name: t for t in model.graph.initializer}
