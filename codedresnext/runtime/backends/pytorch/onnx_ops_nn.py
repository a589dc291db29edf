"""Op builders of the ONNX -> torch importer for the network layers: convolution, pooling, batch
norm, Gemm, and the INT8 Quantize/DequantizeLinear pair (see onnx_ops.py for the convention).
Imports torch: only the torch backend imports this, lazily."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .onnx_node import OpNode


def _conv(n: OpNode):
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


def _pool_pads(n: OpNode, rank: int) -> tuple[list[int], list[int] | None]:
    if n.attr("auto_pad", "NOTSET") != "NOTSET":
        raise n.fail(f"auto_pad={n.attr('auto_pad')}")
    pads = list(n.attr("pads", [0] * (2 * rank)))
    begin, end = pads[:rank], pads[rank:]
    if begin == end:
        return begin, None
    return [0] * rank, [p for i in reversed(range(rank)) for p in (begin[i], end[i])]


def _maxpool(n: OpNode):
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


def _avgpool(n: OpNode):
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


def _batchnorm(n: OpNode):
    if n.attr("training_mode", 0):
        raise n.fail("BatchNormalization in training mode")
    eps = float(n.attr("epsilon", 1e-5))
    return (lambda x, s, b, m, v: F.batch_norm(x, m, v, s, b, False, 0.0, eps)), [0, 1, 2, 3, 4]


def _gemm(n: OpNode):
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


def _qparams(n: OpNode, x, scale, zp=None):
    """Scale / zero point shaped to broadcast over x (per tensor, or per channel along `axis`)."""
    if scale.dim() == 1 and scale.numel() > 1:
        shape = [1] * x.dim()
        shape[int(n.attr("axis", 1)) % x.dim()] = -1
        scale = scale.reshape(shape)
        zp = None if zp is None else zp.reshape(shape)
    return scale, zp


def _quantize(n: OpNode):
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


def _dequantize(n: OpNode):
    if n.attr("block_size"):
        raise n.fail("blocked quantization")

    def run(x, scale, zp=None):
        scale, zp = _qparams(n, x, scale, zp)
        xf = x.to(scale.dtype)
        return (xf - zp.to(scale.dtype) if zp is not None else xf) * scale

    return run, [i for i in range(3) if n.has_input(i)]
