"""manifest.json as typed records: `Manifest` (one per export directory) and `ManifestEntry` (per graph).

Written by export, updated by `evaluate --graphs` (detector thresholds) and `calibrate` (exit and
reject thresholds, the calibration report), read by the runtime, bench, TensorRT and Triton.
`Manifest.from_dict` is strict: unknown keys, unknown kinds or precisions and missing required
keys raise GraphError naming the key. Format "codedresnext-manifest-v2" (validated); v1 manifests
(same fields, written before validation existed) load and are converted. New fields go here, as
documented optional slots, never as free-form keys.

The file is strict JSON (no Infinity/NaN: `save` refuses them). A threshold that means "never"
(an exit calibration keeps shut, a reject that never fires) is +inf in Python and null on disk;
an absent threshold means "not calibrated" (which also never exits).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import write_json
from ..errors import GraphError, ManifestError
from ..model_config import ModelConfig
from .graph_records import (
    ExitInfo,
    RejectChoice,
    RejectFloor,
    RejectInfo,
    RejectProbeInfo,
    RejectRule,
    SegmentInfo,
    TensorInfo,
    Verification,
)
from .integrity import check_plain_name
from .keys import (
    FP32,
    MANIFEST_FORMAT,
    MANIFEST_FORMAT_V1,
    MANIFEST_NAME,
    GraphKind,
    check_exit_confidence,
    check_precision,
)
from .preprocessing import Preprocessing
from .records import Record, require_type, slot


@dataclass
class ManifestEntry(Record):
    """One graph of an export. Optional slots are filled by later steps (named per slot)."""

    name: str
    file: str
    kind: GraphKind
    classes: list[str] = field(default_factory=list)  # output classes, in output order
    class_indices: list[int] | None = None
    precision: str = FP32  # "fp32" | "fp16" | "int8" (Q/DQ, TensorRT form) | "int8-<form>"
    params: int | None = None  # PyTorch-equivalent parameters of the computed path
    initializer_elements: int | None = None
    flops: float | None = None  # per sample, 2 x Conv/Gemm MACs
    macs: float | None = None
    inputs: list[TensorInfo] = slot(default_factory=list, record=TensorInfo, many=True)
    outputs: list[TensorInfo] = slot(default_factory=list, record=TensorInfo, many=True)
    sha256: str | None = None
    size_bytes: int | None = slot(None, key="bytes")
    blocks: list[int] | None = None  # [first, last] block index the graph computes
    exits: list[ExitInfo] = slot(default_factory=list, record=ExitInfo, many=True)
    segment: SegmentInfo | None = slot(None, record=SegmentInfo)  # kind "segment"
    reject: RejectInfo | None = slot(None, record=RejectInfo)  # kind "reject"
    reject_probe: RejectProbeInfo | None = slot(None, record=RejectProbeInfo)  # kind "reject-probe"
    analytic_params: int | None = None  # closed-form count (full-depth path graphs)
    verification: Verification | None = slot(None, record=Verification)  # export
    thresholds: dict[str, float] | None = None  # detectors: {class: logit threshold} (evaluate)
    # segments with an exit: confidence threshold (calibrate); +inf (null on disk): the exit stays shut
    exit_threshold: float | None = slot(None, inf_as_null=True)
    exit_threshold_calibrated_on: str | None = None  # whose outputs set it (fp16 twins get fp32's)
    exit_confidence: str | None = None  # what exit_threshold is compared with (EXIT_CONFIDENCES); None: max
    # reject pairs: threshold on the reject score (calibrate); +inf (null on disk): never reject
    reject_threshold: float | None = slot(None, inf_as_null=True)
    # reject part A: the learned score the threshold applies to (calibrate); None: the codeword distance
    reject_rule: RejectRule | None = slot(None, record=RejectRule)
    accuracy: dict[str, Any] | None = None  # measured quality (runtime/bench/accuracy.py), e.g. {"top1": ...}
    quantization: dict[str, Any] | None = None  # int8 graphs: method, calibration data, scale source
    fp32_twin: str | None = None  # int8 graphs: the fp32 graph they were quantized from

    def __post_init__(self) -> None:
        where = f"graph {self.name!r}"
        require_type(f"{where}: name", self.name, str)
        check_plain_name(self.file, f"{where}: file")
        self.kind = GraphKind.parse(self.kind, f"{where}: kind")
        self.precision = check_precision(self.precision, f"{where}: precision")
        if self.exit_confidence is not None:
            self.exit_confidence = check_exit_confidence(self.exit_confidence, f"{where}: exit_confidence")
        if self.thresholds is not None:
            self.thresholds = finite_thresholds(self.thresholds, where)
        for key in ("exit_threshold", "reject_threshold"):
            t = getattr(self, key)
            if t is not None:
                require_type(f"{where}: {key}", t, (int, float))
                if math.isnan(t):
                    raise GraphError(f"{where}: {key} is NaN; re-run `codedresnext calibrate`")
                setattr(self, key, float(t))

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


@dataclass
class ModelInfo(Record):
    preset: str
    num_classes: int
    class_names: list[str]
    params: int | None = None
    coded_blocks: list[int] = field(default_factory=list)
    config: dict[str, Any] | None = None  # ModelConfig.to_dict() (see model_config())

    def model_config(self) -> Any:
        """The ModelConfig the graphs were exported from."""
        if self.config is None:
            raise GraphError("the manifest has no model config; re-export with `codedresnext export`")
        return ModelConfig.from_dict(self.config)


@dataclass
class CheckpointInfo(Record):
    path: str | None = slot(None, keep_none=True)  # the checkpoint exported (None for --preset)
    sha256: str | None = None
    source: str | None = None  # file name of the weights copy inside the export (source.pt)
    source_sha256: str | None = None

    def __post_init__(self) -> None:
        if self.source is not None:
            check_plain_name(self.source, "checkpoint.source")


@dataclass
class VerificationSettings(Record):
    enabled: bool
    tolerance: float
    fp16_tolerance: float | None = None
    random: str | None = None  # what the random inputs were
    images: str | None = None  # which real images, or why none
    reference: str | None = None  # what the graphs were compared with


@dataclass
class SegmentOrder(Record):
    order: list[str]  # fp32 segment graph names, in cascade order


@dataclass
class Manifest(Record):
    format: str = MANIFEST_FORMAT
    model: ModelInfo | None = slot(None, record=ModelInfo)
    preprocessing: Preprocessing | None = slot(None, record=Preprocessing)
    opset: int | None = None
    untrained: bool | None = None
    checkpoint: CheckpointInfo | None = slot(None, record=CheckpointInfo)
    definitions: dict[str, str] | None = None  # what params, flops, max_rel and "pass" mean
    verification: VerificationSettings | None = slot(None, record=VerificationSettings)
    segments: SegmentOrder | None = slot(None, record=SegmentOrder)
    reject: list[RejectInfo] | None = slot(None, record=RejectInfo, many=True)  # one per pair
    reject_floor: RejectFloor | None = slot(None, record=RejectFloor)  # with reject pairs/probes
    reject_choice: RejectChoice | None = slot(None, record=RejectChoice)  # calibrate, from probes
    graphs: list[ManifestEntry] = slot(default_factory=list, record=ManifestEntry, many=True)
    thresholds: dict[str, float] | None = None  # every detector threshold written (evaluate)
    thresholds_source: dict[str, Any] | None = None  # how they were chosen
    # `calibrate`'s report (runtime/thresholds/calibrate.py owns it; non-finite values stored as null)
    calibration: dict[str, Any] | None = None
    int8: dict[str, Any] | None = None  # `export --int8`: calibration data, method, recipes (export/int8.py)

    def __post_init__(self) -> None:
        if self.format != MANIFEST_FORMAT:
            raise GraphError(f"manifest format {self.format!r}; this version writes {MANIFEST_FORMAT!r}")
        names = [g.name for g in self.graphs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise GraphError(f"manifest lists graph(s) {dup} more than once")
        if self.thresholds is not None:
            self.thresholds = finite_thresholds(self.thresholds, "manifest")

    @classmethod
    def from_dict(cls, d: Any, where: str | None = None) -> Manifest:
        if isinstance(d, dict) and "graphs" not in d:
            raise ManifestError(f"{where or 'manifest'}: missing required key 'graphs'")
        if isinstance(d, dict) and d.get("format") == MANIFEST_FORMAT_V1:
            d = upgrade_v1(d)
        try:
            return super().from_dict(d, where or "manifest")
        except ManifestError:
            raise
        except GraphError as e:  # one error type for every invalid manifest
            raise ManifestError(str(e)) from e

    # -- queries ---------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [g.name for g in self.graphs]

    def graph(self, name: str) -> ManifestEntry:
        for g in self.graphs:
            if g.name == name:
                return g
        raise GraphError(f"no graph named {name!r} in the manifest; available: {self.names}")

    def select(self, names: list[str]) -> list[ManifestEntry]:
        """The named entries, in the order given; GraphError listing every unknown name."""
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise GraphError(f"no graph(s) {unknown} in the manifest; available: {sorted(self.names)}")
        return [self.graph(n) for n in names]

    def of_kind(self, *kinds: GraphKind, precision: str | None = FP32) -> list[ManifestEntry]:
        """Entries of these kinds (all kinds if none given) at `precision` (None: any), in order."""
        return [
            g
            for g in self.graphs
            if (not kinds or g.kind in kinds) and (precision is None or g.precision == precision)
        ]

    def first(self, kind: GraphKind, precision: str | None = FP32) -> ManifestEntry | None:
        found = self.of_kind(kind, precision=precision)
        return found[0] if found else None

    def class_graph(self, class_name: str, precision: str = FP32) -> ManifestEntry | None:
        """The one-class detector graph of `class_name` at `precision`, if exported."""
        return next(
            (g for g in self.of_kind(GraphKind.CLASS, precision=precision) if g.classes == [class_name]), None
        )

    def has_kind(self, kind: GraphKind) -> bool:
        return any(g.kind == kind for g in self.graphs)

    # -- files -----------------------------------------------------------------------------
    @classmethod
    def load(cls, directory: str | os.PathLike) -> Manifest:
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            raise ManifestError(f"no {MANIFEST_NAME} in {directory}; run `codedresnext export` to create one")
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ManifestError(f"{path} is not valid JSON: {e}") from e
        fmt = d.get("format") if isinstance(d, dict) else None
        if fmt not in (MANIFEST_FORMAT, MANIFEST_FORMAT_V1):
            raise ManifestError(
                f"{path} is not a codedresnext manifest (format {fmt!r}; this version reads "
                f"{MANIFEST_FORMAT!r} and {MANIFEST_FORMAT_V1!r})"
            )
        try:
            return cls.from_dict(d, str(path))
        except GraphError as e:
            hint = " (a v1 manifest: re-export it with this version)" if fmt == MANIFEST_FORMAT_V1 else ""
            raise ManifestError(f"{e}{hint}") from e

    def save(self, directory: str | os.PathLike) -> None:
        """Write DIR/manifest.json atomically (validated by a round trip first)."""
        d = self.to_dict()
        try:
            text = json.dumps(d, allow_nan=False)  # strict JSON: other tools read the manifest
        except ValueError as e:
            raise GraphError(
                f"the manifest holds a non-finite number ({e}); store 'never' as null "
                "(artifact.json_ready) before saving"
            ) from e
        Manifest.from_dict(json.loads(text))  # what we write must read back
        write_json(Path(directory) / MANIFEST_NAME, d)


def upgrade_v1(d: dict) -> dict:
    """v1 -> v2: same fields; the older "index" of a segment entry becomes segment.index."""
    d = dict(d, format=MANIFEST_FORMAT)
    graphs = []
    for g in d.get("graphs") or []:
        if isinstance(g, dict) and "index" in g and "segment" not in g:
            g = {k: v for k, v in g.items() if k != "index"} | {"segment": {"index": g["index"]}}
        graphs.append(g)
    d["graphs"] = graphs
    return d


def finite_thresholds(values: Any, where: str) -> dict[str, float]:
    """{class: float} with finite values; GraphError naming the bad class otherwise."""
    if not isinstance(values, dict):
        raise GraphError(f"{where}: thresholds must be {{class name: number}}, got {type(values).__name__}")
    out = {}
    for name, t in values.items():
        try:
            t = float(t)
        except (TypeError, ValueError) as e:
            raise GraphError(f"{where}: threshold for {name!r} is not a number: {t!r}") from e
        if not math.isfinite(t):
            raise GraphError(f"{where}: threshold for {name!r} is {t}; thresholds must be finite")
        out[str(name)] = t
    return out
