"""Parameters and FLOPs counted from an ONNX graph (onnx + numpy only).

params ("pytorch_equivalent"): every `*.weight` initializer element, plus TWO per element of every
`*.bias` (each bias is a folded BatchNorm, i.e. its gamma and beta; an exit head's bias counts
once). Not counted: BN running statistics (buffers in PyTorch), the Gram matrices (derived from
the expand weights), masks and shape constants. For the full graph this equals
`count_parameters(model)`; for a pruned graph it is the PyTorch parameter count of the kept path
(layout.analytic_params).

flops: 2 x multiply-accumulates of Conv and Gemm/MatMul nodes for ONE sample (batch = 1);
element-wise ops, pooling and reductions are not counted.

Neither counts the zero input columns the builder appends to an expand conv for ONNX Runtime's
channel alignment (the `block{i}/expand_align` Pad, builder._expand) nor the zero channels it adds
inside the shared trunk's groups (groups.py): they are layout, not model.
"""

from __future__ import annotations

import numpy as np

from . import groups, names

PARAMS_DEFINITION = (
    "PyTorch-equivalent parameters of the computed path: conv/fc weights + BN gamma and beta of the "
    "kept channels (2 per folded conv bias); excludes BN running stats and the derived Gram matrices"
)
FLOPS_DEFINITION = (
    "2 x multiply-accumulates of Conv and Gemm/MatMul per sample (batch 1); other ops not counted; "
    "alignment padding not counted"
)


def _alignment(model) -> dict[int, int]:
    """{block: zero input columns appended to its expand conv for alignment}, from the Pad nodes."""
    from onnx import numpy_helper

    consts = {t.name: t for t in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        block = names.expand_align_block(n.name) if n.op_type == "Pad" else None
        if block is not None and len(n.input) > 1 and n.input[1] in consts:
            out[block] = int(numpy_helper.to_array(consts[n.input[1]])[5])  # pads: channel end
    return out


def _group_share(model) -> dict[str, float]:
    """{tensor name: share of its elements that is model, not zero channels} for the blocks the
    builder stored m branches per group of w channels (groups.py): rows and the expand's columns
    m d / w, the 3x3 weight m d^2 / w^2."""
    out = {}
    for b, (m, w) in groups.model_layouts(model):
        r = m * b.width / w
        for part in ("reduce.weight", "reduce.bias", "conv.bias", "expand.weight"):
            out[f"block{b.index}/{part}"] = r
        out[f"block{b.index}/conv.weight"] = r * b.width / w
    return out


def count_params(model) -> int:
    pad = {names.w(i, "expand"): p for i, p in _alignment(model).items()}
    share = _group_share(model)
    n = 0
    for t in model.graph.initializer:
        if names.is_parameter(t.name):
            numel = int(np.prod(t.dims)) if len(t.dims) else 1
            if t.name in pad:
                numel -= pad[t.name] * numel // t.dims[1]
            numel = round(numel * share.get(t.name, 1.0))
            folded_bn = t.name.endswith(".bias") and not t.name.endswith("exit_head.bias")
            n += numel * (2 if folded_bn else 1)
    return n


def count_initializer_elements(model) -> int:
    """Raw number of stored initializer elements (what the file actually holds)."""
    return sum(int(np.prod(t.dims)) if len(t.dims) else 1 for t in model.graph.initializer)


def count_flops(model, inferred=None) -> dict:
    """{"macs", "flops"} per sample, from shape-inferred Conv/Gemm shapes (batch set to 1).

    `inferred`: the model after onnx shape inference, if the caller has it (ops.check_graph).
    """
    import onnx
    from onnx import shape_inference

    if inferred is None:
        inferred = shape_inference.infer_shapes(model, strict_mode=False)
    shapes: dict[str, list[int]] = {}
    for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = v.type.tensor_type.shape.dim
        shapes[v.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]
    for t in model.graph.initializer:
        shapes[t.name] = list(t.dims)
    pad = {f"block{i}/expand": p for i, p in _alignment(model).items()}  # conv node names
    share = _group_share(model)  # by weight name
    macs = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            w = shapes[node.input[1]]
            out = shapes[node.output[0]]
            cols = w[1] - pad.get(node.name, 0)
            macs += round(int(np.prod(out[1:])) * cols * int(np.prod(w[2:])) * share.get(node.input[1], 1.0))
        elif node.op_type in ("Gemm", "MatMul"):
            a, b = shapes[node.input[0]], shapes[node.input[1]]
            trans_b = any(
                at.name == "transB" and onnx.helper.get_attribute_value(at) for at in node.attribute
            )
            n_out = b[0] if trans_b else b[-1]
            macs += int(np.prod(a[1:])) * n_out
    return {"macs": macs, "flops": 2 * macs}
