"""Threshold calibration on held-out data (numpy only): early-exit confidences and early reject,
on the held-out halves and fitting sample of samples.py.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...artifact import (
    FP32,
    OUTPUT_EXIT_SCORES,
    OUTPUT_FEATURES,
    OUTPUT_REJECT_DISTANCE,
    OUTPUT_REJECT_ENERGIES,
    GraphKind,
    Manifest,
    json_ready,
    load_manifest,
    reject_energies_name,
)
from ...errors import DataError, GraphError
from ..api.detector import RejectDetector
from ..api.postprocess import exit_confidence
from ..backends import DEFAULT_BACKEND
from .detector import f1_optimal_threshold, undefined_reason
from .exit_search import ExitOutcomes, greedy_search, joint_search, min_correct_for
from .exits import calibrate_exits as search_exits
from .reject_logistic import fit_class_rule
from .reject_search import calibrate_reject_blocks, calibrate_reject_threshold, rule_description
from .samples import load_fit_sample, load_heldout, no_fit


def cascade_outcome(
    exit_scores: list[np.ndarray],
    logits: np.ndarray,
    thresholds: list[float],
    seg_flops: list[float],
    exit_segments: list[int],
    confidence: str = "max",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offline cascade from precomputed outputs: (predictions, exit index, FLOPs) per sample."""
    n = logits.shape[0]
    preds = logits.argmax(1)
    exit_idx = np.full(n, len(exit_scores))
    live = np.ones(n, bool)
    for j, (s, t) in enumerate(zip(exit_scores, thresholds)):
        stop = live & (exit_confidence(s, confidence) > t)
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
    confidence: str = "max",
) -> tuple[list[float], dict]:
    """Thresholds with the least compute whose accuracy is within `max_accuracy_loss` points of the
    final classifier's on these samples: search "joint" (exit_search.joint_search, all exits together)
    or "greedy" (the baseline: first exit first, each the lowest threshold within the budget).
    candidates: threshold quantiles per exit (None: every distinct confidence)."""
    labels = np.asarray(labels)
    full_acc = 100.0 * float(np.mean(logits.argmax(1) == labels))
    o = ExitOutcomes.from_outputs(
        exit_scores, logits, labels, seg_flops, exit_segments, confidence=confidence
    ).with_grid(candidates)
    if search == "greedy":
        thresholds = greedy_search(o, min_correct_for(o, max_accuracy_loss), candidates=candidates or 200)
    elif search == "joint":
        thresholds = joint_search(o, max_accuracy_loss)["thresholds"]
    else:
        raise GraphError(f"unknown search {search!r}; use 'joint' or 'greedy'")
    preds, exit_idx, flops = cascade_outcome(
        exit_scores, logits, thresholds, seg_flops, exit_segments, confidence
    )
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


def run_reject(det: Any, images: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    """Part A and part B on every image (no early stop): distances and the detector's logits."""
    res = [det.run(images[i : i + batch], with_b_for_all=True) for i in range(0, len(images), batch)]
    return {
        "distance": np.concatenate([r.distance for r in res]),
        "scores": np.concatenate([r.all_scores for r in res]),
    }


def _part_a_energies(det: Any, images: np.ndarray, batch: int, cls: str) -> np.ndarray:
    """Part A's energies alone (what the learned rule is fitted on; part B is not needed)."""
    if OUTPUT_REJECT_ENERGIES not in det.a.backend.output_names:
        raise GraphError(
            f"the reject pair of {cls!r} outputs no energies (exported by an older version): "
            "re-export it, or calibrate with reject_rule='distance' (calibrate_directory)"
        )
    return np.concatenate(
        [det.a.run(images[i : i + batch])[OUTPUT_REJECT_ENERGIES] for i in range(0, len(images), batch)]
    )


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
    search: str = "joint",
    margin_se: float | None = None,
    reject_limit: int | None = None,
    guard: str = "cv",
    exit_confidence: str = "auto",
    reject_rule: str = "auto",
    reject_fit_images: int = 2000,
) -> dict:
    """Calibrate what DIR exports (early exits, reject pairs, reject probes) and write the manifest.

    search / guard / margin_se / exit_confidence: the exit threshold search and the confidence it
    thresholds (exit_calibration.calibrate_exits);
    reject_limit: at most N images per half for the reject probes (they run once per class).
    reject_rule / reject_fit_images: the reject score (load_fit_sample, reject_logistic.py)
    The report is strict JSON: a threshold of None means "never" (that exit stays shut)."""
    directory = Path(directory)
    manifest = load_manifest(directory)
    has_segments = manifest.has_kind(GraphKind.SEGMENT)
    has_reject = manifest.has_kind(GraphKind.REJECT) or manifest.has_kind(GraphKind.REJECT_PROBE)
    if not (has_segments or has_reject):
        raise GraphError(
            f"{directory} has no segment or reject graphs to calibrate; export with --segments "
            "(early exit) or --reject-block all (early reject)"
        )
    split = load_heldout(data, limit=limit)
    fit = None
    if has_reject:  # before the exits' minutes of work: a bad reject rule fails at once
        if reject_rule == "auto" and not _outputs_energies(manifest):
            fit = no_fit(
                "the reject graphs output no energies (exported by an older version): re-export them "
                "for the learned rule"
            )
        else:
            fit = load_fit_sample(data, reject_fit_images, rule=reject_rule)
    summary: dict[str, Any] = {"directory": str(directory), "data": str(data), "split": split["description"]}
    opts = {"backend": backend, "threads": threads, "batch": batch}
    if has_segments and not _has_exit(manifest):
        summary["early_exit_skipped"] = "no segment ends at a coded block, so there is no exit to calibrate"
    elif has_segments:
        search_opts = {"search": search, "guard": guard, "confidence": exit_confidence}
        if margin_se is not None:
            search_opts["margin_se"] = margin_se
        summary["early_exit"] = calibrate_exits(
            directory, manifest, split, max_accuracy_loss, **opts, **search_opts
        )
    if has_reject:
        summary.update(
            calibrate_rejects(
                directory, manifest, split, max_recall_loss, reject_limit=reject_limit, fit=fit, **opts
            )
        )
    if not {"early_exit", "early_reject", "early_reject_blocks"} & set(summary):
        raise GraphError(f"{directory} has no early exit or reject to calibrate; export with --segments all")
    summary = json_ready(summary)  # strict JSON: inf (never) -> null
    manifest.calibration = summary
    manifest.save(directory)
    return summary


def _outputs_energies(manifest: Manifest) -> bool:
    """Every reject part A and probe outputs the energies the learned rule reads."""
    for g in manifest.of_kind(GraphKind.REJECT, precision=FP32):
        if OUTPUT_REJECT_DISTANCE in g.output_names and OUTPUT_REJECT_ENERGIES not in g.output_names:
            return False
    for g in manifest.of_kind(GraphKind.REJECT_PROBE, precision=FP32):
        if any(reject_energies_name(j) not in g.output_names for j in g.reject_probe.blocks):
            return False
    return True


def _has_exit(manifest: Manifest) -> bool:
    """A segment that hands features on and reports an exit (the last segment's is unused)."""
    return any(
        {OUTPUT_EXIT_SCORES, OUTPUT_FEATURES} <= set(g.output_names)
        for g in manifest.of_kind(GraphKind.SEGMENT)
    )


def calibrate_exits(
    directory: Path,
    manifest: Manifest,
    split: dict,
    max_accuracy_loss: float,
    *,
    backend: str,
    threads: int | None,
    batch: int,
    **search: Any,
) -> dict:
    """Exit thresholds on the calibration half (set on the segment entries of every precision),
    report on both halves: exit_calibration.calibrate_exits (joint search by default)."""
    return search_exits(
        directory,
        manifest,
        split["calibration"],
        split["evaluation"],
        max_accuracy_loss=max_accuracy_loss,
        batch=batch,
        backend=backend,
        threads=threads,
        **search,
    )


def calibrate_rejects(
    directory: Path,
    manifest: Manifest,
    split: dict,
    max_recall_loss: float,
    *,
    backend: str,
    threads: int | None,
    batch: int,
    reject_limit: int | None = None,
    fit: dict | None = None,
) -> dict:
    """{"early_reject": the pairs' figures, "early_reject_blocks": the probes' per-block table},
    each present when the export has those graphs; thresholds, rules and the chosen block into
    `manifest`. fit: load_fit_sample's images for the learned rule (None: the distance)."""
    fit = fit or no_fit("no fitting images given")
    out = {}
    opts = {"backend": backend, "threads": threads, "batch": batch}
    rule = {**rule_description(fit["dataset"], fit["description"]), "why_not_learned": fit["why"]}
    if manifest.has_kind(GraphKind.REJECT):
        out["early_reject"] = _calibrate_pairs(directory, manifest, split, max_recall_loss, fit=fit, **opts)
        out["early_reject"]["rule"] = rule
    if manifest.has_kind(GraphKind.REJECT_PROBE):
        cal, ev = split["calibration"], split["evaluation"]
        if reject_limit and reject_limit < len(cal):  # the probes run once per class: fewer images
            cal, ev = cal.subset(np.arange(reject_limit)), ev.subset(np.arange(min(reject_limit, len(ev))))
        out["early_reject_blocks"] = calibrate_reject_blocks(
            directory,
            manifest,
            cal,
            ev,
            max_recall_loss=max_recall_loss,
            fit=fit["dataset"],
            fit_description=fit["description"],
            **opts,
        )
        out["early_reject_blocks"]["rule"] = rule
    return out


def _calibrate_pairs(
    directory: Path,
    manifest: Manifest,
    split: dict,
    max_recall_loss: float,
    *,
    backend: str,
    threads: int | None,
    batch: int,
    fit: dict,
) -> dict:
    """Per reject pair class: the reject threshold and rule (set on its entries) and the
    evaluation-half figures."""
    cal, ev = split["calibration"], split["evaluation"]
    rej = {}
    rejects = manifest.of_kind(GraphKind.REJECT, precision=None)
    for cls in sorted({c for g in rejects for c in g.classes}):
        if cls not in cal.class_names:
            raise DataError(f"class {cls!r} is not in the data's classes {list(cal.class_names)[:10]}...")
        k = list(cal.class_names).index(cls)
        reason = undefined_reason(cal.labels == k)
        if reason:  # no recall budget can be measured: the reject stays shut, calibration goes on
            for g in rejects:
                if cls in g.classes:
                    g.reject_threshold, g.reject_rule = math.inf, None
            rej[cls] = {
                "reject_threshold": None,
                "undefined": f"calibration half: {reason}; reject stays shut",
            }
            continue
        with RejectDetector.from_directory(directory, cls, backend=backend, threads=threads) as det:
            det.reject_rule = None  # refit (or drop) the rule a previous calibration left
            if fit["dataset"] is not None:
                energies = _part_a_energies(det, fit["dataset"].images, batch, cls)
                det.reject_rule = fit_class_rule(energies, fit["dataset"], cls, fit["description"])
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
                    g.reject_rule = det.reject_rule if OUTPUT_REJECT_DISTANCE in g.output_names else None
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
