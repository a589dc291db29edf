"""The manifest an export writes: one ManifestEntry per graph, the Manifest around them (no torch)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..artifact import (
    FP16,
    FP32,
    SOURCE_CHECKPOINT,
    CheckpointInfo,
    ExitInfo,
    Manifest,
    ManifestEntry,
    ModelInfo,
    Preprocessing,
    RejectFloor,
    SegmentOrder,
    TensorInfo,
    VerificationSettings,
)
from ..model_config import ModelConfig
from .counting import (
    FLOPS_DEFINITION,
    PARAMS_DEFINITION,
    count_flops,
    count_initializer_elements,
    count_params,
)
from .kinds import kind_of
from .layout import analytic_params
from .meta import exits_info
from .plan import PlannedGraph, reject_pairs, segment_order

REL_ERROR_DEFINITION = "max_abs / max(max |reference|, 1e-6) per output (relative to the output's scale)"
PASS_DEFINITION = (
    "max_abs <= tolerance on logits/scores/energies/distances; features: "
    "max_abs <= tolerance * max(1, max |ref|)"
)
REFERENCE_DESCRIPTION = (
    "PyTorch CodedBlock.forward with the graph's kept branches zeroed "
    "(= model(x, keep_classes=...)), eval mode, float32"
)


def io_specs(model) -> tuple[list[TensorInfo], list[TensorInfo]]:
    from onnx import helper

    def spec(v) -> TensorInfo:
        t = v.type.tensor_type
        shape = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
        return TensorInfo(v.name, helper.tensor_dtype_to_np_dtype(t.elem_type).name, shape)

    return [spec(v) for v in model.graph.input], [spec(v) for v in model.graph.output]


def graph_entry(cfg: ModelConfig, pg: PlannedGraph, model, data: bytes, inferred) -> ManifestEntry:
    """Counts, I/O and provenance of one built graph (verification is added by the caller)."""
    spec = pg.spec
    ins, outs = io_specs(model)
    fl = count_flops(model, inferred)
    computed = kind_of(spec).computed_keep(spec)
    full_depth = computed is not None and spec.start == 0 and spec.stop is None
    return ManifestEntry(
        name=pg.name,
        file=f"{pg.name}.onnx",
        kind=spec.kind,
        classes=[cfg.class_names[k] for k in spec.rows],
        class_indices=list(spec.rows),
        precision=FP16 if spec.fp16 else FP32,
        params=count_params(model),
        initializer_elements=count_initializer_elements(model),
        flops=fl["flops"],
        macs=fl["macs"],
        inputs=ins,
        outputs=outs,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        blocks=[spec.start, spec.last_block],
        exits=[ExitInfo(**e) for e in exits_info(cfg, spec)],
        segment=pg.segment,
        reject=pg.reject,
        reject_probe=pg.reject_probe,
        analytic_params=analytic_params(cfg, computed, len(spec.rows)) if full_depth else None,
    )


def export_manifest(
    cfg: ModelConfig,
    entries: list[ManifestEntry],
    plan: list[PlannedGraph],
    *,
    params: int,
    checkpoint: dict[str, Any],
    untrained: bool,
    uint8: bool,
    opset: int,
    verification: dict[str, Any],
    reject_floor: RejectFloor | None = None,
) -> Manifest:
    """checkpoint: path (Path | None), sha256, source_sha256; verification: VerificationSettings fields;
    reject_floor: the shared trunk's share of a class graph (export/reject_facts.trunk_floor)."""
    path: Path | None = checkpoint["path"]
    seg = segment_order(plan)
    return Manifest(
        model=ModelInfo(
            preset=cfg.name,
            num_classes=cfg.num_classes,
            class_names=list(cfg.class_names),
            params=params,
            coded_blocks=cfg.coded_blocks,
            config=cfg.to_dict(),
        ),
        preprocessing=Preprocessing.for_model(cfg, uint8=uint8),
        opset=opset,
        untrained=untrained,
        checkpoint=CheckpointInfo(
            path=str(path) if path else None,
            sha256=checkpoint["sha256"],
            source=SOURCE_CHECKPOINT,
            source_sha256=checkpoint["source_sha256"],
        ),
        definitions={
            "params": PARAMS_DEFINITION,
            "flops": FLOPS_DEFINITION,
            "max_rel": REL_ERROR_DEFINITION,
            "pass": PASS_DEFINITION,
        },
        verification=VerificationSettings(reference=REFERENCE_DESCRIPTION, **verification),
        segments=SegmentOrder(seg) if seg else None,
        reject=reject_pairs(plan) or None,
        reject_floor=reject_floor,
        graphs=entries,
    )
