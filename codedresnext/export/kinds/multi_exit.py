"""Kind "multi-exit": the full graph plus every coded block's early decoder.

Cuts nothing. Outputs "logits" and, per coded block j, "exit{j}_scores" (batch, K) and
"exit{j}_energies" (batch, N) (builder's `_exit_scores`). Reference: `reference.exit_scores` on each
coded block's output and energies. Manifest facts: its exits (meta.exits_info); the pruner can
start from it (GraphKind.is_head)."""

from __future__ import annotations

from ...artifact import GraphKind
from ...errors import CodedResNeXtError
from ...model_config import ModelConfig
from ..layout import block_layout
from .base import EXITS_EVERY, GraphKindDef, GraphSpec, PlanContext, PlannedGraph

MULTI_EXIT_NAME = "multi_exit"


def multi_exit_spec(cfg: ModelConfig, **kw) -> GraphSpec:
    if not cfg.coded_blocks:
        raise CodedResNeXtError("this model has no coded blocks, so no early exits; use the full graph")
    n = len(block_layout(cfg))
    return GraphSpec(GraphKind.MULTI_EXIT, (None,) * n, rows=tuple(range(cfg.num_classes)), **kw)


class MultiExit(GraphKindDef):
    kind = GraphKind.MULTI_EXIT
    exits = EXITS_EVERY

    def plan(self, ctx: PlanContext) -> list[PlannedGraph]:
        if not ctx.options.multi_exit:
            return []
        return [PlannedGraph(MULTI_EXIT_NAME, multi_exit_spec(ctx.cfg, **ctx.kw))]
