"""Kind "full": the whole classifier, (batch, K) logits; every other graph derives from its weights.

Cuts nothing. Outputs "logits". Reference: the model's forward. Manifest facts: none beyond the
common ones; the pruner starts from it (GraphKind.is_head)."""

from __future__ import annotations

from ...artifact import GraphKind
from ...model_config import ModelConfig
from ..layout import block_layout
from .base import GraphKindDef, GraphSpec, PlanContext, PlannedGraph

FULL_NAME = "full"


def full_spec(cfg: ModelConfig, **kw) -> GraphSpec:
    n = len(block_layout(cfg))
    return GraphSpec(GraphKind.FULL, (None,) * n, rows=tuple(range(cfg.num_classes)), **kw)


class Full(GraphKindDef):
    kind = GraphKind.FULL

    def plan(self, ctx: PlanContext) -> list[PlannedGraph]:
        return [PlannedGraph(FULL_NAME, full_spec(ctx.cfg, **ctx.kw))]
