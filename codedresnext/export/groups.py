"""Zero channels inside the groups of the shared trunk's grouped convs, for ONNX Runtime's fp32 kernels.

ONNX Runtime's CPU layout optimisation (NCHWc) takes a grouped conv only when every group's channel
count is a multiple of its block size (8 with AVX2, 16 with AVX-512). The cifar10 preset's first
stage has 10 branches of width 11: its 3x3 grouped convs ran in plain NCHW at about a third of the
1x1 convs' speed per FLOP, between two layout reorders. That stage is uncoded, so every graph (full
or pruned) runs it whole: a class graph, which saves FLOPs only in the coded stages, spends a larger
share of its time there, and realised 0.92-0.94 of its FLOP ratio on one thread
(benchmarks/results/profile_graphs.md builds the graphs with and without what follows). Each
branch of such a block is therefore widened from d to a multiple of GROUP_ALIGN channels with
zeros: reduce-conv rows (zero weight and bias, Relu(0) = 0), 3x3 rows and input columns,
expand-conv columns. The same function, exactly; counting.py leaves the zeros out of parameters and
FLOPs, the pruner reads the weights back unwidened.

Only uncoded blocks, only where widening costs at most GROUP_PAD_MAX per dimension, only fp32:
tried by hand on the cifar10 preset (2-core AVX-512 Xeon, batch 32, one thread), widening stage 1
(d 11 -> 16) left the full graph's speed as it was and made the class graph 4-7% faster; widening
the coded stages too (22 -> 32, 44 -> 48) made the full graph 3-10% slower. Presets with narrow
branches (d = 4 or 6) would more than double their work and are left alone. FP16 and INT8 graphs
do not use these kernels (quantize.py narrows the groups back).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..artifact import META_MODEL_CONFIG, read_metadata
from ..config import ModelConfig
from ..errors import GraphError
from . import names
from .layout import BlockGeom, block_layout

GROUP_ALIGN = 16  # NCHWc block size with AVX-512 (a multiple of AVX2's 8)
GROUP_PAD_MAX = 1.5  # widen d only if the aligned width is at most this many times d


def group_width(b: BlockGeom) -> int:
    """Channels per group block b's fp32 graphs carry (d, or d widened with zeros; see module doc)."""
    d = b.width
    wide = -(-d // GROUP_ALIGN) * GROUP_ALIGN
    if b.coded or b.branches < 2 or wide == d or wide > GROUP_PAD_MAX * d:
        return d
    return wide


def widen(a: np.ndarray, axis: int, groups: int, d: int, width: int) -> np.ndarray:
    """(.., groups*d, ..) -> (.., groups*width, ..): zeros after each group's d channels."""
    if width == d:
        return a
    shape = list(a.shape)
    a = a.reshape(shape[:axis] + [groups, d] + shape[axis + 1 :])
    pad = [(0, 0)] * a.ndim
    pad[axis + 1] = (0, width - d)
    return np.pad(a, pad).reshape(shape[:axis] + [groups * width] + shape[axis + 1 :])


def narrow(a: np.ndarray, axis: int, groups: int, width: int, d: int) -> np.ndarray:
    """Inverse of `widen`: (.., groups*width, ..) -> (.., groups*d, ..), keeping each group's first d."""
    if width == d:
        return a
    shape = list(a.shape)
    a = a.reshape(shape[:axis] + [groups, width] + shape[axis + 1 :])
    a = np.take(a, np.arange(d), axis=axis + 1)
    return a.reshape(shape[:axis] + [groups * d] + shape[axis + 1 :])


# (weight name, axis) of a block's tensors that carry its groups' channels; the 3x3 conv's input
# axis (1) holds one group's channels, handled apart
_GROUPED = (
    ("reduce.weight", 0),
    ("reduce.bias", 0),
    ("conv.weight", 0),
    ("conv.bias", 0),
    ("expand.weight", 1),
)


def block_tensors(arrays: dict[str, np.ndarray], b: BlockGeom, frm: int, to: int) -> dict[str, np.ndarray]:
    """Block b's grouped tensors in `arrays` (by names.*) re-laid from `frm` to `to` channels per
    group (widen or narrow); the expand weight may carry trailing alignment columns (builder._expand),
    which are dropped."""
    out = {}
    n, i = b.branches, b.index
    for part, axis in _GROUPED:
        key = f"block{i}/{part}"
        a = arrays[key]
        if part == "expand.weight":
            a = a[:, : n * frm]
        a = widen(a, axis, n, frm, to) if to > frm else narrow(a, axis, n, frm, to)
        if part == "conv.weight":
            a = np.pad(a, [(0, 0), (0, to - frm), (0, 0), (0, 0)]) if to > frm else a[:, :to]
        out[key] = np.ascontiguousarray(a)
    return out


def unwiden(cfg: ModelConfig, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Weights read back from an fp32 graph with the model's own widths (d), for the pruner."""
    out = dict(weights)
    for b, width in stored_widths(cfg, weights):
        out.update(block_tensors(out, b, width, b.width))
    return out


def stored_widths(cfg: ModelConfig, arrays) -> list[tuple[BlockGeom, int]]:
    """[(block, channels per group as stored)] for the blocks whose stored groups are wider than d.

    `arrays`: {name: array or TensorProto}; a stored width that is neither d nor group_width(b) is
    a graph this builder did not write."""
    out = []
    for b in block_layout(cfg):
        t = arrays.get(names.w(b.index, "conv"))
        if t is None or b.coded:
            continue
        rows = int(t.shape[0] if hasattr(t, "shape") else t.dims[0])
        if rows == b.branches * b.width:
            continue
        if rows != b.branches * group_width(b):
            raise GraphError(
                f"block{b.index}/conv has {rows} output channels; the model config says "
                f"{b.branches} x {b.width}: this graph was not written by codedresnext export"
            )
        out.append((b, group_width(b)))
    return out


def model_widths(model) -> list[tuple[BlockGeom, int]]:
    """stored_widths of an ONNX graph, from the model config in its metadata ([] without one)."""
    try:
        meta = read_metadata(model)
    except GraphError:
        return []
    if not isinstance(meta.get(META_MODEL_CONFIG), dict):
        return []
    cfg = ModelConfig.from_dict(meta[META_MODEL_CONFIG])
    return stored_widths(cfg, {t.name: t for t in model.graph.initializer})


def narrowed(model, to: Callable[[BlockGeom], int]):
    """A copy of an ONNX graph whose widened groups carry `to(block)` channels each (d <= to <= stored)."""
    import copy

    from onnx import numpy_helper

    widths = model_widths(model)
    if not widths:
        return model
    model = copy.deepcopy(model)
    inits = {t.name: t for t in model.graph.initializer}
    for b, width in widths:
        keys = [f"block{b.index}/{part}" for part, _ in _GROUPED]
        arrays = {k: numpy_helper.to_array(inits[k]) for k in keys}
        for k, a in block_tensors(arrays, b, width, to(b)).items():
            inits[k].CopyFrom(numpy_helper.from_array(a, k))
    return model
