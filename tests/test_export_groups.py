"""The shared trunk's widened groups (export/groups.py): the same function, the same counts, and the
pruner and the INT8 path see the model's own widths.

A tiny network whose uncoded first stage has the cifar10 preset's branch width 11 (10 x 11 channels),
random weights with non-trivial BN statistics.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from export_helpers import preprocess, randomize_bn, run, torch_logits

from codedresnext.config import build_config
from codedresnext.errors import GraphError
from codedresnext.export import groups, specs
from codedresnext.export import quantize as Q
from codedresnext.export.counting import count_flops, count_params
from codedresnext.export.layout import block_layout
from codedresnext.export.pruner import derive, load_full_graph, prune


def _build(model):
    from codedresnext.export.builder import build_graph
    from codedresnext.export.fold import fold_weights
    from codedresnext.export.meta import graph_metadata

    cfg = model.cfg
    spec = specs.full_spec(cfg)
    meta = graph_metadata(cfg, spec, checkpoint_sha256="0" * 64, untrained=True, opset=17)
    return build_graph(cfg, fold_weights(model), spec, metadata=meta)


@pytest.fixture(scope="module")
def wide():
    import torch

    from codedresnext.model import CodedResNeXt

    base = build_config("tiny")
    cfg = dataclasses.replace(base, stages=(dataclasses.replace(base.stages[0], width=11), *base.stages[1:]))
    torch.manual_seed(3)
    model = randomize_bn(CodedResNeXt(cfg), 3)
    return model, _build(model)


@pytest.fixture(scope="module")
def unwidened(wide):
    """The same model built as before widening existed (GROUP_PAD_MAX 1: no block qualifies)."""
    saved = groups.GROUP_PAD_MAX
    groups.GROUP_PAD_MAX = 1.0
    try:
        return _build(wide[0])
    finally:
        groups.GROUP_PAD_MAX = saved


def _inputs(model, real_images) -> np.ndarray:
    noise = np.random.default_rng(5).standard_normal((3, 3, 32, 32)).astype(np.float32)
    return np.concatenate([noise, preprocess(real_images.images[:5], model.cfg)])


def _inits(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_which_blocks_are_widened():
    widths = {
        name: [groups.group_width(b) for b in block_layout(build_config(name))]
        for name in ("cifar10", "cifar100", "imagenet", "tiny", "small")
    }
    assert widths["cifar10"] == [16] * 3 + [22] * 3 + [44] * 3  # uncoded 11 -> 16; coded stages as they are
    assert widths["cifar100"][:3] == [6] * 3  # 6 -> 16 would be 2.7x: left alone
    assert widths["imagenet"][:3] == [4] * 3
    assert widths["tiny"][0] == 4 and widths["small"][0] == 4


def test_widen_and_narrow_are_inverse():
    a = np.random.default_rng(0).standard_normal((7, 30, 3)).astype(np.float32)
    w = groups.widen(a, 1, 3, 10, 16)
    assert w.shape == (7, 48, 3)
    np.testing.assert_array_equal(w.reshape(7, 3, 16, 3)[:, :, 10:], 0)
    np.testing.assert_array_equal(groups.narrow(w, 1, 3, 16, 10), a)


def test_widened_graph_is_the_same_function(wide, unwidened, real_images):
    model, full = wide
    inits = _inits(full)
    assert inits["block0/conv.weight"].shape == (10 * 16, 16, 3, 3)
    assert inits["block0/expand.weight"].shape[1] == 160  # aligned: no expand_align Pad in block 0
    assert not any(n.name == "block0/expand_align" for n in full.graph.node)
    x = _inputs(model, real_images)
    got = run(full, {"images": x})["logits"]
    np.testing.assert_allclose(got, torch_logits(model, x), rtol=0, atol=1e-4)
    np.testing.assert_allclose(got, run(unwidened, {"images": x})["logits"], rtol=0, atol=1e-5)


def test_counts_leave_the_zero_channels_out(wide, unwidened):
    from codedresnext.model import count_parameters

    model, full = wide
    assert count_params(full) == count_params(unwidened) == count_parameters(model)
    assert count_flops(full) == count_flops(unwidened)


def test_pruner_reads_the_model_widths(wide, real_images):
    model, full = wide
    fg = load_full_graph(full)
    assert fg.weights["block0/conv.weight"].shape == (110, 11, 3, 3)
    assert fg.weights["block0/reduce.weight"].shape[0] == 110
    again, first = _inits(derive(fg, specs.full_spec(model.cfg))), _inits(full)  # widened again, identically
    assert again.keys() == first.keys()
    for k in first:
        np.testing.assert_array_equal(again[k], first[k], err_msg=k)
    x = _inputs(model, real_images)
    k = model.cfg.class_names.index("cat")
    g = prune(fg, ["cat"])
    assert _inits(g)["block0/conv.weight"].shape == (160, 16, 3, 3)  # class graphs share the widened trunk
    np.testing.assert_allclose(
        run(g, {"images": x})["logits"], torch_logits(model, x, [k]), rtol=0, atol=1e-4
    )


def test_int8_graphs_and_ranges_are_as_without_widening(wide, unwidened, real_images):
    model, full = wide
    # INT8 graphs narrow the groups to what an unwidened graph gets (d + the fewest aligning zeros)
    a, b = _inits(Q.without_alignment(full)), _inits(Q.without_alignment(unwidened))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert a["block0/conv.weight"].shape == (120, 11, 3, 3)  # 12 output channels per group
    x = [preprocess(real_images.images[i : i + 8], model.cfg) for i in (0, 8)]
    ra, rb = Q.calibrate(full, x).data, Q.calibrate(unwidened, x).data
    assert set(rb) - set(ra) == {"block0/expand_align"}  # the unwidened graph's Pad output
    for k in ra:
        np.testing.assert_allclose(ra[k].range_value, rb[k].range_value, rtol=1e-6, atol=0, err_msg=k)


def test_a_graph_of_other_widths_is_refused(wide):
    from onnx import numpy_helper

    full = groups.narrowed(wide[1], lambda b: b.width + 2)  # 13 per group: not what the builder writes
    assert numpy_helper.to_array(_inits_proto(full)["block0/conv.weight"]).shape[0] == 130
    with pytest.raises(GraphError, match="not written by codedresnext export"):
        load_full_graph(full)


def _inits_proto(model):
    return {t.name: t for t in model.graph.initializer}
