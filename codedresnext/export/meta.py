"""The codedresnext.* metadata written into every graph (numpy/json only)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..artifact import (
    FP16,
    FP32,
    META_CHECKPOINT_SHA256,
    META_CLASSES,
    META_EXITS,
    META_FORMAT,
    META_FORMAT_VERSION,
    META_GRAPH,
    META_KIND,
    META_MODEL_CONFIG,
    META_PREPROCESSING,
    META_UNTRAINED,
    OUTPUT_EXIT_SCORES,
    Preprocessing,
    exit_energies_name,
    exit_scores_name,
)
from ..model_config import ModelConfig
from .kinds import EXITS_EVERY, EXITS_LAST, GraphSpec, kind_of


def preprocessing(cfg: ModelConfig, uint8: bool) -> dict:
    """How to feed the graph: raw uint8 NHWC frames, or float NCHW normalised with mean/std."""
    return Preprocessing.for_model(cfg, uint8=uint8).to_dict()


def exits_info(cfg: ModelConfig, spec: GraphSpec) -> list[dict]:
    """Which coded blocks report an early decoder in this graph, and under which output names."""
    stop = spec.last_block + 1
    exits = kind_of(spec).exits
    out = []
    for j, bi in enumerate(cfg.coded_blocks):
        if not spec.start <= bi < stop:
            continue
        if exits == EXITS_EVERY:
            out.append(
                {"exit": j, "block": bi, "scores": exit_scores_name(j), "energies": exit_energies_name(j)}
            )
        elif exits == EXITS_LAST and bi == stop - 1:
            out.append({"exit": j, "block": bi, "scores": OUTPUT_EXIT_SCORES})
    return out


def graph_metadata(
    cfg: ModelConfig,
    spec: GraphSpec,
    *,
    checkpoint_sha256: str,
    untrained: bool,
    opset: int,
    class_names: Sequence[str] | None = None,
) -> dict[str, str]:
    names = list(class_names) if class_names is not None else [cfg.class_names[k] for k in spec.rows]
    graph = {
        "kind": spec.kind,
        "start_block": spec.start,
        "stop_block": len(spec.keep) if spec.stop is None else spec.stop,
        "head": spec.stop is None,
        "keep": [None if k is None else list(k) for k in spec.keep],
        **kind_of(spec).facts(spec),
        "precision": FP16 if spec.fp16 else FP32,
        "opset": opset,
    }
    meta = {
        META_FORMAT: META_FORMAT_VERSION,
        META_MODEL_CONFIG: cfg.to_dict(),
        META_KIND: spec.kind,
        META_CLASSES: names,
        META_PREPROCESSING: preprocessing(cfg, spec.uint8),
        META_CHECKPOINT_SHA256: checkpoint_sha256,
        META_UNTRAINED: untrained,
        META_EXITS: exits_info(cfg, spec),
        META_GRAPH: graph,
    }
    return {k: json.dumps(v, sort_keys=True) for k, v in meta.items()}
