"""The op builders of the ONNX -> torch importer (onnx_import.py): one small function per op of the
project's allowlist (export/ops.py), ONNX operator semantics at opset >= 13.

A builder takes a `OpNode` (attributes + constant operands) and returns (fn over tensors, indices of the
inputs that are tensors at run time). Constant operands (axes, shapes, pads, K) become Python values
here, once, so a forward pass never reads from the device. Imports torch: only the torch backend
imports this, lazily.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .onnx_node import DTYPES, OpNode
from .onnx_ops_nn import _avgpool, _batchnorm, _conv, _dequantize, _gemm, _global, _maxpool, _quantize


# -- op builders: (node) -> (fn, dynamic input indices) ---------------------------------------------
def _unary(fn: Callable) -> Callable:
    return lambda n: (fn, [0])


def _binary(fn: Callable) -> Callable:
    return lambda n: (fn, [0, 1])


def _div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.is_floating_point():
        return a / b
    return torch.div(a, b, rounding_mode="trunc")  # ONNX integer Div truncates


def _variadic(fn: Callable) -> Callable:
    def build(n: OpNode):
        def run(*xs):
            out = xs[0]
            for x in xs[1:]:
                out = fn(out, x)
            return out

        return run, list(range(len(n.inputs)))

    return build


def _cast(n: OpNode):
    to = DTYPES.get(n.attr("to"))
    if to is None:
        raise n.fail(f"Cast to ONNX type {n.attr('to')}")
    return (lambda x: x.to(to)), [0]


def _reduce(fn: Callable) -> Callable:
    def build(n: OpNode):
        axes = n.const_ints(1, "axes") if n.has_input(1) else n.attr("axes")
        keep = bool(n.attr("keepdims", 1))
        if not axes:
            if n.attr("noop_with_empty_axes", 0):
                return (lambda x: x), [0]
            return (lambda x: fn(x, dim=tuple(range(x.dim())), keepdim=keep)), [0]
        dims = tuple(int(a) for a in axes)
        return (lambda x: fn(x, dim=dims, keepdim=keep)), [0]

    return build


def _amax(x, dim, keepdim):
    return torch.amax(x, dim=dim, keepdim=keepdim)


def _amin(x, dim, keepdim):
    return torch.amin(x, dim=dim, keepdim=keepdim)


def _reshape(n: OpNode):
    shape = n.const_ints(1, "shape")
    if 0 in shape and not n.attr("allowzero", 0):  # 0 copies the input's dimension
        return (lambda x: x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(shape)])), [0]
    return (lambda x: x.reshape(shape)), [0]


def _flatten(n: OpNode):
    axis = int(n.attr("axis", 1))

    def run(x):
        a = axis if axis >= 0 else axis + x.dim()
        return x.reshape(math.prod(x.shape[:a]), -1)

    return run, [0]


def _squeeze(n: OpNode):
    axes = n.const_ints(1, "axes") if n.has_input(1) else n.attr("axes")
    if not axes:
        return (lambda x: x.squeeze()), [0]
    return (lambda x: x.squeeze(tuple(axes))), [0]


def _unsqueeze(n: OpNode):
    axes = n.const_ints(1, "axes") if n.has_input(1) else n.attr("axes")

    def run(x):
        rank = x.dim() + len(axes)
        for a in sorted(a % rank for a in axes):
            x = x.unsqueeze(a)
        return x

    return run, [0]


def _transpose(n: OpNode):
    perm = n.attr("perm")
    if perm is None:
        return (lambda x: x.permute(*reversed(range(x.dim())))), [0]
    perm = [int(p) for p in perm]
    return (lambda x: x.permute(perm)), [0]


def _concat(n: OpNode):
    axis = int(n.attr("axis"))
    return (lambda *xs: torch.cat(xs, dim=axis)), list(range(len(n.inputs)))


def _slice(n: OpNode):
    starts, ends = n.const_ints(1, "starts"), n.const_ints(2, "ends")
    axes = n.const_ints(3, "axes") or list(range(len(starts)))
    steps = n.const_ints(4, "steps") or [1] * len(starts)
    if any(s <= 0 for s in steps):
        raise n.fail("Slice with non-positive steps")

    def run(x):
        idx = [slice(None)] * x.dim()
        for a, s, e, st in zip(axes, starts, ends, steps):
            idx[a % x.dim()] = slice(s, e, st)
        return x[tuple(idx)]

    return run, [0]


def _pad(n: OpNode):
    pads = n.const_ints(1, "pads")
    if n.attr("mode", "constant") != "constant" or pads is None:
        raise n.fail("Pad other than constant mode with constant pads")
    if n.has_input(3):
        raise n.fail("Pad with axes")
    value = n.const(2) if n.has_input(2) else np.zeros(1)
    if value is None:
        raise n.fail("Pad with a fill value computed at run time")
    fill = float(np.asarray(value).reshape(-1)[0])
    rank = len(pads) // 2
    torch_pads = [v for a in reversed(range(rank)) for v in (pads[a], pads[a + rank])]  # last axis first

    def run(x):
        return F.pad(x, torch_pads, value=fill)

    return run, [0]


def _gather(n: OpNode):
    axis = int(n.attr("axis", 0))
    idx = n.const(1)
    if idx is not None and np.asarray(idx).ndim == 0:  # scalar index: the axis disappears
        i = int(idx)
        return (lambda x: x.select(axis, i if i >= 0 else i + x.shape[axis])), [0]

    def run(x, ind):
        a = axis % x.dim()
        ind = torch.where(ind < 0, ind + x.shape[a], ind)
        out = torch.index_select(x, a, ind.reshape(-1))
        return out.reshape(*x.shape[:a], *ind.shape, *x.shape[a + 1 :])

    return run, [0, 1]


def _softmax(n: OpNode):
    axis = int(n.attr("axis", -1))
    return (lambda x: torch.softmax(x, dim=axis)), [0]


def _clip(n: OpNode):
    lo, hi = n.const(1), n.const(2)
    if (n.has_input(1) and lo is None) or (n.has_input(2) and hi is None):
        return (lambda x, a=None, b=None: torch.clamp(x, a, b)), [i for i in range(3) if n.has_input(i)]
    lo_v = None if lo is None else float(lo)
    hi_v = None if hi is None else float(hi)
    return (lambda x: torch.clamp(x, lo_v, hi_v)), [0]


def _arg(fn: Callable) -> Callable:
    def build(n: OpNode):
        if n.attr("select_last_index", 0):
            raise n.fail("select_last_index=1")
        axis, keep = int(n.attr("axis", 0)), bool(n.attr("keepdims", 1))
        return (lambda x: fn(x, dim=axis, keepdim=keep)), [0]

    return build


def _topk(n: OpNode):
    (k,) = n.const_ints(1, "K")
    axis, largest = int(n.attr("axis", -1)), bool(n.attr("largest", 1))

    def run(x):  # a stable sort: ties go to the lower index, as the ONNX spec says (torch.topk: any)
        v, i = torch.sort(x, dim=axis, descending=largest, stable=True)
        return v.narrow(axis, 0, k), i.narrow(axis, 0, k)

    return run, [0]


def _shape(n: OpNode):
    start, end = n.attr("start", 0), n.attr("end")
    # not capturable in a CUDA graph (a host -> device copy); our exporter never writes Shape
    return (lambda x: torch.tensor(list(x.shape)[start:end], dtype=torch.int64, device=x.device)), [0]


def _leaky(n: OpNode):
    alpha = float(n.attr("alpha", 0.01))
    return (lambda x: F.leaky_relu(x, alpha)), [0]


OPS: dict[str, Callable[[OpNode], tuple[Callable, list[int]]]] = {
    "Abs": _unary(torch.abs),
    "Add": _binary(torch.add),
    "ArgMax": _arg(torch.argmax),
    "ArgMin": _arg(torch.argmin),
    "AveragePool": _avgpool,
    "BatchNormalization": _batchnorm,
    "Cast": _cast,
    "Clip": _clip,
    "Concat": _concat,
    "Conv": _conv,
    "DequantizeLinear": _dequantize,
    "Div": _binary(_div),
    "Exp": _unary(torch.exp),
    "Flatten": _flatten,
    "Gather": _gather,
    "Gemm": _gemm,
    "GlobalAveragePool": _global(torch.mean),
    "GlobalMaxPool": _global(_amax),
    "Identity": _unary(lambda x: x),
    "LeakyRelu": _leaky,
    "Log": _unary(torch.log),
    "MatMul": _binary(torch.matmul),
    "Max": _variadic(torch.maximum),
    "MaxPool": _maxpool,
    "Min": _variadic(torch.minimum),
    "Mul": _binary(torch.mul),
    "Neg": _unary(torch.neg),
    "Pad": _pad,
    "Pow": _binary(torch.pow),
    "QuantizeLinear": _quantize,
    "Reciprocal": _unary(torch.reciprocal),
    "ReduceMax": _reduce(_amax),
    "ReduceMean": _reduce(torch.mean),
    "ReduceMin": _reduce(_amin),
    "ReduceSum": _reduce(torch.sum),
    "Relu": _unary(torch.relu),
    "Reshape": _reshape,
    "Shape": _shape,
    "Sigmoid": _unary(torch.sigmoid),
    "Slice": _slice,
    "Softmax": _softmax,
    "Sqrt": _unary(torch.sqrt),
    "Squeeze": _squeeze,
    "Sub": _binary(torch.sub),
    "Tanh": _unary(torch.tanh),
    "TopK": _topk,
    "Transpose": _transpose,
    "Unsqueeze": _unsqueeze,
}
