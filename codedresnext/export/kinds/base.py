"""What every graph kind shares: the GraphSpec data, the planned graph, and the GraphKindDef hooks.

A kind's module (one per GraphKind, registered in kinds/__init__.py) subclasses GraphKindDef: its
spec factory says what it cuts, its hooks say what it outputs (builder.py and reference.py ask the
kind, never compare kind strings), `facts` its graph metadata and `plan` which graphs an export
writes of it. GraphSpec keeps only data; behaviour comes from `spec.kind`'s definition.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ...artifact import (
    GraphKind,
    RejectInfo,
    RejectProbeInfo,
    SegmentInfo,
    reject_distance_name,
    reject_energies_name,
)
from ...model_config import ModelConfig

if TYPE_CHECKING:  # annotation only: options imports the INT8 modules, which the pruner does not need
    from ..options import ExportOptions

EXITS_NONE, EXITS_EVERY, EXITS_LAST = "none", "every", "last"


def safe_name(name: str) -> str:
    """A class name as it appears in file names (letters, digits, '_', '.', '-')."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


@dataclass(frozen=True)
class GraphSpec:
    """What one graph computes. `keep[i]` = kept branches of block i (None = all)."""

    kind: GraphKind
    keep: tuple[tuple[int, ...] | None, ...]
    rows: tuple[int, ...] = ()  # classifier rows (classes) in output order
    start: int = 0  # first block; > 0 means the input is "features"
    stop: int | None = None  # one past the last block; None = all blocks + head
    probe: tuple[int, ...] = ()  # blocks computing ALL branches for a reject distance of class rows[0]
    uint8: bool = False  # "frames" uint8 NHWC input with preprocessing inside
    fp16: bool = False  # FP16 compute, float32 inputs/outputs

    @property
    def last_block(self) -> int:
        return (len(self.keep) if self.stop is None else self.stop) - 1


@dataclass
class PlannedGraph:
    name: str
    spec: GraphSpec
    segment: SegmentInfo | None = None  # kind "segment": place in the cascade
    reject: RejectInfo | None = None  # kind "reject": the pair it belongs to
    reject_probe: RejectProbeInfo | None = None  # kind "reject-probe" (pair_flops: added at export)


@dataclass(frozen=True)
class PlanContext:
    """What plan_graphs resolved once for every kind: the options, the per-class list, spec kwargs."""

    cfg: ModelConfig
    options: ExportOptions
    classes: list[int]  # --classes, or every class where masked / reject graphs need them
    kw: dict


class GraphKindDef:
    """A graph kind's behaviour; subclasses override what differs from a plain pruned path + head."""

    kind: ClassVar[GraphKind]
    masked: ClassVar[bool] = False  # keep applied as a constant 0/1 Mul; nothing sliced (the paper's way)
    exits: ClassVar[str] = EXITS_NONE  # early-exit outputs: none, every coded block, the last block

    def probe_names(self, spec: GraphSpec, block: int) -> tuple[str, str]:
        """Output names of the reject distance and energies at probed `block` (spec.probe)."""
        return reject_distance_name(block), reject_energies_name(block)

    def facts(self, spec: GraphSpec) -> dict:
        """The kind's entries of the codedresnext.graph metadata (beside block range, keep, precision)."""
        return {"masked": self.masked, "reject": None}

    def computed_keep(self, spec: GraphSpec) -> Sequence[tuple[int, ...] | None] | None:
        """The branches the graph really computes per block, for the analytic parameter count (None:
        not a plain pruned path, so no analytic count)."""
        return None if spec.probe else spec.keep

    def plan(self, ctx: PlanContext) -> list[PlannedGraph]:
        """The graphs of this kind an export with `ctx.options` writes, in order."""
        return []
