"""GraphSpec factories for every graph kind (numpy only; shared by exporter and pruner)."""

from __future__ import annotations

from collections.abc import Sequence

from ..artifact import GraphKind
from ..errors import CodedResNeXtError
from ..model_config import ModelConfig
from .builder import GraphSpec
from .layout import block_layout, keep_branches


def full_spec(cfg: ModelConfig, **kw) -> GraphSpec:
    n = len(block_layout(cfg))
    return GraphSpec(GraphKind.FULL, (None,) * n, rows=tuple(range(cfg.num_classes)), **kw)


def multi_exit_spec(cfg: ModelConfig, **kw) -> GraphSpec:
    if not cfg.coded_blocks:
        raise CodedResNeXtError("this model has no coded blocks, so no early exits; use the full graph")
    n = len(block_layout(cfg))
    return GraphSpec(GraphKind.MULTI_EXIT, (None,) * n, rows=tuple(range(cfg.num_classes)), exits=True, **kw)


def path_spec(cfg: ModelConfig, classes: Sequence[int], *, masked: bool = False, **kw) -> GraphSpec:
    """Physically pruned (or, masked=True, zero-masked) path of `classes`, one logit per class."""
    keep = tuple(keep_branches(block_layout(cfg), classes))
    kind = GraphKind.MASKED if masked else (GraphKind.CLASS if len(classes) == 1 else GraphKind.SUBSET)
    return GraphSpec(kind, keep, rows=tuple(classes), masked=masked, **kw)


def default_cuts(cfg: ModelConfig) -> list[int]:
    """Plain `--segments`: the exits that paid for their cut on the demo models.

    Rule: after the last block of every coded stage (where the next block is the costly stage
    transition) and after the second-to-last block of the network's last stage when it is coded.
    It reproduces what `calibrate`'s exit rule kept on `--segments all` for the trained tiny and
    small demo models (the first coded block's exit, the weakest, lost compute on both: every
    sample it does not stop pays the cut). `calibrate`'s `recommended_cuts` re-checks it for any
    other model (docs/early-exit.md)."""
    last = sum(st.depth for st in cfg.stages) - 1
    cuts, i = [], -1
    for s in cfg.stages:
        i += s.depth
        if s.coded and i < last:
            cuts.append(i)
    if cfg.stages and cfg.stages[-1].coded and cfg.stages[-1].depth >= 2:
        cuts.append(last - 1)
    cuts = sorted(set(cuts))
    if not cuts:
        raise CodedResNeXtError(
            "no coded stage ends before the last block, so there is no default cut; give block indices "
            "with --segments 2,5"
        )
    return cuts


def exit_cuts(cfg: ModelConfig) -> list[int]:
    """`--segments all`: a cut after every coded block but the network's last (whose decoder would
    save only the head), so every segment but the last ends with a coded block and its early exit."""
    last = len(block_layout(cfg)) - 1
    cuts = [i for i in cfg.coded_blocks if i < last]
    if not cuts:
        raise CodedResNeXtError("this model has no coded block before its last block, so no early exits")
    return cuts


def segment_specs(cfg: ModelConfig, cuts: Sequence[int] | str | None = None, **kw) -> list[GraphSpec]:
    """Segments [0..c0], [c0+1..c1], ..., [..end + head]; cut c = index of a segment's last block.

    cuts: block indices, "all" (exit_cuts: after every coded block) or None (default_cuts)."""
    n = len(block_layout(cfg))
    if cuts is None:
        cuts = default_cuts(cfg)
    elif isinstance(cuts, str):
        if cuts != "all":
            raise CodedResNeXtError(f"segment cuts are block indices or 'all', got {cuts!r}")
        cuts = exit_cuts(cfg)
    cuts = sorted(set(int(c) for c in cuts))
    if not cuts or cuts[0] < 0 or cuts[-1] >= n - 1:
        raise CodedResNeXtError(f"segment cuts must be block indices in 0..{n - 2}, got {list(cuts)}")
    bounds = [0, *(c + 1 for c in cuts), n]
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        out.append(
            GraphSpec(
                GraphKind.SEGMENT,
                (None,) * n,
                rows=tuple(range(cfg.num_classes)),
                start=a,
                stop=None if b == n else b,
                segment_exit=True,
                **kw,
            )
        )
    return out


def reject_specs(cfg: ModelConfig, k: int, block: int, **kw) -> tuple[GraphSpec, GraphSpec]:
    """Early reject for class k at coded block `block`: part A (stem..block) and part B (rest).

    Part A runs class k's pruned path up to `block`; at `block` it computes ALL branches, outputs
    "reject_distance" = ||v - w_k|| of those full normalised energies (v rescaled to sum to N_act)
    and hands on "features" = the pruned path's output of `block` (as the class graph computes it).
    Part B (blocks after `block`, pruned for k) -> "logits" (batch, 1); A then B == the class graph.
    """
    layout = block_layout(cfg)
    if not 0 <= block < len(layout) - 1 or not layout[block].coded:
        coded = [i for i in cfg.coded_blocks if i < len(layout) - 1]
        raise CodedResNeXtError(f"--reject-block must be a coded block index before the last block: {coded}")
    keep = tuple(keep_branches(layout, [k]))
    a = GraphSpec(GraphKind.REJECT, keep, rows=(k,), stop=block + 1, reject=(block, k), **kw)
    b = GraphSpec(GraphKind.REJECT, keep, rows=(k,), start=block + 1, **kw)
    return a, b


def reject_probe_spec(cfg: ModelConfig, k: int, **kw) -> GraphSpec:
    """Class k's graph that also outputs, at EVERY coded block before the last, the distance the
    reject part A cut there computes ("reject_distance_block{i}"): the class path up to the block,
    all branches at the block, ||v - w_k||. One graph lets calibration compare every reject block
    (reject_specs(cfg, k, i)'s part A gives the same number at block i)."""
    layout = block_layout(cfg)
    blocks = tuple(i for i in cfg.coded_blocks if i < len(layout) - 1)
    if not blocks:
        raise CodedResNeXtError("this model has no coded block before its last block: no early reject")
    keep = tuple(keep_branches(layout, [k]))
    return GraphSpec(GraphKind.REJECT_PROBE, keep, rows=(k,), reject_probe=blocks, **kw)
