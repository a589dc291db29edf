"""Which graphs an export writes: names (file stems), GraphSpecs and cascade/reject links (numpy only)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..artifact import FP16, GraphKind, RejectInfo, RejectProbeInfo, SegmentInfo, precision_suffix
from ..errors import CodedResNeXtError
from ..model_config import ModelConfig
from .builder import GraphSpec
from .layout import class_indices
from .options import ExportOptions
from .specs import full_spec, multi_exit_spec, path_spec, reject_probe_spec, reject_specs, segment_specs

FULL_NAME = "full"
MULTI_EXIT_NAME = "multi_exit"


@dataclass
class PlannedGraph:
    name: str
    spec: GraphSpec
    segment: SegmentInfo | None = None  # kind "segment": place in the cascade
    reject: RejectInfo | None = None  # kind "reject": the pair it belongs to
    reject_probe: RejectProbeInfo | None = None  # kind "reject-probe" (pair_flops: added at export)


def safe_name(name: str) -> str:
    """A class name as it appears in file names (letters, digits, '_', '.', '-')."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _classes(cfg: ModelConfig, classes: str | Sequence[str] | None) -> list[int]:
    if classes == "all":
        return list(range(cfg.num_classes))
    return class_indices(cfg, list(classes)) if classes else []


def _subset_plan(cfg: ModelConfig, subsets: Sequence[Sequence[str]], kw: dict) -> list[PlannedGraph]:
    out = []
    for sub in subsets:
        idx = class_indices(cfg, list(sub))
        if len(idx) < 2:
            raise CodedResNeXtError(f"--subset needs at least two classes, got {list(sub)}")
        stem = "subset_" + "__".join(safe_name(cfg.class_names[k]) for k in idx)
        out.append(PlannedGraph(stem, path_spec(cfg, idx, **kw)))
    return out


def _segment_plan(cfg: ModelConfig, segments: bool | str | Sequence[int], kw: dict) -> list[PlannedGraph]:
    """segments: True (default cuts), "all" (after every coded block) or block indices."""
    cuts = None if segments is True else (segments if isinstance(segments, str) else list(segments))
    specs = segment_specs(cfg, cuts, **kw)
    names = [f"segment{i}" for i in range(len(specs))]
    return [
        PlannedGraph(
            names[i],
            sp,
            segment=SegmentInfo(
                index=i,
                of=len(specs),
                blocks=[sp.start, (sp.stop or len(sp.keep)) - 1],
                next=names[i + 1] if i + 1 < len(specs) else None,
            ),
        )
        for i, sp in enumerate(specs)
    ]


def _reject_plan(cfg: ModelConfig, cls: list[int], block: int, kw: dict) -> list[PlannedGraph]:
    out = []
    for k in cls:
        a, b = reject_specs(cfg, k, block, **kw)
        base = f"reject_{safe_name(cfg.class_names[k])}"
        info = RejectInfo(cfg.class_names[k], block, cfg.coded_blocks.index(block), f"{base}_a", f"{base}_b")
        out.append(PlannedGraph(f"{base}_a", a, reject=replace(info, part="a")))
        out.append(PlannedGraph(f"{base}_b", b, reject=replace(info, part="b")))
    return out


def _reject_probe_plan(cfg: ModelConfig, cls: list[int], kw: dict) -> list[PlannedGraph]:
    """`--reject-block all`: one probe per class, the pair's distance at every coded block."""
    out = []
    for k in cls:
        sp = reject_probe_spec(cfg, k, **kw)
        info = RejectProbeInfo(class_name=cfg.class_names[k], blocks=list(sp.reject_probe))
        out.append(PlannedGraph(f"reject_probe_{safe_name(cfg.class_names[k])}", sp, reject_probe=info))
    return out


def plan_graphs(cfg: ModelConfig, options: ExportOptions) -> list[PlannedGraph]:
    """Which graphs an export writes (names are file stems), in a fixed order; full is first.

    options.reject_block: a coded block index (reject pairs) or "all" (one reject probe per class)."""
    o = options
    classes, subsets, masked, reject_block = o.classes, o.subsets, o.masked, o.reject_block
    multi_exit, segments = o.multi_exit, o.segments
    kw = {"uint8": o.uint8}
    plan = [PlannedGraph(FULL_NAME, full_spec(cfg, **kw))]
    cls = _classes(cfg, classes)
    if (cls or subsets or masked or reject_block is not None) and not cfg.coded_blocks:
        raise CodedResNeXtError("this model has no coded blocks (control): per-class graphs do not exist")
    if (masked or reject_block is not None) and not cls:
        cls = list(range(cfg.num_classes))
    plan += [PlannedGraph(f"class_{safe_name(cfg.class_names[k])}", path_spec(cfg, [k], **kw)) for k in cls]
    plan += _subset_plan(cfg, subsets, kw)
    if masked:
        plan += [
            PlannedGraph(f"masked_{safe_name(cfg.class_names[k])}", path_spec(cfg, [k], masked=True, **kw))
            for k in cls
        ]
    if multi_exit:
        plan.append(PlannedGraph(MULTI_EXIT_NAME, multi_exit_spec(cfg, **kw)))
    if segments is not False and segments is not None:
        plan += _segment_plan(cfg, segments, kw)
    if reject_block == "all":
        plan += _reject_probe_plan(cfg, cls, kw)
    elif reject_block is not None:
        plan += _reject_plan(cfg, cls, reject_block, kw)
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
