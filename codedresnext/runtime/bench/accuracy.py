"""How well one exported graph does on labelled images, optionally against a reference graph.

Used by `export --int8` (every INT8 twin vs its fp32 twin, recorded in the manifest) and meant for
`codedresnext evaluate`: one function, `graph_accuracy(directory, name, images, labels)`, for every
graph kind. Graphs that start from features (segments after the first, reject part b) are run
behind their own chain (the earlier segments / part a of the same precision), so a segment's
figures are what the deployed cascade of that precision computes. torch-free.

Per output:
- "logits" over all K classes (full, multi-exit, last segment): top-1 accuracy;
- "logits" of detectors (class, subset, masked, reject): ROC-AUC per class (positives = that
  class);
- early-exit scores (multi-exit `exitJ_scores`, segment `exit_scores`): top-1 accuracy per exit.
With a reference graph: the same figures for it, top-1 agreement, the largest logit difference,
and for detectors the decision agreement at the reference's F1-optimal threshold on these images
(a threshold the reference would be given; it only measures whether both graphs decide alike).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ...artifact import (
    INPUT_FLOAT,
    INPUT_UINT8,
    OUTPUT_FEATURES,
    OUTPUT_LOGITS,
    GraphKind,
    Manifest,
    ManifestEntry,
    graph_file,
    handover_feed,
    load_manifest,
)
from ...errors import GraphError
from ..api.graphs import prepare_batch
from ..backends import DEFAULT_BACKEND, open_backend
from ..thresholds.detector import f1_optimal_threshold, roc_auc, undefined_reason


def chain_for(manifest: Manifest, entry: ManifestEntry) -> list[ManifestEntry]:
    """The graphs to run in order to compute `entry` from images (entry last)."""
    if entry.kind == GraphKind.SEGMENT and entry.segment is not None and entry.segment.index > 0:
        segs = [g for g in manifest.of_kind(GraphKind.SEGMENT, precision=entry.precision) if g.segment]
        segs.sort(key=lambda g: g.segment.index)
        return [g for g in segs if g.segment.index <= entry.segment.index]
    if entry.reject is not None and entry.reject.part == "b":
        return [manifest.graph(entry.reject.a), entry]
    return [entry]


def run_graph(
    directory: str | os.PathLike,
    name: str,
    images: np.ndarray,
    *,
    batch: int = 250,
    threads: int | None = 1,
    manifest: Manifest | None = None,
) -> dict[str, np.ndarray]:
    """All outputs of graph `name` (behind its chain) on uint8 (N, H, W, 3) images, concatenated."""
    directory = Path(directory)
    manifest = manifest or load_manifest(directory)
    chain = chain_for(manifest, manifest.graph(name))
    backends = [open_backend(DEFAULT_BACKEND, graph_file(directory, g), threads=threads) for g in chain]
    try:
        first = backends[0].inputs[0]
        if first.name not in (INPUT_FLOAT, INPUT_UINT8):
            raise GraphError(f"{chain[0].name} does not start from images (input {first.name!r})")
        pre = manifest.preprocessing
        parts: dict[str, list[np.ndarray]] = {}
        for i in range(0, len(images), batch):
            out = backends[0].infer(
                {first.name: prepare_batch(images[i : i + batch], first.name, first.shape, pre)}
            )
            for be in backends[1:]:  # segments / part b: the hand-over names live in artifact.handover
                feed = handover_feed(out, be.input_names)
                out = {**{k: v for k, v in out.items() if k != OUTPUT_FEATURES}, **be.infer(feed)}
            for k, v in out.items():
                parts.setdefault(k, []).append(v)
        return {k: np.concatenate(v) for k, v in parts.items()}
    finally:
        for be in backends:
            be.close()


def _figures(
    outputs: dict[str, np.ndarray], labels: np.ndarray, classes: list[str], names: list[str]
) -> dict:
    out: dict[str, Any] = {}
    logits = outputs.get(OUTPUT_LOGITS)
    if logits is not None and logits.shape[1] == len(names) and len(names) > 1 and classes == names:
        out["top1"] = float(np.mean(logits.argmax(1) == labels))
    elif logits is not None:
        out["auc"], why = {}, {}
        for j, c in enumerate(classes):
            pos = labels == names.index(c)
            reason = undefined_reason(pos)
            out["auc"][c] = None if reason else roc_auc(logits[:, j], pos)
            if reason:
                why[c] = f"class {c!r}: {reason}"
        if why:
            out["auc_undefined"] = why
    exits = {k: v for k, v in outputs.items() if k.endswith("_scores")}
    if exits:
        out["exit_top1"] = {k: float(np.mean(v.argmax(1) == labels)) for k, v in sorted(exits.items())}
    return out


def graph_accuracy(
    directory: str | os.PathLike,
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    reference: str | None = None,
    batch: int = 250,
    threads: int | None = 1,
) -> dict:
    """Accuracy figures of graph `name` on (images uint8 NHWC, labels), and vs `reference` if given."""
    directory = Path(directory)
    manifest = load_manifest(directory)
    entry = manifest.graph(name)
    names = list(manifest.model.class_names)
    classes = list(entry.classes or names)
    labels = np.asarray(labels)
    got = run_graph(directory, name, images, batch=batch, threads=threads, manifest=manifest)
    res: dict[str, Any] = {"images": int(len(labels)), **_figures(got, labels, classes, names)}
    if reference is None:
        return res
    ref = run_graph(directory, reference, images, batch=batch, threads=threads, manifest=manifest)
    res["reference"] = {"name": reference, **_figures(ref, labels, classes, names)}
    if OUTPUT_LOGITS in got:
        g, r = got[OUTPUT_LOGITS], ref[OUTPUT_LOGITS]
        res["logits_max_abs_diff"] = float(np.abs(g - r).max())
        res["logits_scale"] = float(np.abs(r).max())
        if "top1" in res:
            res["top1_agreement"] = float(np.mean(g.argmax(1) == r.argmax(1)))
        else:
            agree = {}
            for j, c in enumerate(classes):
                pos = labels == names.index(c)
                if pos.any() and (~pos).any():
                    thr, _ = f1_optimal_threshold(r[:, j], pos)
                    agree[c] = float(np.mean((g[:, j] > thr) == (r[:, j] > thr)))
            res["decision_agreement"] = agree
    exits = [k for k in got if k.endswith("_scores") and k in ref]
    if exits:
        res["exit_top1_agreement"] = {
            k: float(np.mean(got[k].argmax(1) == ref[k].argmax(1))) for k in sorted(exits)
        }
    return res
