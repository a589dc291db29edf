"""FLOP facts the early-reject calibration needs, counted on derived graphs (onnx + numpy only).

- pair_flops: for every coded block J a reject pair could be cut at, the FLOPs of part A (class
  path to J, all branches at J) and part B (the rest of the class path): what a rejected negative
  costs (A) and what a kept sample costs (A + B).
- trunk_floor: the stem and the uncoded blocks before the first coded block are the same for every
  class and run on every input, so no reject can cost less than them: the floor for a preset.
"""

from __future__ import annotations

from ..artifact import GraphKind, RejectFloor
from ..model_config import ModelConfig
from .counting import count_flops
from .kinds import GraphSpec, path_spec, reject_specs
from .layout import block_layout
from .pruner import FullGraph, derive

FLOOR_DEFINITION = (
    "FLOPs of the stem and the uncoded blocks before the first coded block (shared by every class, "
    "spent on every input) / FLOPs of a class graph: the least compute an early reject can reach"
)


def _flops(fg: FullGraph, spec: GraphSpec, opset: int) -> int:
    return int(count_flops(derive(fg, spec, opset=opset))["flops"])


def pair_flops(
    fg: FullGraph, cfg: ModelConfig, k: int, blocks: list[int], opset: int
) -> dict[str, dict[str, float]]:
    """{str(J): {"a": FLOPs of part A, "b": FLOPs of part B}} for class k (RejectProbeInfo.pair_flops)."""
    out = {}
    for j in blocks:
        a, b = reject_specs(cfg, k, j)
        out[str(j)] = {"a": _flops(fg, a, opset), "b": _flops(fg, b, opset)}
    return out


def trunk_floor(fg: FullGraph, cfg: ModelConfig, opset: int) -> RejectFloor:
    """The shared trunk's FLOPs as a fraction of a class graph's (every codeword has N_act ones, so
    all class paths cost the same; class 0's is counted)."""
    layout = block_layout(cfg)
    first = min(cfg.coded_blocks, default=len(layout))
    if first > 0:
        trunk = _flops(fg, GraphSpec(GraphKind.SEGMENT, (None,) * len(layout), rows=(), stop=first), opset)
    else:  # the stem alone: one conv, 3 -> stem channels (imagenet: 7x7 stride 2, before the max-pool)
        ksize, stride = (7, 2) if cfg.stem == "imagenet" else (3, 1)
        size = (cfg.input_size + 2 * (ksize // 2) - ksize) // stride + 1
        trunk = 2 * 3 * cfg.stem_channels * ksize * ksize * size**2
    cls = _flops(fg, path_spec(cfg, [0]), opset) if cfg.coded_blocks else None
    return RejectFloor(
        trunk_blocks=list(range(first)),
        trunk_flops=float(trunk),
        class_graph_flops=float(cls) if cls else None,
        fraction_of_class_graph=trunk / cls if cls else None,
        definition=FLOOR_DEFINITION,
    )
