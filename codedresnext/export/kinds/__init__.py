"""Graph kinds: one module per kind (what it cuts, what it outputs, how its reference is computed,
its manifest facts), registered here, in the order an export plans them (docs/graph-kinds.md).

numpy only (no torch), shared by the exporter and the torch-free pruner.
"""

from __future__ import annotations

from ...artifact import GraphKind
from .base import (
    EXITS_EVERY,
    EXITS_LAST,
    EXITS_NONE,
    GraphKindDef,
    GraphSpec,
    PlanContext,
    PlannedGraph,
    safe_name,
)
from .detector import Class, Subset, path_spec
from .full import FULL_NAME, Full, full_spec
from .masked import Masked
from .multi_exit import MULTI_EXIT_NAME, MultiExit, multi_exit_spec
from .reject import Reject, reject_specs
from .reject_probe import RejectProbe, reject_probe_spec
from .segment import Segment, default_cuts, exit_cuts, segment_specs

KINDS: dict[GraphKind, GraphKindDef] = {
    d.kind: d for d in (Full(), Class(), Subset(), Masked(), MultiExit(), Segment(), RejectProbe(), Reject())
}


def kind_of(spec: GraphSpec) -> GraphKindDef:
    """The definition of `spec`'s kind."""
    return KINDS[spec.kind]


__all__ = [
    "EXITS_EVERY",
    "EXITS_LAST",
    "EXITS_NONE",
    "FULL_NAME",
    "KINDS",
    "MULTI_EXIT_NAME",
    "GraphKindDef",
    "GraphSpec",
    "PlanContext",
    "PlannedGraph",
    "default_cuts",
    "exit_cuts",
    "full_spec",
    "kind_of",
    "multi_exit_spec",
    "path_spec",
    "reject_probe_spec",
    "reject_specs",
    "safe_name",
    "segment_specs",
]
