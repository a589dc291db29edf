"""Kind "masked": the paper's per-class graph, full size with the other classes' branches zeroed.

Cuts nothing: every branch is computed and a constant 0/1 Mul zeroes the branches the class's
codeword does not use (builder's `_mask`). Outputs "logits" (batch, 1). Reference: the same keep
mask as the class graph, so masked and class graphs must agree. Manifest facts: "masked": true in
the graph metadata; no analytic parameter count (nothing is removed)."""

from __future__ import annotations

from ...artifact import GraphKind
from .base import GraphKindDef, GraphSpec, PlanContext, PlannedGraph, safe_name
from .detector import path_spec


class Masked(GraphKindDef):
    kind = GraphKind.MASKED
    masked = True

    def computed_keep(self, spec: GraphSpec):
        return None

    def plan(self, ctx: PlanContext) -> list[PlannedGraph]:
        if not ctx.options.masked:
            return []
        names = ctx.cfg.class_names
        return [
            PlannedGraph(f"masked_{safe_name(names[k])}", path_spec(ctx.cfg, [k], masked=True, **ctx.kw))
            for k in ctx.classes
        ]
