"""Checks of an INT8 twin's form: what TensorRT's explicit quantization (int8) or ONNX Runtime's
CPU kernels (int8-cpu) need from the Q/DQ placement (quantize.py says how the twins are made)."""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from ..errors import GraphError
from .ops import check_ops
from .quantize import PRECISION_TRT


def _inits(model) -> dict:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def check_quantized(model, precision: str) -> dict:
    """Raise GraphError unless `model` is a well-formed `precision` twin; return a summary.

    int8 (TensorRT): every Q/DQ zero point is an int8 zero; every main-path Conv reads a DQ'd
    activation and a per-channel (axis 0, one scale per output channel) DQ'd int8 weight; the
    shortcut input of every residual Add is DQ'd; no int32 (bias) DQ; only allowlisted ops.
    int8-cpu: allowlisted ops, int8 symmetric per-channel weights.
    """
    check_ops(model)
    inits = _inits(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    q = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not q:
        raise GraphError(f"{precision} graph has no QuantizeLinear/DequantizeLinear nodes")
    zero_dtypes = set()
    for n in q:
        if len(n.input) < 3 or n.input[2] not in inits:
            raise GraphError(f"{n.name}: zero point missing (TensorRT needs an explicit int8 zero point)")
        zp = inits[n.input[2]]
        zero_dtypes.add(zp.dtype.name)
        weight = n.op_type == "DequantizeLinear" and n.input[0] in inits
        if zp.dtype == np.int32:
            if precision == PRECISION_TRT:
                raise GraphError(f"{n.name}: int32 (bias) DequantizeLinear; TensorRT takes float bias")
            continue
        if (precision == PRECISION_TRT or weight) and (zp.dtype != np.int8 or np.any(zp != 0)):
            raise GraphError(f"{n.name}: zero point {zp.dtype} {zp.ravel()[:4]} is not a symmetric int8 zero")
    convs = 0
    for n in model.graph.node:
        if n.op_type != "Conv" or n.name.endswith("/gram_conv"):
            continue
        convs += 1
        dq_x, dq_w = producer.get(n.input[0]), producer.get(n.input[1])
        if dq_x is None or dq_x.op_type != "DequantizeLinear":
            raise GraphError(f"{n.name}: activation input is not dequantized (no Q/DQ)")
        if dq_w is None or dq_w.op_type != "DequantizeLinear" or dq_w.input[0] not in inits:
            raise GraphError(f"{n.name}: weight is not an int8 initializer behind a DequantizeLinear")
        w, scale = inits[dq_w.input[0]], inits[dq_w.input[1]]
        axis = next((a.i for a in dq_w.attribute if a.name == "axis"), 1)
        if w.dtype != np.int8 or scale.shape != (w.shape[0],) or axis != 0:
            raise GraphError(f"{n.name}: weight scales are not per output channel (axis 0) int8")
    if precision == PRECISION_TRT:
        for n in model.graph.node:
            if n.op_type == "Add" and n.name.endswith("/residual"):
                sc = producer.get(n.input[1])
                if sc is None or sc.op_type != "DequantizeLinear":
                    raise GraphError(f"{n.name}: the residual (shortcut) input must be Q/DQ'd for TensorRT")
    return {
        "quantize_linear": sum(n.op_type == "QuantizeLinear" for n in q),
        "dequantize_linear": sum(n.op_type == "DequantizeLinear" for n in q),
        "quantized_convs": convs,
        "zero_point_dtypes": sorted(zero_dtypes),
    }
