"""Kinds "class" and "subset": the physically pruned path of one class / the union of several
classes' paths, one logit per class (the detectors, GraphKind.is_detector).

Cuts every branch no kept class's codeword uses (reduce / 3x3 / Gram rows and expand columns
sliced away; the energy normalisation still divides by the full N). Outputs "logits" (batch, k).
Reference: the model's blocks with the keep mask (`CodedBlock.forward(h, keep)`). Manifest facts:
the analytic parameter count of the kept path."""

from __future__ import annotations

from collections.abc import Sequence

from ...artifact import GraphKind
from ...errors import CodedResNeXtError
from ...model_config import ModelConfig
from ..layout import block_layout, class_indices, keep_branches
from .base import GraphKindDef, GraphSpec, PlanContext, PlannedGraph, safe_name


def path_spec(cfg: ModelConfig, classes: Sequence[int], *, masked: bool = False, **kw) -> GraphSpec:
    """Physically pruned (or, masked=True, zero-masked) path of `classes`, one logit per class."""
    keep = tuple(keep_branches(block_layout(cfg), classes))
    kind = GraphKind.MASKED if masked else (GraphKind.CLASS if len(classes) == 1 else GraphKind.SUBSET)
    return GraphSpec(kind, keep, rows=tuple(classes), **kw)


class Class(GraphKindDef):
    kind = GraphKind.CLASS

    def plan(self, ctx: PlanContext) -> list[PlannedGraph]:
        names = ctx.cfg.class_names
        return [
            PlannedGraph(f"class_{safe_name(names[k])}", path_spec(ctx.cfg, [k], **ctx.kw))
            for k in ctx.classes
        ]


class Subset(GraphKindDef):
    kind = GraphKind.SUBSET

    def plan(self, ctx: PlanContext) -> list[PlannedGraph]:
        cfg, out = ctx.cfg, []
        for sub in ctx.options.subsets:
            idx = class_indices(cfg, list(sub))
            if len(idx) < 2:
                raise CodedResNeXtError(f"--subset needs at least two classes, got {list(sub)}")
            stem = "subset_" + "__".join(safe_name(cfg.class_names[k]) for k in idx)
            out.append(PlannedGraph(stem, path_spec(cfg, idx, **ctx.kw)))
        return out
