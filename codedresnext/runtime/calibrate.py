"""Threshold calibration on held-out data (numpy only): early-exit confidences and early reject.

Held-out split: the data's *test* split, shuffled with a fixed seed and halved; the first half
("calibration") picks thresholds, the second ("evaluation") reports accuracy and compute. The
training split is never used (its confidences are optimistic).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import FP32, GraphKind, Manifest, load_manifest
from ..errors import DataError, GraphError
from ..thresholds import f1_optimal_threshold
from .backend import DEFAULT_BACKEND

NEVER = float("inf")


def cascade_outcome(
    exit_scores: list[np.ndarray],
    logits: np.ndarray,
    thresholds: list[float],
    seg_flops: list[float],
    exit_segments: list[int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offline cascade from precomputed outputs: (predictions, exit index, FLOPs) per sample."""
    n = logits.shape[0]
    preds = logits.argmax(1)
    exit_idx = np.full(n, len(exit_scores))
    live = np.ones(n, bool)
    for j, (s, t) in enumerate(zip(exit_scores, thresholds)):
        stop = live & (s.max(1) > t)
        preds = np.where(stop, s.argmax(1), preds)
        exit_idx[stop] = j
        live &= ~stop
    cum = np.cumsum(seg_flops)
    ends = [cum[i] for i in exit_segments] + [cum[-1]]
    return preds, exit_idx, np.asarray(ends, np.float64)[exit_idx]


def calibrate_exit_thresholds(
    exit_scores: list[np.ndarray],
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    max_accuracy_loss: float,
    seg_flops: list[float],
    exit_segments: list[int],
    candidates: int = 200,
) -> tuple[list[float], dict]:
    """Greedy, first exit first: the lowest threshold that keeps the cascade's accuracy within
    `max_accuracy_loss` points of the final classifier's, then the next exit with earlier ones fixed.
    Earlier exits save the most compute, so they get the budget first.
    """
    labels = np.asarray(labels)
    full_acc = 100.0 * float(np.mean(logits.argmax(1) == labels))
    thresholds = [NEVER] * len(exit_scores)
    for j in range(len(exit_scores)):
        conf = exit_scores[j].max(1)
        cands = np.unique(np.quantile(conf, np.linspace(0, 1, candidates)))
        best = NEVER
        for t in cands[::-1]:  # descending: stop at the first that breaks the budget
            trial = thresholds.copy()
            trial[j] = float(t)
            preds, _, _ = cascade_outcome(exit_scores, logits, trial, seg_flops, exit_segments)
            if 100.0 * float(np.mean(preds == labels)) >= full_acc - max_accuracy_loss - 1e-9:
                best = float(t)
            else:
                break
        thresholds[j] = best
    preds, exit_idx, flops = cascade_outcome(exit_scores, logits, thresholds, seg_flops, exit_segments)
    return thresholds, _report(preds, exit_idx, flops, labels, full_acc, seg_flops, len(exit_scores))


def _report(preds, exit_idx, flops, labels, full_acc, seg_flops, n_exits) -> dict:
    total = float(np.sum(seg_flops))
    acc = 100.0 * float(np.mean(preds == labels))
    mean_flops = float(np.mean(flops))
    return {
        "samples": int(len(labels)),
        "full_accuracy": full_acc,
        "cascade_accuracy": acc,
        "accuracy_loss_points": full_acc - acc,
        "mean_flops": mean_flops,
        "full_flops": total,
        "compute_saved": 1.0 - mean_flops / total if total > 0 else None,
        "exit_fractions": [float(np.mean(exit_idx == j)) for j in range(n_exits + 1)],
    }


def calibrate_reject_threshold(
    distance_pos: np.ndarray, detected_pos: np.ndarray, *, max_recall_loss: float = 1.0
) -> float:
    """Lowest reject distance threshold whose recall loss on positives is <= max_recall_loss points.

    detected_pos: the full detector's decisions on the positives (recall baseline); a positive is
    lost when it was detected but its distance exceeds the threshold.
    """
    d = np.asarray(distance_pos, np.float64).reshape(-1)
    det = np.asarray(detected_pos, bool).reshape(-1)
    if len(d) == 0:
        raise DataError("no positives to calibrate the early reject on")
    allowed = int(np.floor(max_recall_loss / 100.0 * len(d) + 1e-9))  # positives we may lose
    lost_if = np.sort(d[det])[::-1]  # detected positives' distances, descending
    if allowed >= len(lost_if):
        return float(np.min(d))
    return float(lost_if[allowed])  # reject only distances strictly above the (allowed+1)-th largest


def run_reject(det: Any, images: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    """Part A and part B on every image (no early stop): distances and the detector's logits."""
    res = [det.run(images[i : i + batch], with_b_for_all=True) for i in range(0, len(images), batch)]
    return {
        "distance": np.concatenate([r.distance for r in res]),
        "scores": np.concatenate([r.all_scores for r in res]),
    }


def evaluate_reject(
    det: Any, images: np.ndarray, positive: np.ndarray, batch: int, class_flops: float | None = None
) -> dict:
    """Recall without/with early reject, negatives rejected and compute spent on negatives."""
    out = run_reject(det, images, batch)
    rejected = out["distance"] > det.reject_threshold
    detected = out["scores"] > det.threshold
    fa, fb = det.flops_a, det.flops_b
    neg = ~positive
    rec0 = float(np.mean(detected[positive])) if positive.any() else None
    rec1 = float(np.mean((detected & ~rejected)[positive])) if positive.any() else None
    mean_neg = float(np.mean(np.where(rejected[neg], fa, fa + fb))) if (fa and fb and neg.any()) else None
    return {
        "positives": int(positive.sum()),
        "negatives": int(neg.sum()),
        "recall": rec0,
        "recall_with_reject": rec1,
        "recall_loss_points": None if rec0 is None else 100.0 * (rec0 - rec1),
        "negatives_rejected": float(np.mean(rejected[neg])) if neg.any() else None,
        "positives_rejected": float(np.mean(rejected[positive])) if positive.any() else None,
        "mean_flops_negative": mean_neg,
        "pair_flops": (fa + fb) if fa and fb else None,
        "class_graph_flops": class_flops,
        "negative_compute_vs_class_graph": mean_neg / class_flops if mean_neg and class_flops else None,
        "negative_compute_vs_pair": mean_neg / (fa + fb) if mean_neg and fa and fb else None,
    }


def heldout_split(n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return perm[: n // 2], perm[n // 2 :]


def load_heldout(data: str | os.PathLike, *, limit: int | None = None, seed: int = 0) -> dict:
    """Test split of `data` (.npz sample, folder or archive) halved into calibration/evaluation."""
    from ..data import load_dataset, load_npz_images

    p = Path(data)
    ds = load_npz_images(p) if p.suffix == ".npz" else load_dataset(data, "test")
    cal, ev = heldout_split(len(ds), seed=seed)
    if limit:
        cal, ev = cal[:limit], ev[:limit]
    return {
        "calibration": ds.subset(cal),
        "evaluation": ds.subset(ev),
        "description": f"test split of {p.name}, permutation(seed={seed}) halves: calibration "
        f"{len(cal)}, evaluation {len(ev)} images",
    }


def _run_batched(fn, images: np.ndarray, batch: int) -> list:
    return [fn(images[i : i + batch]) for i in range(0, len(images), batch)]


def calibrate_directory(
    directory: str | os.PathLike,
    data: str | os.PathLike,
    *,
    max_accuracy_loss: float = 0.5,
    max_recall_loss: float = 1.0,
    limit: int | None = None,
    batch: int = 64,
    backend: str = DEFAULT_BACKEND,
    threads: int | None = None,
) -> dict:
    """Calibrate the early exits (and reject pairs, if exported) of DIR and write the manifest."""
    directory = Path(directory)
    manifest = load_manifest(directory)
    has_segments, has_reject = manifest.has_kind(GraphKind.SEGMENT), manifest.has_kind(GraphKind.REJECT)
    if not (has_segments or has_reject):
        raise GraphError(f"{directory} has no segment or reject graphs to calibrate; export with --segments")
    split = load_heldout(data, limit=limit)
    summary: dict[str, Any] = {"data": str(data), "split": split["description"]}
    opts = {"backend": backend, "threads": threads, "batch": batch}
    if has_segments:
        summary["early_exit"] = calibrate_exits(directory, manifest, split, max_accuracy_loss, **opts)
    if has_reject:
        summary["early_reject"] = calibrate_rejects(directory, manifest, split, max_recall_loss, **opts)
    manifest.calibration = summary
    manifest.save(directory)
    return summary


def calibrate_exits(
    directory: Path,
    manifest: Manifest,
    split: dict,
    max_accuracy_loss: float,
    *,
    backend: str,
    threads: int | None,
    batch: int,
) -> dict:
    """Exit thresholds on the calibration half (set on the segment entries), report on both halves."""
    from .cascade import EarlyExitClassifier

    cal, ev = split["calibration"], split["evaluation"]
    with EarlyExitClassifier.from_directory(directory, backend=backend, threads=threads) as casc:
        if any(np.isnan(casc.segment_flops)):
            raise GraphError("segment graphs lack 'flops' in the manifest; re-export them")

        def outputs(ds):
            parts = _run_batched(casc.run_all, ds.images, batch)
            exits = [np.concatenate([p[0][j] for p in parts]) for j in range(casc.num_exits)]
            return exits, np.concatenate([p[1] for p in parts])

        ex_c, lg_c = outputs(cal)
        thresholds, rep_c = calibrate_exit_thresholds(
            ex_c,
            lg_c,
            cal.labels,
            max_accuracy_loss=max_accuracy_loss,
            seg_flops=casc.segment_flops,
            exit_segments=casc.exit_segments,
        )
        ex_e, lg_e = outputs(ev)
        preds, idx, fl = cascade_outcome(ex_e, lg_e, thresholds, casc.segment_flops, casc.exit_segments)
        full_acc = 100.0 * float(np.mean(lg_e.argmax(1) == ev.labels))
        rep_e = _report(preds, idx, fl, ev.labels, full_acc, casc.segment_flops, casc.num_exits)
        names = [casc.refs[i].name for i in casc.exit_segments]
    for g in manifest.graphs:
        if g.name in names:
            g.exit_threshold = thresholds[names.index(g.name)]
    return {
        "thresholds": dict(zip(names, thresholds)),
        "max_accuracy_loss": max_accuracy_loss,
        "calibration": rep_c,
        "evaluation": rep_e,
    }


def calibrate_rejects(
    directory: Path,
    manifest: Manifest,
    split: dict,
    max_recall_loss: float,
    *,
    backend: str,
    threads: int | None,
    batch: int,
) -> dict:
    """Per reject class: the reject threshold (set on its entries) and the evaluation-half figures."""
    from .detector import RejectDetector

    cal, ev = split["calibration"], split["evaluation"]
    rej = {}
    rejects = manifest.of_kind(GraphKind.REJECT, precision=None)
    for cls in sorted({c for g in rejects for c in g.classes}):
        if cls not in cal.class_names:
            raise DataError(f"class {cls!r} is not in the data's classes {list(cal.class_names)[:10]}...")
        k = list(cal.class_names).index(cls)
        with RejectDetector.from_directory(directory, cls, backend=backend, threads=threads) as det:
            c_out = run_reject(det, cal.images, batch)
            source = "manifest"
            if det.threshold is None:  # no fitted decision threshold (untrained export): F1-optimal here
                det.threshold = f1_optimal_threshold(c_out["scores"], cal.labels == k)[0]
                source = "F1-optimal on the calibration half"
            pos = cal.labels == k
            detected = c_out["scores"][pos] > det.threshold
            t = calibrate_reject_threshold(c_out["distance"][pos], detected, max_recall_loss=max_recall_loss)
            det.reject_threshold = t
            for g in rejects:
                if cls in g.classes:
                    g.reject_threshold = t
            class_graph = manifest.class_graph(cls, FP32)
            rej[cls] = {
                "reject_threshold": t,
                "decision_threshold": det.threshold,
                "decision_threshold_source": source,
                "evaluation": evaluate_reject(
                    det, ev.images, ev.labels == k, batch, class_graph.flops if class_graph else None
                ),
            }
    return {"classes": rej, "max_recall_loss": max_recall_loss}
