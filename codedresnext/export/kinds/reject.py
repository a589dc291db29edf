"""Kind "reject": an early-reject pair for class k cut at coded block J, part A and part B.

Part A runs class k's pruned path up to J; at J it computes ALL branches, outputs
"reject_distance" = ||v - w_k|| of those full normalised energies (v rescaled to sum to N_act) and
"reject_energies", and hands on "features" = the pruned path's output of J (as the class graph
computes it). Part B (blocks after J, pruned for k) -> "logits" (batch, 1); A then B == the class
graph. Reference: `early_decode` of the unmasked block's energies (reference.py). Manifest facts:
RejectInfo (class, block, part, both files) and "reject": {block, class} in part A's metadata."""

from __future__ import annotations

from dataclasses import replace

from ...artifact import OUTPUT_REJECT_DISTANCE, OUTPUT_REJECT_ENERGIES, GraphKind, RejectInfo
from ...errors import CodedResNeXtError
from ...model_config import ModelConfig
from ..layout import block_layout, keep_branches
from .base import GraphKindDef, GraphSpec, PlanContext, PlannedGraph, safe_name


def reject_specs(cfg: ModelConfig, k: int, block: int, **kw) -> tuple[GraphSpec, GraphSpec]:
    """Early reject for class k at coded block `block`: part A (stem..block) and part B (rest)."""
    layout = block_layout(cfg)
    if not 0 <= block < len(layout) - 1 or not layout[block].coded:
        coded = [i for i in cfg.coded_blocks if i < len(layout) - 1]
        raise CodedResNeXtError(f"--reject-block must be a coded block index before the last block: {coded}")
    keep = tuple(keep_branches(layout, [k]))
    a = GraphSpec(GraphKind.REJECT, keep, rows=(k,), stop=block + 1, probe=(block,), **kw)
    b = GraphSpec(GraphKind.REJECT, keep, rows=(k,), start=block + 1, **kw)
    return a, b


class Reject(GraphKindDef):
    kind = GraphKind.REJECT

    def probe_names(self, spec: GraphSpec, block: int) -> tuple[str, str]:
        return OUTPUT_REJECT_DISTANCE, OUTPUT_REJECT_ENERGIES

    def facts(self, spec: GraphSpec) -> dict:
        reject = {"block": spec.probe[0], "class": spec.rows[0]} if spec.probe else None
        return {"masked": False, "reject": reject}

    def plan(self, ctx: PlanContext) -> list[PlannedGraph]:
        block = ctx.options.reject_block
        if block is None or block == "all":
            return []
        cfg, out = ctx.cfg, []
        for k in ctx.classes:
            a, b = reject_specs(cfg, k, block, **ctx.kw)
            base = f"reject_{safe_name(cfg.class_names[k])}"
            info = RejectInfo(
                cfg.class_names[k], block, cfg.coded_blocks.index(block), f"{base}_a", f"{base}_b"
            )
            out.append(PlannedGraph(f"{base}_a", a, reject=replace(info, part="a")))
            out.append(PlannedGraph(f"{base}_b", b, reject=replace(info, part="b")))
        return out
