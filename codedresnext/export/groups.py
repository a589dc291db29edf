"""Zero channels inside the groups of the shared trunk's grouped convs, for ONNX Runtime's fp32 kernels.

ONNX Runtime's CPU layout optimisation (NCHWc) takes a grouped conv only when every group's channel
count is a multiple of its block size (8 with AVX2, 16 with AVX-512). The presets' first stages are
uncoded, with 10-20 branches of 4-11 channels: their 3x3 grouped convs ran in plain NCHW, several
times slower per multiply-add than the 1x1 convs, between two layout reorders. Every graph (full or
pruned) runs that stage whole, so a class graph, which saves FLOPs only in the coded stages, spends a
larger share of its time there and falls short of its FLOP ratio
(benchmarks/results/profile_graphs*.md). Such a block's branches are therefore stored in a layout
(m, w): m branches per group of the 3x3 conv (block-diagonal weights, zero between branches), each
group padded with zero channels to w, a multiple of GROUP_ALIGN: reduce-conv rows (zero weight and
bias, Relu(0) = 0), 3x3 rows and input columns, expand-conv columns. The same function, exactly;
counting.py leaves the zeros out of parameters and FLOPs, the pruner reads the weights back in the
model's layout (1, d).

A stage's layout is the one of fewest multiply-adds (1x1 convs x w / (m d), 3x3 conv x w^2 /
(m d^2)), fewer groups on a tie, taken only if it costs at most GROUP_COST_MAX times the stage's
own multiply-adds; only uncoded stages (widening coded stages slowed the full graph), only fp32.
The layouts that were tried and their timings: benchmarks/results/profile_graphs.md, History. FP16
and INT8 graphs do not use these kernels (int8_surgery.relaid puts the groups back).
"""

from __future__ import annotations

import numpy as np

from ..artifact import META_MODEL_CONFIG, read_metadata
from ..errors import GraphError
from ..model_config import ModelConfig
from . import names
from .layout import BlockGeom, block_layout

GROUP_ALIGN = 16  # NCHWc block size with AVX-512 (a multiple of AVX2's 8)
GROUP_COST_MAX = 1.6  # re-lay a block only if that costs at most this many times its multiply-adds

Layout = tuple[int, int]  # (branches per group, channels per group)


def model_layout(b: BlockGeom) -> Layout:
    return (1, b.width)


def _cost(b: BlockGeom, layout: Layout) -> float:
    """Multiply-adds of block b, one sample, with its branches stored in `layout`."""
    m, w = layout
    nd, d = b.branches * b.width, b.width
    grow, grow3 = w / (m * d), w * w / (m * d * d)  # 1x1 convs' channels, 3x3 conv's weight
    return nd * (b.c_in * b.size_in**2 + b.c_out * b.size_out**2) * grow + nd * d * 9 * b.size_out**2 * grow3


def layouts(cfg: ModelConfig) -> dict[int, Layout]:
    """{block index: the layout its fp32 graphs store} (see module doc): one per uncoded stage,
    chosen on the stage's multiply-adds; model_layout where none pays."""
    blocks = block_layout(cfg)
    out = {b.index: model_layout(b) for b in blocks}
    for stage in sorted({b.stage for b in blocks}):
        bs = [b for b in blocks if b.stage == stage]
        d, n = bs[0].width, bs[0].branches
        if bs[0].coded or n < 2 or d % GROUP_ALIGN == 0:
            continue
        options = [(m, -(-m * d // GROUP_ALIGN) * GROUP_ALIGN) for m in range(1, n + 1) if n % m == 0]
        cost = {lay: sum(_cost(b, lay) for b in bs) for lay in options}
        best = min(options, key=lambda lay: (cost[lay], n // lay[0]))  # a tie: fewer groups
        if cost[best] <= GROUP_COST_MAX * sum(_cost(b, model_layout(b)) for b in bs):
            out.update({b.index: best for b in bs})
    return out


def positions(n: int, d: int, layout: Layout) -> np.ndarray:
    """Stored channel of each of the n*d model channels (branch-major) in `layout`."""
    m, w = layout
    br, j = np.divmod(np.arange(n * d), d)
    return (br // m) * w + (br % m) * d + j


def widen(a: np.ndarray, axis: int, n: int, d: int, layout: Layout) -> np.ndarray:
    """(.., n*d, ..) -> (.., n/m*w, ..): the model channels at their stored positions, zeros between."""
    m, w = layout
    shape = list(a.shape)
    shape[axis] = n // m * w
    out = np.zeros(shape, a.dtype)
    idx = [slice(None)] * a.ndim
    idx[axis] = positions(n, d, layout)
    out[tuple(idx)] = a
    return out


def narrow(a: np.ndarray, axis: int, n: int, d: int, layout: Layout) -> np.ndarray:
    """Inverse of `widen`: the n*d model channels of a tensor stored in `layout`."""
    return np.take(a, positions(n, d, layout), axis=axis)


def _conv_widen(a: np.ndarray, n: int, d: int, layout: Layout) -> np.ndarray:
    """3x3 weight (n*d, d, k, k) -> (n/m*w, w, k, k): each branch's d x d block on the diagonal."""
    m, w = layout
    out = np.zeros((n // m * w, w, *a.shape[2:]), a.dtype)
    rows = positions(n, d, layout)
    for br in range(n):
        col = (br % m) * d
        out[rows[br * d : (br + 1) * d], col : col + d] = a[br * d : (br + 1) * d]
    return out


def _conv_narrow(a: np.ndarray, n: int, d: int, layout: Layout) -> np.ndarray:
    m, _ = layout
    rows = a[positions(n, d, layout)]  # (n*d, w, k, k)
    cols = (np.arange(n * d) // d % m) * d  # first input column of each row's branch in its group
    return np.stack([rows[r, c : c + d] for r, c in enumerate(cols)])


# (weight name, axis) of a block's tensors that carry its branches' channels
GROUPED = (
    ("reduce.weight", 0),
    ("reduce.bias", 0),
    ("conv.weight", 0),
    ("conv.bias", 0),
    ("expand.weight", 1),
)


def block_tensors(
    arrays: dict[str, np.ndarray], b: BlockGeom, frm: Layout, to: Layout
) -> dict[str, np.ndarray]:
    """Block b's grouped tensors in `arrays` (by names.*) re-laid from layout `frm` to `to`; the
    expand weight may carry trailing alignment columns (builder._expand), which are dropped."""
    out = {}
    n, d, i = b.branches, b.width, b.index
    for part, axis in GROUPED:
        key = f"block{i}/{part}"
        a = arrays[key]
        if part == "expand.weight":
            a = a[:, : n // frm[0] * frm[1]]
        if part == "conv.weight":
            a = a if frm == model_layout(b) else _conv_narrow(a, n, d, frm)
            a = a if to == model_layout(b) else _conv_widen(a, n, d, to)
        else:
            a = a if frm == model_layout(b) else narrow(a, axis, n, d, frm)
            a = a if to == model_layout(b) else widen(a, axis, n, d, to)
        out[key] = np.ascontiguousarray(a)
    return out


def unwiden(cfg: ModelConfig, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Weights read back from an fp32 graph in the model's own layout, for the pruner."""
    out = dict(weights)
    for b, layout in stored_layouts(cfg, weights):
        out.update(block_tensors(out, b, layout, model_layout(b)))
    return out


def stored_layouts(cfg: ModelConfig, arrays) -> list[tuple[BlockGeom, Layout]]:
    """[(block, stored layout)] for the blocks not stored in the model's layout.

    `arrays`: {name: array or TensorProto}; a stored layout that is neither the model's nor
    layouts(cfg) chooses is a graph this builder did not write."""
    out = []
    chosen = layouts(cfg)
    for b in block_layout(cfg):
        t = arrays.get(names.w(b.index, "conv"))
        if t is None or b.coded:
            continue
        dims = tuple(int(v) for v in (t.shape if hasattr(t, "shape") else t.dims))
        n, d = b.branches, b.width
        groups = dims[0] // dims[1] if dims[1] and dims[0] % dims[1] == 0 else 0
        stored = (n // groups, dims[1]) if groups and n % groups == 0 else (0, 0)  # n/m groups of w
        if stored == model_layout(b):
            continue
        if stored != chosen[b.index]:
            raise GraphError(
                f"block{b.index}/conv has weight shape {dims}; the model config says {n} branches "
                f"of {d} channels: this graph was not written by codedresnext export"
            )
        out.append((b, stored))
    return out


def model_layouts(model) -> list[tuple[BlockGeom, Layout]]:
    """stored_layouts of an ONNX graph, from the model config in its metadata ([] without one)."""
    try:
        meta = read_metadata(model)
    except GraphError:
        return []
    if not isinstance(meta.get(META_MODEL_CONFIG), dict):
        return []
    cfg = ModelConfig.from_dict(meta[META_MODEL_CONFIG])
    return stored_layouts(cfg, {t.name: t for t in model.graph.initializer})
