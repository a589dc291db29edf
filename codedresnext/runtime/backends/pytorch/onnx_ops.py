"""The op builders of the ONNX -> torch importer (onnx_import.py): one small function per op of the
project's allowlist (export/ops.py), ONNX operator semantics at opset >= 13.

A builder takes a `_Node` (attributes + constant operands) and returns (fn over tensors, indices of the
inputs that are tensors at run time). Constant operands (axes, shapes, pads, K) become Python values
here, once, so a forward pass never reads from the device. Imports torch: only the torch backend
imports this, lazily.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ....errors import GraphError

# ONNX TensorProto element types -> torch dtypes
DTYPES = {
    1: torch.float32,
    2: torch.uint8,
    3: torch.int8,
    5: torch.int16,
    6: torch.int32,
    7: torch.int64,
    9: torch.bool,
    10: torch.float16,
    11: torch.float64,
    16: torch.bfloat16,
}


class _Node:
    """One node's attributes and constant operands, as the op builders below read them."""

    def __init__(self, node, consts: dict[str, np.ndarray]) -> None:
        from onnx import helper

        self.op, self.name = node.op_type, node.name or node.output[0]
        self.inputs, self.outputs = list(node.input), list(node.output)
        self.attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        self._consts = consts

    def attr(self, key: str, default: Any = None) -> Any:
        v = self.attrs.get(key, default)
        return v.decode() if isinstance(v, bytes) else v

    def has_input(self, i: int) -> bool:
        return len(self.inputs) > i and self.inputs[i] != ""

    def const(self, i: int) -> np.ndarray | None:
        """The i-th input's value if it is an initializer/Constant, else None (absent: None)."""
        return self._consts.get(self.inputs[i]) if self.has_input(i) else None

    def const_ints(self, i: int, what: str) -> list[int] | None:
        """Constant int list operand (axes, shape, K, ...); GraphError if it is computed at run time."""
        if not self.has_input(i):
            return None
        v = self.const(i)
        if v is None:
            raise GraphError(
                f"node {self.name!r} ({self.op}): its {what} input {self.inputs[i]!r} is computed at run "
                "time; the torch importer needs it as an initializer or Constant"
            )
        return [int(a) for a in np.asarray(v).reshape(-1)]

    def fail(self, why: str) -> GraphError:
        return GraphError(f"node {self.name!r} ({self.op}): {why} is not supported by the torch importer")


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
    def build(n: _Node):
        def run(*xs):
            out = xs[0]
            for x in xs[1:]:
                out = fn(out, x)
            return out

        return run, list(range(len(n.inputs)))

    return build


def _cast(n: _Node):
    to = DTYPES.get(n.attr("to"))
    if to is None:
        raise n.fail(f"Cast to ONNX type {n.attr('to')}")
    return (lambda x: x.to(to)), [0]


def _conv(n: _Node):
    w = n.const(1)
    rank = (w.ndim if w is not None else len(n.attr("kernel_shape", [0, 0])) + 2) - 2
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}.get(rank)
    if conv is None:
        raise n.fail(f"{rank}-d convolution")
    auto_pad = n.attr("auto_pad", "NOTSET")
    pads = list(n.attr("pads", [0] * (2 * rank)))
    if auto_pad == "VALID":
        pads = [0] * (2 * rank)
    elif auto_pad != "NOTSET":
        raise n.fail(f"auto_pad={auto_pad}")
    strides = list(n.attr("strides", [1] * rank))
    dil = list(n.attr("dilations", [1] * rank))
    group = int(n.attr("group", 1))
    begin, end = pads[:rank], pads[rank:]
    if begin == end:
        pad_arg, pre = begin, None
    else:  # asymmetric: F.pad takes (last dim begin, end, previous dim begin, end, ...)
        pad_arg, pre = [0] * rank, [p for i in reversed(range(rank)) for p in (begin[i], end[i])]

    def run(x, weight, bias=None):
        if pre is not None:
            x = F.pad(x, pre)
        return conv(x, weight, bias, strides, pad_arg, dil, group)

    return run, [i for i in range(3) if n.has_input(i)]


def _pool_pads(n: _Node, rank: int) -> tuple[list[int], list[int] | None]:
    if n.attr("auto_pad", "NOTSET") != "NOTSET":
        raise n.fail(f"auto_pad={n.attr('auto_pad')}")
    pads = list(n.attr("pads", [0] * (2 * rank)))
    begin, end = pads[:rank], pads[rank:]
    if begin == end:
        return begin, None
    return [0] * rank, [p for i in reversed(range(rank)) for p in (begin[i], end[i])]


def _maxpool(n: _Node):
    if len(n.outputs) > 1 and n.outputs[1]:
        raise n.fail("MaxPool with an Indices output")
    k = list(n.attr("kernel_shape"))
    rank = len(k)
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[rank]
    strides = list(n.attr("strides", [1] * rank))
    dil = list(n.attr("dilations", [1] * rank))
    ceil = bool(n.attr("ceil_mode", 0))
    pad, pre = _pool_pads(n, rank)

    def run(x):
        if pre is not None:
            x = F.pad(x, pre, value=-math.inf)
        return pool(x, k, strides, pad, dil, ceil_mode=ceil)

    return run, [0]


def _avgpool(n: _Node):
    k = list(n.attr("kernel_shape"))
    rank = len(k)
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[rank]
    strides = list(n.attr("strides", [1] * rank))
    pad, pre = _pool_pads(n, rank)
    if pre is not None:
        raise n.fail("AveragePool with asymmetric pads")
    if any(d != 1 for d in n.attr("dilations", [1] * rank)):
        raise n.fail("AveragePool with dilations")
    ceil, incl = bool(n.attr("ceil_mode", 0)), bool(n.attr("count_include_pad", 0))
    return (lambda x: pool(x, k, strides, pad, ceil_mode=ceil, count_include_pad=incl)), [0]


def _global(reduce: Callable) -> Callable:
    return lambda n: ((lambda x: reduce(x, dim=tuple(range(2, x.dim())), keepdim=True)), [0])


def _batchnorm(n: _Node):
    if n.attr("training_mode", 0):
        raise n.fail("BatchNormalization in training mode")
    eps = float(n.attr("epsilon", 1e-5))
    return (lambda x, s, b, m, v: F.batch_norm(x, m, v, s, b, False, 0.0, eps)), [0, 1, 2, 3, 4]


def _gemm(n: _Node):
    alpha, beta = float(n.attr("alpha", 1.0)), float(n.attr("beta", 1.0))
    ta, tb = bool(n.attr("transA", 0)), bool(n.attr("transB", 0))

    def run(a, b, c=None):
        if ta:
            a = a.t()
        if tb and alpha == 1.0 and beta == 1.0:  # the classifier head: one fused linear
            return F.linear(a, b, c)
        y = a @ (b.t() if tb else b)
        if alpha != 1.0:
            y = y * alpha
        if c is not None:
            y = y + (c if beta == 1.0 else beta * c)
        return y

    return run, [i for i in range(3) if n.has_input(i)]


def _reduce(fn: Callable) -> Callable:
    def build(n: _Node):
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


def _reshape(n: _Node):
    shape = n.const_ints(1, "shape")
    if 0 in shape and not n.attr("allowzero", 0):  # 0 copies the input's dimension
        return (lambda x: x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(shape)])), [0]
    return (lambda x: x.reshape(shape)), [0]


def _flatten(n: _Node):
    axis = int(n.attr("axis", 1))

    def run(x):
        a = axis if axis >= 0 else axis + x.dim()
        return x.reshape(math.prod(x.shape[:a]), -1)

    return run, [0]


def _squeeze(n: _Node):
    axes = n.const_ints(1, "axes") if n.has_input(1) else n.attr("axes")
    if not axes:
        return (lambda x: x.squeeze()), [0]
    return (lambda x: x.squeeze(tuple(axes))), [0]


def _unsqueeze(n: _Node):
    axes = n.const_ints(1, "axes") if n.has_input(1) else n.attr("axes")

    def run(x):
        rank = x.dim() + len(axes)
        for a in sorted(a % rank for a in axes):
            x = x.unsqueeze(a)
        return x

    return run, [0]


def _transpose(n: _Node):
    perm = n.attr("perm")
    if perm is None:
        return (lambda x: x.permute(*reversed(range(x.dim())))), [0]
    perm = [int(p) for p in perm]
    return (lambda x: x.permute(perm)), [0]


def _concat(n: _Node):
    axis = int(n.attr("axis"))
    return (lambda *xs: torch.cat(xs, dim=axis)), list(range(len(n.inputs)))


def _slice(n: _Node):
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


def _pad(n: _Node):
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


def _gather(n: _Node):
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


def _softmax(n: _Node):
    axis = int(n.attr("axis", -1))
    return (lambda x: torch.softmax(x, dim=axis)), [0]


def _clip(n: _Node):
    lo, hi = n.const(1), n.const(2)
    if (n.has_input(1) and lo is None) or (n.has_input(2) and hi is None):
        return (lambda x, a=None, b=None: torch.clamp(x, a, b)), [i for i in range(3) if n.has_input(i)]
    lo_v = None if lo is None else float(lo)
    hi_v = None if hi is None else float(hi)
    return (lambda x: torch.clamp(x, lo_v, hi_v)), [0]


def _arg(fn: Callable) -> Callable:
    def build(n: _Node):
        if n.attr("select_last_index", 0):
            raise n.fail("select_last_index=1")
        axis, keep = int(n.attr("axis", 0)), bool(n.attr("keepdims", 1))
        return (lambda x: fn(x, dim=axis, keepdim=keep)), [0]

    return build


def _topk(n: _Node):
    (k,) = n.const_ints(1, "K")
    axis, largest = int(n.attr("axis", -1)), bool(n.attr("largest", 1))

    def run(x):  # a stable sort: ties go to the lower index, as the ONNX spec says (torch.topk: any)
        v, i = torch.sort(x, dim=axis, descending=largest, stable=True)
        return v.narrow(axis, 0, k), i.narrow(axis, 0, k)

    return run, [0]


def _shape(n: _Node):
    start, end = n.attr("start", 0), n.attr("end")
    # not capturable in a CUDA graph (a host -> device copy); our exporter never writes Shape
    return (lambda x: torch.tensor(list(x.shape)[start:end], dtype=torch.int64, device=x.device)), [0]


def _leaky(n: _Node):
    alpha = float(n.attr("alpha", 0.01))
    return (lambda x: F.leaky_relu(x, alpha)), [0]


def _qparams(n: _Node, x, scale, zp=None):
    """Scale / zero point shaped to broadcast over x (per tensor, or per channel along `axis`)."""
    if scale.dim() == 1 and scale.numel() > 1:
        shape = [1] * x.dim()
        shape[int(n.attr("axis", 1)) % x.dim()] = -1
        scale = scale.reshape(shape)
        zp = None if zp is None else zp.reshape(shape)
    return scale, zp


def _quantize(n: _Node):
    if n.attr("block_size"):
        raise n.fail("blocked quantization")
    zp_const = n.const(2)
    if n.has_input(2) and zp_const is None:
        raise n.fail("a zero point computed at run time")
    out = torch.uint8 if zp_const is None else torch.from_numpy(np.array(zp_const, copy=True)).dtype
    lo, hi = (torch.iinfo(out).min, torch.iinfo(out).max)

    def run(x, scale, zp=None):
        scale, zp = _qparams(n, x, scale, zp)
        q = torch.round(x / scale)  # round half to even, as the spec says
        if zp is not None:
            q = q + zp.to(q.dtype)
        return torch.clamp(q, lo, hi).to(out)

    return run, [i for i in range(3) if n.has_input(i)]


def _dequantize(n: _Node):
    if n.attr("block_size"):
        raise n.fail("blocked quantization")

    def run(x, scale, zp=None):
        scale, zp = _qparams(n, x, scale, zp)
        xf = x.to(scale.dtype)
        return (xf - zp.to(scale.dtype) if zp is not None else xf) * scale

    return run, [i for i in range(3) if n.has_input(i)]


OPS: dict[str, Callable[[_Node], tuple[Callable, list[int]]]] = {
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
