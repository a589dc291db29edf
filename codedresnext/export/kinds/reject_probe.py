"""Kind "reject-probe": class k's graph that also reports, at EVERY coded block before the last,
the distance a reject part A cut there computes.

Cuts like the class graph, except that each probed block computes all branches, outputs
"reject_distance_block{i}" and "reject_energies_block{i}", then continues on the class path. One
graph lets calibration compare every reject block (reject_specs(cfg, k, i)'s part A gives the same
number at block i). Reference: as the reject pair's part A, at each probed block. Manifest facts:
RejectProbeInfo (class, blocks; the exporter adds each block's pair FLOPs) and "reject_probe":
[blocks] in the graph metadata."""

from __future__ import annotations

from ...artifact import GraphKind, RejectProbeInfo
from ...errors import CodedResNeXtError
from ...model_config import ModelConfig
from ..layout import block_layout, keep_branches
from .base import GraphKindDef, GraphSpec, PlanContext, PlannedGraph, safe_name


def reject_probe_spec(cfg: ModelConfig, k: int, **kw) -> GraphSpec:
    """Class k's path with a reject distance at every coded block before the last."""
    layout = block_layout(cfg)
    blocks = tuple(i for i in cfg.coded_blocks if i < len(layout) - 1)
    if not blocks:
        raise CodedResNeXtError("this model has no coded block before its last block: no early reject")
    keep = tuple(keep_branches(layout, [k]))
    return GraphSpec(GraphKind.REJECT_PROBE, keep, rows=(k,), probe=blocks, **kw)


class RejectProbe(GraphKindDef):
    kind = GraphKind.REJECT_PROBE

    def facts(self, spec: GraphSpec) -> dict:
        return {"masked": False, "reject": None, "reject_probe": list(spec.probe)}

    def plan(self, ctx: PlanContext) -> list[PlannedGraph]:
        """`--reject-block all`: one probe per class, the pair's distance at every coded block."""
        if ctx.options.reject_block != "all":
            return []
        out = []
        for k in ctx.classes:
            sp = reject_probe_spec(ctx.cfg, k, **ctx.kw)
            info = RejectProbeInfo(class_name=ctx.cfg.class_names[k], blocks=list(sp.probe))
            out.append(
                PlannedGraph(f"reject_probe_{safe_name(ctx.cfg.class_names[k])}", sp, reject_probe=info)
            )
        return out
