"""ONNX -> ONNX: cut per-class / subset / masked / multi-exit / segment / reject graphs from full.onnx.

No torch anywhere in this module's import chain (onnx + numpy only), so an edge device holding only
full.onnx can cut its own detectors. The full graph's metadata carries the model config (with every
coded stage's codewords); its initializers carry the BN-folded weights under stable names
(export/names.py). Pruning reads those arrays once, slices the kept branches' rows/columns with
numpy and rebuilds the graph with the same builder that made full.onnx, so a pruned graph is
exactly the full graph's computation minus the removed branches.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from onnx import numpy_helper

from .._io import write_bytes
from ..artifact import (
    FP16,
    HEAD_KINDS,
    INPUT_UINT8,
    META_CHECKPOINT_SHA256,
    META_CLASSES,
    META_GRAPH,
    META_MODEL_CONFIG,
    META_THRESHOLDS,
    META_UNTRAINED,
    load_onnx,
    read_metadata,
)
from ..errors import CodedResNeXtError, GraphError
from ..model_config import ModelConfig
from . import groups, names
from .builder import build_graph
from .counting import count_flops, count_params
from .kinds import GraphSpec, path_spec
from .layout import class_indices
from .meta import graph_metadata


@dataclass
class FullGraph:
    """What the pruner needs from full.onnx: config, float32 folded weights and provenance."""

    cfg: ModelConfig
    weights: dict[str, np.ndarray]
    checkpoint_sha256: str
    untrained: bool
    uint8: bool
    fp16: bool
    opset: int
    thresholds: dict | None = None  # {class name: logit threshold} if full.onnx carries them


def load_full_graph(src) -> FullGraph:
    """Read a full (or multi-exit) graph written by `codedresnext export`: path or ModelProto."""
    model = load_onnx(src) if isinstance(src, (str, os.PathLike)) else src
    meta = read_metadata(model)
    graph = meta.get(META_GRAPH) or {}
    if graph.get("kind") not in HEAD_KINDS or not graph.get("head") or graph.get("start_block"):
        raise GraphError(
            f"the pruner needs the full graph (kind 'full' from `codedresnext export`), this one is "
            f"kind {graph.get('kind')!r}"
        )
    try:
        cfg = ModelConfig.from_dict(meta[META_MODEL_CONFIG])
    except (KeyError, TypeError, CodedResNeXtError) as e:
        raise GraphError(f"the graph's model config metadata is unusable: {e}") from e
    weights = {
        t.name: numpy_helper.to_array(t).astype(np.float32)
        for t in model.graph.initializer
        if names.is_parameter(t.name) or t.name.endswith("/gram")
    }
    weights = groups.unwiden(cfg, weights)  # fp32 graphs re-lay the trunk's groups (groups.py)
    inputs = [i.name for i in model.graph.input]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    thresholds = meta.get(META_THRESHOLDS) if isinstance(meta.get(META_THRESHOLDS), dict) else None
    return FullGraph(
        cfg,
        weights,
        str(meta.get(META_CHECKPOINT_SHA256, "")),
        bool(meta.get(META_UNTRAINED, False)),
        INPUT_UINT8 in inputs,
        graph.get("precision") == FP16,
        opset,
        thresholds,
    )


def derive(full: FullGraph, spec: GraphSpec, *, opset: int | None = None):
    """Build the graph `spec` describes from the full graph's weights (an onnx.ModelProto)."""
    opset = opset or full.opset
    if spec.uint8 != full.uint8 or spec.fp16 != full.fp16:
        spec = replace(spec, uint8=spec.uint8 or full.uint8, fp16=spec.fp16 or full.fp16)
    meta = graph_metadata(
        full.cfg, spec, checkpoint_sha256=full.checkpoint_sha256, untrained=full.untrained, opset=opset
    )
    names_out = [full.cfg.class_names[k] for k in spec.rows]
    if full.thresholds and spec.stop is None and all(n in full.thresholds for n in names_out):
        meta[META_THRESHOLDS] = json.dumps({n: full.thresholds[n] for n in names_out}, sort_keys=True)
    return build_graph(
        full.cfg, full.weights, spec, metadata=meta, opset=opset, graph_name=f"codedresnext_{spec.kind}"
    )


def prune(full: FullGraph, classes: Sequence[str | int], *, masked: bool = False):
    """Physically pruned graph for the union of `classes`' paths, one logit per class (in order)."""
    if not classes:
        raise CodedResNeXtError("give at least one class to keep")
    idx = class_indices(full.cfg, classes)
    if not full.cfg.coded_blocks:
        raise CodedResNeXtError("this model has no coded blocks (control); there is nothing to prune")
    return derive(full, path_spec(full.cfg, idx, masked=masked))


def prune_file(src: str | os.PathLike, out: str | os.PathLike, classes: Sequence[str | int]) -> dict:
    """`codedresnext prune`: full.onnx -> pruned graph file (atomic write); returns a short summary."""
    out = Path(out)
    if out.is_dir():
        raise CodedResNeXtError(f"--out {out} is a directory; give a file name such as {out}/cat.onnx")
    full = load_full_graph(src)
    model = prune(full, classes)
    data = model.SerializeToString()
    try:
        write_bytes(out, data)
    except OSError as e:
        raise CodedResNeXtError(f"cannot write {out}: {e}; choose a writable --out") from e
    meta = {p.key: p.value for p in model.metadata_props}
    return {
        "file": str(out),
        "classes": json.loads(meta[META_CLASSES]),
        "params": count_params(model),
        "flops": count_flops(model)["flops"],
    }
