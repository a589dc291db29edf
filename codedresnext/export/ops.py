"""Operator allowlist: ops TensorRT's ONNX parser supports (onnx/onnx-tensorrt docs/operators.md,
TensorRT 10, opsets 9-20), restricted to plain, well-trodden ones. Every graph we write is checked
against it, so a TensorRT build never meets an op it cannot parse. onnx only."""

from __future__ import annotations

from ..errors import GraphError

TRT_ALLOWED_OPS = frozenset(
    {
        "Abs",
        "Add",
        "ArgMax",
        "ArgMin",
        "AveragePool",
        "BatchNormalization",
        "Cast",
        "Clip",
        "Concat",
        "Constant",
        "Conv",
        "DequantizeLinear",  # explicit quantization (INT8 twins): TensorRT 10 and 11 parse Q/DQ
        "Div",
        "Exp",
        "Flatten",
        "Gather",
        "Gemm",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "Identity",
        "LeakyRelu",
        "Log",
        "MatMul",
        "Max",
        "MaxPool",
        "Min",
        "Mul",
        "Neg",
        "Pad",  # constant mode (the expand conv's channel alignment, builder._expand)
        "Pow",
        "QuantizeLinear",
        "Reciprocal",
        "ReduceMax",
        "ReduceMean",
        "ReduceMin",
        "ReduceSum",
        "Relu",
        "Reshape",
        "Shape",
        "Sigmoid",
        "Slice",
        "Softmax",
        "Sqrt",
        "Squeeze",
        "Sub",
        "Tanh",
        "TopK",
        "Transpose",
        "Unsqueeze",
    }
)
MIN_OPSET, MAX_OPSET = 17, 20  # opset >= 17 asked for; TensorRT 10 parses up to 20


def check_ops(model) -> set[str]:
    """Raise GraphError naming any op outside the allowlist; return the set of ops used."""
    used = {n.op_type for n in model.graph.node}
    bad = {n.op_type for n in model.graph.node if n.domain not in ("", "ai.onnx")} | (used - TRT_ALLOWED_OPS)
    if bad:
        raise GraphError(f"graph uses ops outside the TensorRT allowlist: {sorted(bad)}")
    return used


def batch_dim_lost(inferred) -> list[str]:
    """Values whose leading dimension shape inference no longer knows to be the input's batch.

    Every graph we build is batch-major; when a dimension becomes an anonymous `unk__` symbol
    (a Reshape to -1, a broadcast against one), ONNX Runtime's layout pass cannot prove the two
    inputs of a residual Add the same shape and runs Add and Relu unfused instead of folding them
    into the expand conv (benchmarks/results/profile_graphs.md, the "batch-lost" build)."""
    batch = {i.type.tensor_type.shape.dim[0].dim_param for i in inferred.graph.input}
    lost = []
    for v in [*inferred.graph.value_info, *inferred.graph.output]:
        shape = v.type.tensor_type.shape
        if not v.type.HasField("tensor_type") or not shape.dim:
            continue
        d0 = shape.dim[0]
        if not d0.HasField("dim_value") and d0.dim_param not in batch:
            lost.append(v.name)
    return lost


def check_graph(model, data: bytes | None = None):
    """onnx.checker + strict, type-checked shape inference (what check_model(full_check=True) runs)
    + op allowlist + opset range. Returns the shape-inferred model (counting.count_flops reuses it).

    `data`: the model's serialized bytes when the caller already has them (saves a serialization).
    """
    import onnx
    from onnx import shape_inference

    data = model.SerializeToString() if data is None else data
    try:
        onnx.checker.check_model(data)
        inferred = shape_inference.infer_shapes(data, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, shape_inference.InferenceError) as e:
        raise GraphError(f"generated graph fails onnx.checker / shape inference: {e}") from e
    check_ops(model)
    lost = batch_dim_lost(inferred)
    if lost:
        raise GraphError(
            f"internal: shape inference loses the symbolic batch dimension at {lost[:3]}; ONNX Runtime "
            "then cannot fuse the residual Conv + Add + Relu (use 0, not -1, in Reshape shapes)"
        )
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise GraphError(f"opset {opset} outside {MIN_OPSET}..{MAX_OPSET}")
    return inferred
