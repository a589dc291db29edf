"""The records one graph's manifest entry is made of: its tensors, its place in a cascade or a
reject pair, the thresholds and rules calibration adds, and how it was verified against PyTorch.
`ManifestEntry` (manifest.py) holds them; each is strict JSON through `Record` (records.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import GraphError
from .records import Record, slot


@dataclass
class TensorInfo(Record):
    """One graph input/output as the manifest lists it (the graph file is the authority)."""

    name: str
    dtype: str | None = None  # numpy dtype name
    shape: list[int | str] | None = None  # "batch" for the dynamic batch dimension


@dataclass
class ExitInfo(Record):
    """An early decoder a graph reports: exit j (counting coded blocks) at block `block`."""

    exit: int
    block: int
    scores: str  # output name of the (batch, K) exit scores
    energies: str | None = None  # multi-exit graphs also output the (batch, N) energies


@dataclass
class SegmentInfo(Record):
    """Where a segment sits in the cascade."""

    index: int
    of: int | None = None  # number of segments in the chain
    blocks: list[int] | None = None  # [first, last] block index
    next: str | None = slot(None, keep_none=True)  # name of the next segment (None for the last)


@dataclass
class RejectInfo(Record):
    """An early-reject pair: part a (stem..block, distance + features), part b (rest, logit)."""

    class_name: str = slot(key="class")
    block: int = slot()
    exit: int = slot()  # the reject block's exit index (counting coded blocks)
    a: str = slot()  # graph name of part a
    b: str = slot()  # graph name of part b
    part: str = "a"  # which part the entry carrying this is


@dataclass
class RejectRule(Record):
    """A learned early-reject score (calibrate, runtime/thresholds/reject_logistic.py): with v the
    (N,) normalised energies of every branch at the reject block,
    score = sum_n weights[n] * log(v_n + eps) + bias; higher means more likely a negative, compared
    with the reject threshold as the distance is."""

    weights: list[float]
    bias: float
    eps: float
    fitted_on: str | None = None  # which images fitted it (never the halves the threshold is set on)

    def __post_init__(self) -> None:
        vals = [*self.weights, self.bias, self.eps]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals) or self.eps <= 0:
            raise GraphError("reject rule: weights, bias and eps must be finite numbers, eps > 0")
        self.weights = [float(w) for w in self.weights]
        self.bias, self.eps = float(self.bias), float(self.eps)


@dataclass
class RejectProbeInfo(Record):
    """A reject probe (kind "reject-probe"): the class it serves, the blocks it reports a distance and
    energies at, and per block J the FLOPs of the pair cut there ({str(J): {"a": FLOPs, "b": FLOPs}})."""

    class_name: str = slot(key="class")
    blocks: list[int] = slot(default_factory=list)
    pair_flops: dict[str, dict[str, float]] | None = None
    # calibrate (runtime/thresholds/reject_search.py): per block, the reject threshold at the recall budget
    reject_thresholds: dict[str, float] | None = slot(None, inf_as_null=True)  # +inf: never rejects
    # calibrate's learned reject rule: per block, the score the threshold applies to (else the distance)
    reject_rules: dict[str, RejectRule] | None = slot(None, record=RejectRule, mapping=True)


@dataclass
class RejectFloor(Record):
    """The least compute an early reject can reach: the shared trunk every input runs."""

    trunk_blocks: list[int]
    trunk_flops: float
    class_graph_flops: float | None = None
    fraction_of_class_graph: float | None = None
    definition: str | None = None


@dataclass
class RejectChoice(Record):
    """The reject block calibration picked (from reject probes), and how to export its pairs."""

    block: int
    criterion: str | None = None
    export: str | None = None  # the export command line for pairs at `block`


@dataclass
class OutputError(Record):
    """ONNX Runtime vs PyTorch error of one output (see export/verify.py for the pass rule)."""

    max_abs: float
    max_rel: float
    shape: list[int] | None = None  # set when the graph's shape differed from the reference's


@dataclass
class CheckResult(Record):
    """One verification run of one graph (fresh random inputs or real images), or why it was skipped."""

    max_abs: float | None = None
    max_rel: float | None = None
    outputs: dict[str, OutputError] | None = slot(None, record=OutputError, mapping=True)
    passed: bool | None = None
    skipped: str | None = None


@dataclass
class Verification(Record):
    """Per graph: the tolerance it was held to and both runs; max_* over the runs."""

    tolerance: float
    random: CheckResult | None = slot(None, record=CheckResult)
    images: CheckResult | None = slot(None, record=CheckResult)
    max_abs: float | None = None
    max_rel: float | None = None
    passed: bool | None = None
