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

from ..artifact import load_manifest, save_manifest
from ..errors import DataError, GraphError

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
    candidates: int | None = 200,
    search: str = "joint",
) -> tuple[list[float], dict]:
    """Thresholds with the least compute whose accuracy is within `max_accuracy_loss` points of the
    final classifier's on these samples: search "joint" (exit_search.joint_search, all exits together)
    or "greedy" (the baseline: first exit first, each the lowest threshold within the budget).
    candidates: threshold quantiles per exit (None: every distinct confidence)."""
    from .exit_search import ExitOutcomes, greedy_search, joint_search, min_correct_for

    labels = np.asarray(labels)
    full_acc = 100.0 * float(np.mean(logits.argmax(1) == labels))
    o = ExitOutcomes.from_outputs(exit_scores, logits, labels, seg_flops, exit_segments).with_grid(candidates)
    if search == "greedy":
        thresholds = greedy_search(o, min_correct_for(o, max_accuracy_loss), candidates=candidates or 200)
    elif search == "joint":
        thresholds = joint_search(o, max_accuracy_loss)["thresholds"]
    else:
        raise GraphError(f"unknown search {search!r}; use 'joint' or 'greedy'")
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


def f1_optimal_threshold(scores: np.ndarray, positive: np.ndarray) -> float:
    """Logit threshold maximising F1 (decision: score > threshold)."""
    order = np.argsort(-scores)
    s, y = scores[order], positive[order].astype(np.float64)
    tp = np.cumsum(y)
    k = np.arange(1, len(s) + 1)
    f1 = 2 * tp / (k + y.sum())
    i = int(np.argmax(f1))
    return float((s[i] + s[i + 1]) / 2) if i + 1 < len(s) else float(s[i] - 1e-6)


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
    backend: str = "ort",
    threads: int | None = None,
    search: str = "joint",
    margin_se: float | None = None,
    reject_limit: int | None = None,
    guard: str = "cv",
) -> dict:
    """Calibrate the early exits (and reject pairs, if exported) of DIR and write the manifest."""
    from .detector import RejectDetector
    from .exit_calibration import calibrate_exits
    from .reject_search import calibrate_reject_blocks

    directory = Path(directory)
    manifest = load_manifest(directory)
    kinds = {g.get("kind") for g in manifest["graphs"]}
    if not {"segment", "reject", "reject-probe"} & kinds:
        raise GraphError(
            f"{directory} has no segment or reject graphs to calibrate; export with --segments "
            "(early exit) or --reject-block all (early reject)"
        )
    split = load_heldout(data, limit=limit)
    cal, ev = split["calibration"], split["evaluation"]
    summary: dict[str, Any] = {"directory": str(directory), "data": str(data), "split": split["description"]}
    exits = any(  # a segment that hands features on and reports an exit (the last one's is unused)
        {"exit_scores", "features"} <= {o.get("name") for o in g.get("outputs") or []}
        for g in manifest["graphs"]
        if g.get("kind") == "segment"
    )
    if "segment" in kinds and not exits:
        summary["early_exit_skipped"] = "no segment ends at a coded block, so there is no exit to calibrate"
    if "segment" in kinds and exits:
        summary["early_exit"] = calibrate_exits(
            directory,
            manifest,
            cal,
            ev,
            max_accuracy_loss=max_accuracy_loss,
            batch=batch,
            backend=backend,
            threads=threads,
            search=search,
            guard=guard,
            **({} if margin_se is None else {"margin_se": margin_se}),
        )
    if "reject" in kinds:
        rej = {}
        classes = {c for g in manifest["graphs"] if g.get("kind") == "reject" for c in g.get("classes", [])}
        for cls in sorted(classes):
            det = RejectDetector.from_directory(directory, cls, backend=backend, threads=threads)
            if cls not in cal.class_names:
                raise DataError(f"class {cls!r} is not in the data's classes {list(cal.class_names)[:10]}...")
            k = list(cal.class_names).index(cls)
            c_out = run_reject(det, cal.images, batch)
            source = "manifest"
            if det.threshold is None:  # no fitted decision threshold (untrained export): F1-optimal here
                det.threshold = f1_optimal_threshold(c_out["scores"], cal.labels == k)
                source = "F1-optimal on the calibration half"
            pos = cal.labels == k
            detected = c_out["scores"][pos] > det.threshold
            t = calibrate_reject_threshold(c_out["distance"][pos], detected, max_recall_loss=max_recall_loss)
            det.reject_threshold = t
            for g in manifest["graphs"]:
                if g.get("kind") == "reject" and cls in g.get("classes", []):
                    g["reject_threshold"] = t
            class_flops = next(
                (
                    g.get("flops")
                    for g in manifest["graphs"]
                    if g.get("kind") == "class"
                    and g.get("classes") == [cls]
                    and g.get("precision", "fp32") == "fp32"
                ),
                None,
            )
            rej[cls] = {
                "reject_threshold": t,
                "decision_threshold": det.threshold,
                "decision_threshold_source": source,
                "evaluation": evaluate_reject(det, ev.images, ev.labels == k, batch, class_flops),
            }
        summary["early_reject"] = {"classes": rej, "max_recall_loss": max_recall_loss}
    if "reject-probe" in kinds:
        rcal, rev = cal, ev
        if reject_limit and reject_limit < len(cal):  # the probes run once per class: fewer images
            rcal, rev = cal.subset(np.arange(reject_limit)), ev.subset(np.arange(min(reject_limit, len(ev))))
        summary["early_reject_blocks"] = calibrate_reject_blocks(
            directory,
            manifest,
            rcal,
            rev,
            max_recall_loss=max_recall_loss,
            batch=batch,
            backend=backend,
            threads=threads,
        )
    if not {"early_exit", "early_reject", "early_reject_blocks"} & set(summary):
        raise GraphError(f"{directory} has no segment or reject graphs to calibrate; export with --segments")
    manifest["calibration"] = summary
    save_manifest(directory, manifest)
    return summary
