"""Early-exit benchmark: accuracy, compute and throughput of the calibrated cascade on held-out images.

Uses the evaluation half of the held-out test split (runtime/thresholds/calibrate.py: the calibration half
chose the thresholds). Throughput compares the cascade with the same cascade that never exits,
on the same real batches, interleaved per call; samples/s come from the median per-sample time of
the calls (robust to a loaded machine).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...artifact import json_ready
from ..api.cascade import EarlyExitClassifier
from ..thresholds.samples import load_heldout


def _predict_all(casc: EarlyExitClassifier, images: np.ndarray, batch: int):
    res = [casc.predict(images[i : i + batch]) for i in range(0, len(images), batch)]
    return (
        np.concatenate([r.predictions for r in res]),
        np.concatenate([r.flops for r in res]),
        np.concatenate([r.exit_index for r in res]),
    )


def _interleaved_sps(models: dict[str, EarlyExitClassifier], images: np.ndarray, batch: int, duration: float):
    """{name: samples/s} from the median per-sample time, the models alternating call by call."""
    chunks = [images[i : i + batch] for i in range(0, len(images) - batch + 1, batch)] or [images]
    names = list(models)
    per_sample: dict[str, list[float]] = {n: [] for n in names}
    t_end = time.perf_counter() + duration
    k = 0
    while time.perf_counter() < t_end or k < 4:
        x = chunks[k % len(chunks)]
        for name in names if k % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            models[name].predict(x)
            per_sample[name].append((time.perf_counter() - t0) / len(x))
        k += 1
    return {n: 1.0 / float(np.median(v)) for n, v in per_sample.items()}


def batch1_latency(
    models: dict[str, EarlyExitClassifier], images: np.ndarray, duration: float, max_calls: int = 2000
) -> dict[str, dict[str, float]]:
    """{name: {"median", "p99" (ms), "calls"}} of one image per call (the edge case), the models
    alternating image by image over the held-out images: the cascade's latency depends on where
    each image exits, so the distribution is over real images, bounded by `duration` / `max_calls`."""
    names = list(models)
    lat: dict[str, list[float]] = {n: [] for n in names}
    t_end = time.perf_counter() + duration
    k = 0
    while (time.perf_counter() < t_end or k < 8) and k < max_calls:
        x = images[k % len(images)][None]
        for name in names if k % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            models[name].predict(x)
            lat[name].append(time.perf_counter() - t0)
        k += 1
    return {
        n: {"median": 1e3 * float(np.median(v)), "p99": 1e3 * float(np.percentile(v, 99)), "calls": len(v)}
        for n, v in lat.items()
    }


def bench_early_exit(
    directory: Path,
    data: str,
    *,
    backend: str,
    options: dict,
    batch: int,
    duration: float,
    limit: int,
    full_flops: float | None,
) -> dict:
    """Accuracy, mean FLOPs per sample and throughput of the cascade at its calibrated thresholds."""
    ev = load_heldout(data, limit=limit)["evaluation"]
    with EarlyExitClassifier.from_directory(directory, backend=backend, **options) as casc:
        never_thresholds = [float("inf")] * casc.num_exits
        with EarlyExitClassifier.from_directory(
            directory, backend=backend, thresholds=never_thresholds, **options
        ) as never:
            preds, flops, exits = _predict_all(casc, ev.images, batch)
            full_preds = _predict_all(never, ev.images, batch)[0]
            sps = _interleaved_sps({"cascade": casc, "no-exit": never}, ev.images, batch, duration)
            lat1 = batch1_latency({"cascade": casc, "no-exit": never}, ev.images, duration)
        total = full_flops or float(np.nansum(casc.segment_flops))
        acc, full_acc = float(np.mean(preds == ev.labels)), float(np.mean(full_preds == ev.labels))
        return {
            # `calibrate` set every exit's threshold (+inf is a valid result: an exit it keeps shut)
            "calibrated": all(
                casc.refs[i].entry is not None and casc.refs[i].entry.exit_threshold is not None
                for i in casc.exit_segments
            ),
            "thresholds": json_ready(casc.thresholds),  # null: that exit never takes a sample
            "samples": int(len(ev)),
            "batch": batch,
            "accuracy": acc,
            "full_accuracy": full_acc,
            "accuracy_loss_points": 100.0 * (full_acc - acc),
            "mean_flops_per_sample": float(flops.mean()),
            "full_flops": total,
            "compute_saved": float(1.0 - flops.mean() / total) if total else None,
            "exit_fractions": [float(np.mean(exits == j)) for j in range(casc.num_exits + 1)],
            "throughput_sps": sps["cascade"],
            "no_exit_throughput_sps": sps["no-exit"],
            "speedup_vs_no_exit": sps["cascade"] / sps["no-exit"],
            "batch1_latency_ms": lat1["cascade"],  # one image per call (edge devices)
            "no_exit_batch1_latency_ms": lat1["no-exit"],
        }
