"""Detector thresholds: how they are chosen (F1-optimal) and where they are stored (manifest + graphs);
ROC-AUC, the threshold-free measure of the same scores.

numpy/onnx only (no torch), so thresholds can also be recalibrated on a device. Graphs of the
detector kinds (artifact.DETECTOR_KINDS: "class", "subset") get `thresholds` = {class name: logit
threshold} for their classes, both in their manifest entry and in the metadata key
artifact.META_THRESHOLDS; each graph is verified against the manifest before it is re-stamped
(artifact.graph_file) and the rewritten file's sha256 is updated in the manifest. Every file is
replaced atomically (temp file + rename), and the manifest is written last, so readers never see
a threshold the graph does not carry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ... import artifact
from ..._io import write_bytes
from ...errors import GraphError, ManifestError


def check_scores(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float64 scores, bool labels), flattened; ValueError on a length mismatch or NaN/inf."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinity")
    return s, y


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve = P(score_pos > score_neg) + 0.5 P(tie) (Mann-Whitney U): the
    threshold-free quality of the scores a threshold is cut from. Here (not in evaluate) because the
    runtime reports it for exported detectors (runtime/bench/accuracy.py). NaN when either class is absent.
    """
    s, y = check_scores(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts  # 0-based first rank of each distinct value
    avg_rank = starts + (counts + 1) / 2.0  # 1-based average rank of tied values
    rank_sum = float(avg_rank[inverse][y].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def undefined_reason(labels: np.ndarray) -> str | None:
    """Why ROC-AUC (and any figure needing both classes) is undefined on this sample, or None:
    reports store null with this reason instead of NaN (strict JSON) or an abort."""
    y = np.asarray(labels, bool).ravel()
    if not y.any():
        return f"no positive among the {y.size} samples: undefined (use a larger or stratified sample)"
    if y.all():
        return f"no negative among the {y.size} samples: undefined (use a larger or stratified sample)"
    return None


def f1_optimal_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 of the decision `score > threshold`.

    Tie rule (the one used everywhere: evaluate's detectors, calibrate's reject pairs): candidate
    cuts lie between consecutive *distinct* scores, so tied scores are never split (a cut inside a
    run of equal scores would not be realisable by `>`); the threshold is the midpoint of the gap,
    or 1.0 below the lowest score when calling everything positive wins. Among cuts of equal F1 the
    highest threshold (fewest positives) is taken. ValueError without positives or with NaN/inf.
    """
    s, y = check_scores(scores, labels)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError("no positive samples: the F1-optimal threshold is undefined")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)  # positives among the top i+1 scores
    fp = np.cumsum(~y)
    last_of_run = np.r_[s[1:] != s[:-1], True]  # cut only after the last of equal scores
    cut = np.nonzero(last_of_run)[0]
    f1 = 2 * tp[cut] / (n_pos + tp[cut] + fp[cut])  # 2TP / (2TP + FP + FN)
    best = int(np.argmax(f1))  # first maximum = highest threshold
    i = cut[best]
    thr = (s[i] + s[i + 1]) / 2 if i + 1 < len(s) else s[i] - 1.0
    return float(thr), float(f1[best])


def _stamped(path: Path, values: dict[str, float] | None) -> bytes:
    """The graph's bytes with its thresholds metadata set to `values` (None: removed)."""
    model = artifact.load_onnx(path)  # external weights stay where they are
    props = [p for p in model.metadata_props if p.key != artifact.META_THRESHOLDS]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    if values is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = artifact.META_THRESHOLDS, json.dumps(values, sort_keys=True)
    return model.SerializeToString()


def _verified(export_dir: Path, g: artifact.ManifestEntry) -> Path:
    """The graph file after artifact.graph_file's checks, before it is re-stamped. A file an
    interrupted write-back already re-stamped (its sha256 is then no longer the manifest's) passes
    when stamping it back with the manifest's thresholds gives exactly the recorded sha256."""
    try:
        return artifact.graph_file(export_dir, g)
    except ManifestError as e:
        path = export_dir / g.file
        if "sha256" not in str(e) or not g.sha256 or not path.is_file():
            raise
        if hashlib.sha256(_stamped(path, g.thresholds)).hexdigest() != g.sha256:
            raise
        return artifact.graph_file(export_dir, g, verify_hash=False)  # containment + metadata


def write_thresholds(
    export_dir: str | os.PathLike,
    thresholds: dict[str, float],
    *,
    source: dict[str, Any] | None = None,
    precision: str | None = None,
) -> list[str]:
    """Store `thresholds` ({class name: threshold}) in every detector graph of `export_dir`
    (`precision`: only that precision's graphs; the manifest's export-wide thresholds and source
    stay those of every precision).

    A graph is updated only when all its classes have a threshold. `source` (e.g. how they were
    chosen) is recorded in the manifest. Returns the names of the updated graphs.
    """
    export_dir = Path(export_dir)
    thresholds = artifact.finite_thresholds(thresholds, "thresholds")
    manifest = artifact.load_manifest(export_dir)
    graphs = manifest.of_kind(*artifact.DETECTOR_KINDS, precision=None)
    known = {c for g in graphs for c in g.classes}
    unknown = sorted(set(thresholds) - known)
    if unknown:
        raise GraphError(
            f"no detector graph in {export_dir} for {unknown}; export them with "
            "`codedresnext export CKPT --classes all` (known: " + ", ".join(sorted(known)) + ")"
        )
    updated = []
    for g in graphs:
        if precision is not None and g.precision != precision:
            continue
        if not g.classes or not all(c in thresholds for c in g.classes):
            continue
        path = _verified(export_dir, g)
        values = {c: thresholds[c] for c in g.classes}
        data = _stamped(path, values)
        write_bytes(path, data)
        g.thresholds = values
        g.sha256 = hashlib.sha256(data).hexdigest()
        updated.append(g.name)
    if precision is None:
        manifest.thresholds = dict(sorted({**(manifest.thresholds or {}), **thresholds}.items()))
        if source is not None:
            manifest.thresholds_source = source
    manifest.save(export_dir)
    return updated


def read_thresholds(export_dir: str | os.PathLike) -> dict[str, dict[str, float]]:
    """{graph name: thresholds} from the graphs' metadata, checked against the manifest."""
    export_dir = Path(export_dir)
    manifest = artifact.load_manifest(export_dir)
    out = {}
    for g in manifest.of_kind(*artifact.DETECTOR_KINDS, precision=None):
        meta = artifact.read_metadata(artifact.graph_file(export_dir, g)).get(artifact.META_THRESHOLDS)
        if meta is None:
            continue
        if g.thresholds != meta:
            raise GraphError(
                f"{g.file}: thresholds in the graph {meta} differ from the manifest "
                f"{g.thresholds}; rerun `codedresnext evaluate --graphs {export_dir}`"
            )
        out[g.name] = {k: float(v) for k, v in meta.items()}
    return out
