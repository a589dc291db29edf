"""Kind "segment": a block range of the early-exit cascade, [0..c0], [c0+1..c1], ..., [..end + head].

Cuts the network at block boundaries (all branches kept). Outputs "features" (the hand-over; the
last segment "logits") and "exit_scores" of its last block when that block is coded. Reference:
the model's blocks over the range, fed the previous block's output. Manifest facts: SegmentInfo
(index, count, block range, next segment's name)."""

from __future__ import annotations

from collections.abc import Sequence

from ...artifact import GraphKind, SegmentInfo
from ...errors import CodedResNeXtError
from ...model_config import ModelConfig
from ..layout import block_layout
from .base import EXITS_LAST, GraphKindDef, GraphSpec, PlanContext, PlannedGraph


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
    rows = tuple(range(cfg.num_classes))
    return [
        GraphSpec(GraphKind.SEGMENT, (None,) * n, rows=rows, start=a, stop=None if b == n else b, **kw)
        for a, b in zip(bounds[:-1], bounds[1:])
    ]


class Segment(GraphKindDef):
    kind = GraphKind.SEGMENT
    exits = EXITS_LAST

    def plan(self, ctx: PlanContext) -> list[PlannedGraph]:
        """segments: True (default cuts), "all" (after every coded block) or block indices."""
        segments = ctx.options.segments
        if segments is False or segments is None:
            return []
        cuts = None if segments is True else (segments if isinstance(segments, str) else list(segments))
        specs = segment_specs(ctx.cfg, cuts, **ctx.kw)
        names = [f"segment{i}" for i in range(len(specs))]
        return [
            PlannedGraph(
                names[i],
                sp,
                segment=SegmentInfo(
                    index=i,
                    of=len(specs),
                    blocks=[sp.start, sp.last_block],
                    next=names[i + 1] if i + 1 < len(specs) else None,
                ),
            )
            for i, sp in enumerate(specs)
        ]
