"""The ONNX surgery of the INT8 twins, with onnx-graphsurgeon: the fp32 trunk's re-laid groups put
back (`relaid`), the fp32 channel alignment dropped (`without_alignment`), the full graph's weight
ranges for sliced weights (`weight_overrides`) and the Q/DQ pair on residual Adds' conv branch
removed (`drop_branch_qdq`). quantize.py says why each is done.

Every rewrite leaves the graph's node order, initializer order, metadata and value_info as they
were (`export_like`), so the twins are byte-identical for the same fp32 graph and ranges.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import numpy_helper

from ..errors import GraphError
from . import groups, names
from .layout import EXPAND_ALIGN, BlockGeom

_MODEL_FIELDS = ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string")


def export_like(graph: gs.Graph, like: onnx.ModelProto) -> onnx.ModelProto:
    """gs.export_onnx(graph), with what it drops or reorders put back as `like` has it: initializer
    order, metadata, model fields, opsets and value_info."""
    out = gs.export_onnx(graph)
    order = {t.name: i for i, t in enumerate(like.graph.initializer)}
    inits = sorted(out.graph.initializer, key=lambda t: order.get(t.name, len(order)))
    del out.graph.initializer[:]
    out.graph.initializer.extend(inits)
    out.metadata_props.extend(like.metadata_props)
    for f in _MODEL_FIELDS:
        out.ClearField(f)
        if like.HasField(f):
            setattr(out, f, getattr(like, f))
    del out.opset_import[:], out.graph.value_info[:]
    out.opset_import.extend(like.opset_import)
    out.graph.value_info.extend(like.graph.value_info)
    return out


def relaid(model, to: Callable[[BlockGeom], groups.Layout]):
    """A copy of an ONNX graph whose re-laid blocks (groups.py) are stored in layout `to(block)`
    instead (their 3x3 conv's group count follows); the graph itself when none is re-laid."""
    layouts = groups.model_layouts(model)
    if not layouts:
        return model
    graph = gs.import_onnx(model)
    tensors, nodes = graph.tensors(), {n.name: n for n in graph.nodes}
    for b, layout in layouts:
        keys = [f"block{b.index}/{part}" for part, _ in groups.GROUPED]
        new = to(b)
        for k, a in groups.block_tensors({k: tensors[k].values for k in keys}, b, layout, new).items():
            tensors[k].values = a
        nodes[f"block{b.index}/conv"].attrs["group"] = b.branches // new[0]
    return export_like(graph, model)


def without_alignment(model):
    """A copy of `model` without the Pads that align the expand convs' input channels for fp32
    (builder._expand); the same function.

    The padding is for ONNX Runtime's fp32 NCHWc convolutions. In a Q/DQ graph the Pad runs on
    float values between a DequantizeLinear and a QuantizeLinear that nothing can fuse (profiled:
    benchmarks/results/profile_graphs_int8_cpu.md).
    The integer 1x1 convolutions still run faster on an aligned channel count, so where h comes
    straight from the grouped 3x3 conv (uncoded blocks) each group gets zero output channels instead
    (`_widen_groups`: a few more output rows of that conv, no copy); elsewhere (the normalised h of a
    coded block) the Pad and the weight's zero columns are dropped. The fp32 trunk's groups re-laid
    for NCHWc (groups.py) are first put back in the model's layout: the integer kernels do not use
    NCHWc, so the INT8 graph is what it would be without that re-laying.
    """
    widened = groups.model_layouts(model)  # the fp32 trunk's zero channels go (groups.py) ...
    model = relaid(model, groups.model_layout)
    graph = gs.import_onnx(model)
    tensors = graph.tensors()
    for b, _ in widened:  # ... and the block gets what an unwidened graph's expand Pad turns into below
        if b.branches * b.width % EXPAND_ALIGN:
            w = tensors[names.w(b.index, "expand")]
            w.values = _widen_groups(tensors[f"block{b.index}/conv_relu"], w.values)
    for pad in [n for n in graph.nodes if n.op == "Pad" and names.expand_align_block(n.name) is not None]:
        convs, widths = pad.outputs[0].outputs, pad.inputs[1]
        if len(convs) != 1 or convs[0].op != "Conv" or not isinstance(widths, gs.Constant):
            raise GraphError(f"{pad.name}: not an expand conv's channel alignment (builder._expand)")
        conv, extra = convs[0], int(widths.values[5])
        if not isinstance(conv.inputs[1], gs.Constant):
            raise GraphError(f"{pad.name}: not an expand conv's channel alignment (builder._expand)")
        w = conv.inputs[1].values
        keep = w.shape[1] - extra
        if np.any(w[:, keep:]):
            raise GraphError(f"{pad.name}: the weight columns it pads for are not zero")
        conv.inputs[1].values = _widen_groups(pad.inputs[0], w[:, :keep])
        conv.inputs[0] = pad.inputs[0]
        graph.nodes.remove(pad)
    return export_like(graph, model)  # initializers nothing reads any more are not exported


def _widen_groups(h: gs.Variable, expand_w: np.ndarray) -> np.ndarray:
    """If h = Relu(grouped Conv) feeds only the expand conv, give each of that conv's G groups q zero
    output channels (zero weight rows and bias: Relu(0) = 0) so that G * (d + q) is aligned, and
    return the expand weight with zero columns at those channels; else return `expand_w` as is."""
    relu = h.inputs[0] if h.inputs else None
    if relu is None or relu.op != "Relu" or not relu.inputs[0].inputs:
        return expand_w
    conv = relu.inputs[0].inputs[0]
    if conv.op != "Conv" or len(conv.inputs) < 3 or not isinstance(conv.inputs[2], gs.Constant):
        return expand_w
    if len(h.outputs) != 1 or len(relu.inputs[0].outputs) != 1:
        return expand_w
    n = conv.attrs.get("group", 1)
    w, b = conv.inputs[1].values, conv.inputs[2].values
    d = w.shape[0] // n
    if n * d != expand_w.shape[1]:
        return expand_w
    q = next(q for q in range(1, EXPAND_ALIGN + 1) if n * (d + q) % EXPAND_ALIGN == 0)
    conv.inputs[1].values = groups.widen(w, 0, n, d, (1, d + q))
    conv.inputs[2].values = groups.widen(b, 0, n, d, (1, d + q))
    return groups.widen(expand_w, 1, n, d, (1, d + q))


def full_weights(full_model) -> dict[str, np.ndarray]:
    """The full graph's convolution weights, by name (for `weight_overrides`), unpadded."""
    full_model = without_alignment(full_model)
    convs = {n.input[1] for n in full_model.graph.node if n.op_type == "Conv"}
    return {t.name: numpy_helper.to_array(t) for t in full_model.graph.initializer if t.name in convs}


def weight_overrides(model, full: dict[str, np.ndarray]) -> dict[str, list[dict]]:
    """Per-channel weight ranges of the full graph, for weights a derived graph sliced on the input axis.

    A pruned coded block keeps all output channels of its expand conv but only the kept branches'
    input columns, so its per-output-channel max |w| (hence its int8 scales) would differ from the
    full graph's. The full graph's ranges make the pruned weight's int8 values those of the full
    weight's kept columns: the pruned graph then equals the masked graph in int8 too. Weights
    sliced on the output axis (reduce, 3x3) keep their rows' ranges anyway.
    """
    inits = {t.name: t for t in model.graph.initializer}
    out: dict[str, list[dict]] = {}
    for n in model.graph.node:
        w = n.input[1] if n.op_type == "Conv" and len(n.input) > 1 else None
        if w is None or w not in full or w not in inits:
            continue
        fw, shape = full[w], tuple(inits[w].dims)
        # unchanged weights keep their own ranges; equal shapes alone do not say so (a graph could
        # slice a weight to as many columns as another's)
        if shape[0] != fw.shape[0] or (
            shape == fw.shape and np.array_equal(numpy_helper.to_array(inits[w]), fw)
        ):
            continue
        m = np.abs(fw.reshape(fw.shape[0], -1)).max(1)
        out[w] = [{"axis": 0, "rmin": float(-v), "rmax": float(v)} for v in m]
    return out


def drop_branch_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """Residual Adds: remove the Q/DQ pair on input 0 (the conv branch, builder's `Add(y, shortcut)`)
    where that pair feeds nothing else; the shortcut input keeps its Q/DQ."""
    graph = gs.import_onnx(model)
    for add in graph.nodes:
        if add.op != "Add" or not add.name.endswith("/residual") or not add.inputs[0].inputs:
            continue
        dq = add.inputs[0].inputs[0]
        if dq.op != "DequantizeLinear" or len(dq.outputs[0].outputs) != 1 or not dq.inputs[0].inputs:
            continue
        q = dq.inputs[0].inputs[0]
        if q.op != "QuantizeLinear" or len(q.outputs[0].outputs) != 1:
            continue
        add.inputs[0] = q.inputs[0]
        graph.nodes.remove(dq)
        graph.nodes.remove(q)
    return export_like(graph, model)
