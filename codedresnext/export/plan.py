"""Which graphs an export writes: names (file stems), GraphSpecs and cascade/reject links (numpy only).

Each kind plans its own graphs (kinds/<kind>.py `plan`); this module resolves the classes once and
asks every registered kind in registry order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..artifact import FP16, GraphKind, RejectInfo, precision_suffix
from ..errors import CodedResNeXtError
from ..model_config import ModelConfig
from .kinds import FULL_NAME, KINDS, MULTI_EXIT_NAME, PlanContext, PlannedGraph, safe_name
from .layout import class_indices
from .options import ExportOptions

__all__ = [
    "FULL_NAME",
    "MULTI_EXIT_NAME",
    "PlannedGraph",
    "plan_graphs",
    "reject_pairs",
    "safe_name",
    "segment_order",
]


def _classes(cfg: ModelConfig, classes: str | Sequence[str] | None) -> list[int]:
    if classes == "all":
        return list(range(cfg.num_classes))
    return class_indices(cfg, list(classes)) if classes else []


def plan_graphs(cfg: ModelConfig, options: ExportOptions) -> list[PlannedGraph]:
    """Which graphs an export writes (names are file stems), in a fixed order; full is first.

    options.reject_block: a coded block index (reject pairs) or "all" (one reject probe per class)."""
    o = options
    cls = _classes(cfg, o.classes)
    if (cls or o.subsets or o.masked or o.reject_block is not None) and not cfg.coded_blocks:
        raise CodedResNeXtError("this model has no coded blocks (control): per-class graphs do not exist")
    if (o.masked or o.reject_block is not None) and not cls:
        cls = list(range(cfg.num_classes))
    ctx = PlanContext(cfg, o, cls, {"uint8": o.uint8})
    plan = [pg for kd in KINDS.values() for pg in kd.plan(ctx)]
    if o.fp16:
        plan += [
            replace(p, name=p.name + precision_suffix(FP16), spec=replace(p.spec, fp16=True)) for p in plan
        ]
    return plan


def segment_order(plan: list[PlannedGraph]) -> list[str]:
    """The fp32 segment names in cascade order."""
    return [p.name for p in plan if p.spec.kind == GraphKind.SEGMENT and not p.spec.fp16]


def reject_pairs(plan: list[PlannedGraph]) -> list[RejectInfo]:
    """One RejectInfo per fp32 pair (the part-a record)."""
    return [p.reject for p in plan if p.reject is not None and p.reject.part == "a" and not p.spec.fp16]
