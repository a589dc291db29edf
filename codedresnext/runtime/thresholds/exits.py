"""Early-exit calibration of an export directory: segment outputs on both held-out halves -> joint
threshold search (exit_search) -> thresholds into every precision's segments, the compute/accuracy
curve, and which exits pay for themselves (numpy + a runtime backend; no torch). A threshold of +inf
means the exit stays shut (calibrate stores it as null: the report and manifest are strict JSON).

compute_saved is 1 - (mean FLOPs per sample) / (FLOPs of the whole chain), each sample charged the
manifest FLOPs of the segments it ran, as EarlyExitClassifier spends them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ...artifact import (
    EXIT_CONFIDENCES,
    FP32,
    GraphKind,
    Manifest,
    ManifestEntry,
    check_exit_confidence,
    graph_file,
)
from ...errors import GraphError
from ..api.cascade import EarlyExitClassifier
from ..backends import open_backend
from .exit_guard import CV_FOLDS, DEFAULT_MARGIN_SE, guarded_search, tradeoff_curve
from .exit_search import ExitOutcomes, exit_values, greedy_search, min_correct_for, summarise

CURVE_BUDGETS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
GRID = 200  # threshold candidates per exit (quantiles); the exact search over-fits the calibration half


def cascade_outputs(casc: Any, images: np.ndarray, batch: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Every segment on every image: ([exit scores (n, K) per exit], final logits (n, K))."""
    parts = [casc.run_all(images[i : i + batch]) for i in range(0, len(images), batch)]
    exits = [np.concatenate([p[0][j] for p in parts]) for j in range(casc.num_exits)]
    return exits, np.concatenate([p[1] for p in parts])


def measure_handover(full: Any, casc: Any, x: np.ndarray, *, reps: int = 9) -> dict:
    """What the cuts themselves cost (graph calls + hand-over copies): the segment chain (no exit
    taken) against the full graph on one batch, interleaved; minimum times (robust to a loaded
    machine), as a fraction of the full graph's time per cut."""
    feed = casc._first_feed(x)
    full_feed = {full.input_names[0]: next(iter(feed.values()))}
    full.infer(full_feed)
    casc.run_all(x)
    calls = {"full": lambda: full.infer(full_feed), "chain": lambda: casc.run_all(x)}
    times: dict[str, list[float]] = {k: [] for k in calls}
    for r in range(reps):
        for which in list(calls) if r % 2 == 0 else list(calls)[::-1]:
            t0 = time.perf_counter()
            calls[which]()
            times[which].append(time.perf_counter() - t0)
    ratio = min(times["chain"]) / min(times["full"]) - 1.0
    cuts = max(len(casc.segments) - 1, 1)
    return {
        "batch": int(len(x)),
        "reps": reps,
        "full_ms_min": 1e3 * min(times["full"]),
        "chain_ms_min": 1e3 * min(times["chain"]),
        "per_boundary": max(ratio, 0.0) / cuts,
        "per_boundary_raw": ratio / cuts,
        "definition": "(min chain time / min full graph time - 1) / number of cuts, over interleaved "
        "calls on one batch; clamped at 0 for the exit rule",
    }


def decoder_flops(manifest: Manifest, block: int | None) -> float:
    """Element-wise FLOPs of one early decoder per sample (distance to K codewords + softmax): the
    manifest's FLOPs count Conv/Gemm only, so the rule adds these explicitly (0 if unknown)."""
    model = manifest.model
    cfg = (model.config if model else None) or {}
    if block is None or not cfg.get("stages"):
        return 0.0
    k = int(model.num_classes)
    first = 0
    for s in cfg["stages"]:
        if block < first + s["depth"]:
            return float(3 * k * s["branches"] + s["branches"] + 5 * k)
        first += s["depth"]
    raise GraphError(f"block {block} is not in the model")


def _segment_key(g: ManifestEntry):
    """Identity of a segment across precisions: its cascade index (fp16 twins share it)."""
    return g.segment.index if g.segment is not None else g.name.removesuffix("_fp16")


def _write_thresholds(
    manifest: Manifest, refs: list, exit_segments: list[int], thresholds: list[float], confidence: str
) -> list[str]:
    """Each exit's threshold and confidence rule into its segment entry of EVERY precision (fp16
    twins share the index)."""
    by_key = {_segment_key(refs[si].entry): t for si, t in zip(exit_segments, thresholds)}
    written = []
    for g in manifest.of_kind(GraphKind.SEGMENT, precision=None):
        if _segment_key(g) in by_key:
            g.exit_threshold = float(by_key[_segment_key(g)])
            g.exit_threshold_calibrated_on = "fp32 segments"
            g.exit_confidence = confidence
            written.append(g.name)
    return written


def _pick_confidence(
    outputs: dict, search: str, guard: str, budget: float, margin_se: float
) -> tuple[str, dict, dict]:
    """(rule, its search result, per-rule summary): of `outputs` ({rule: ExitOutcomes}, first rule
    wins ties), the rule whose searched thresholds save the most compute on the CALIBRATION half
    (each search already holds the budget its guard asks for)."""
    rules = tuple(outputs)
    found, summary = {}, {}
    for rule in rules:
        grid = outputs[rule].with_grid(GRID)
        found[rule] = guarded_search(grid, budget, search=search, guard=guard, margin_se=margin_se)
        summary[rule] = {
            "calibration": summarise(outputs[rule], found[rule]["thresholds"]),
            "searched_budget": found[rule].get("searched_budget", budget),
        }
    best = max(rules, key=lambda r: (summary[r]["calibration"]["compute_saved"], r == rules[0]))
    return best, found[best], summary


def calibrate_exits(
    directory: Path,
    manifest: Manifest,
    cal: Any,
    ev: Any,
    *,
    max_accuracy_loss: float,
    batch: int,
    backend: str,
    threads: int | None,
    search: str = "joint",
    guard: str = "cv",
    margin_se: float = DEFAULT_MARGIN_SE,
    curve_budgets: tuple[float, ...] = CURVE_BUDGETS,
    confidence: str = "auto",
) -> dict:
    """Calibrate the exits of `directory`'s fp32 segments; updates `manifest` in place.

    guard (joint search only): "cv" picks the price of accuracy on the joint search's Lagrangian
    frontier by CV_FOLDS-fold cross-validation in the calibration half
    (exit_search.search_cross_validated), "se" keeps the calibration loss plus
    `margin_se` standard errors within the budget, "none" fits the budget exactly on that half.
    confidence: "max" | "margin" (postprocess.exit_confidence), or "auto": both searched, the one
    saving more compute on the calibration half kept (ties: "max")."""
    flops, segs, refs, out_cal, out_ev, handover = _cascade_outputs_both(
        directory, manifest, cal, ev, batch=batch, backend=backend, threads=threads
    )
    asked = EXIT_CONFIDENCES if confidence == "auto" else (confidence,)
    rules = tuple(check_exit_confidence(r, "exit_confidence") for r in asked)
    by_rule = {r: ExitOutcomes.from_outputs(*out_cal, cal.labels, flops, segs, confidence=r) for r in rules}
    rule, found, per_rule = _pick_confidence(by_rule, search, guard, max_accuracy_loss, margin_se)
    o_cal = by_rule[rule]
    o_ev = ExitOutcomes.from_outputs(*out_ev, ev.labels, flops, segs, confidence=rule)
    grid = o_cal.with_grid(GRID)
    th = found["thresholds"]
    names = [refs[i].name for i in segs]
    written = _write_thresholds(manifest, refs, segs, th, rule)
    total = float(np.sum(flops))
    blocks = [(refs[i].entry.blocks or [None, None])[1] for i in segs]
    dec = [decoder_flops(manifest, b) / total for b in blocks]
    searched = found.get("searched_budget", max_accuracy_loss)
    budget = max_accuracy_loss if searched is None else searched  # None: cross-validation allowed no exit
    values = exit_values(grid, budget, decoder_cost=dec, handover_cost=handover["per_boundary"])
    # the baseline under the same guard: greedy at the searched budget (no exit where none was allowed)
    greedy_th = (
        [float("inf")] * len(th) if searched is None else greedy_search(grid, min_correct_for(grid, budget))
    )
    search_record = _search_record(found, search, guard, margin_se, searched, greedy_th, o_cal, o_ev)
    return {
        "thresholds": dict(zip(names, th)),
        "confidence": {
            "chosen": rule,
            "asked": confidence,
            "candidates": per_rule,
            "rule": "the confidence whose searched thresholds save the most compute on the calibration "
            "half; max = top exit score, margin = top score minus the runner-up",
        },
        "written_to": written,
        "max_accuracy_loss": max_accuracy_loss,
        "search": search_record,
        "calibration": _report(o_cal, th),
        "evaluation": _report(o_ev, th),
        "curve": tradeoff_curve(grid, o_ev, curve_budgets),  # fitted exactly: shows the over-fitting
        "exits": _per_exit(o_cal, o_ev, th, names, blocks, dec, values),
        "exit_rule": {
            **values,
            "recommended_cuts": [blocks[j] for j in values["kept"]],
            "handover": handover,
            "rule": "keep exit j when the net compute saved (compute it saves on the samples it stops, "
            "minus its decoder on every sample reaching it and the measured hand-over on every sample "
            "going past it) is higher with it than without it, thresholds re-searched each time",
        },
    }


def _search_record(
    found: dict,
    search: str,
    guard: str,
    margin_se: float,
    searched: float | None,
    greedy_th: list,
    o_cal: ExitOutcomes,
    o_ev: ExitOutcomes,
) -> dict:
    """How the thresholds were searched (method, guard, cross-validation trace) and the greedy
    baseline under the same guard, scored on both halves."""
    return {
        "method": found["method"],
        "threshold_candidates_per_exit": GRID,
        "guard": guard if search == "joint" else "none",
        "margin_standard_errors": margin_se if guard == "se" else None,
        "cross_validation_folds": CV_FOLDS if guard == "cv" and search == "joint" else None,
        "cross_validation": found.get("cross_validation"),
        "searched_budget": searched,
        "price": found.get("price"),
        "loss_standard_error_calibration": found.get("loss_standard_error"),
        "greedy_baseline": {
            "thresholds": greedy_th,
            "calibration": summarise(o_cal, greedy_th),
            "evaluation": summarise(o_ev, greedy_th),
        },
        "compute_fraction_by_start": found.get("compute_fraction_by_start"),
    }


def _cascade_outputs_both(
    directory: Path, manifest: Manifest, cal: Any, ev: Any, *, batch: int, backend: str, threads: int | None
) -> tuple:
    """Every segment on both held-out halves, and the measured hand-over cost against the full graph:
    (segment FLOPs, exit segments, segment refs, calibration outputs, evaluation outputs, hand-over)."""
    full = manifest.first(GraphKind.FULL, FP32)
    if full is None:
        raise GraphError(f"{directory} has no fp32 full graph to measure the hand-over against; re-export")
    with EarlyExitClassifier.from_directory(directory, backend=backend, threads=threads) as casc:
        if any(np.isnan(casc.segment_flops)):
            raise GraphError("segment graphs lack 'flops' in the manifest; re-export them")
        if casc.num_exits == 0:
            raise GraphError("these segments have no early exit (no segment ends at a coded block)")
        flops, segs, refs = casc.segment_flops, casc.exit_segments, casc.refs
        out_cal = cascade_outputs(casc, cal.images, batch)
        out_ev = cascade_outputs(casc, ev.images, batch)
        with open_backend(backend, graph_file(directory, full), threads=threads) as full_be:
            handover = measure_handover(full_be, casc, cal.images[:batch])
    return flops, segs, refs, out_cal, out_ev, handover


def _report(o: ExitOutcomes, th: list[float]) -> dict:
    e = o.exit_index(th)
    corr, fl = o.score(th)
    total = float(o.ends[-1])
    return {
        "samples": o.n,
        "full_accuracy": 100.0 * o.full_correct() / o.n,
        "cascade_accuracy": 100.0 * corr / o.n,
        "accuracy_loss_points": 100.0 * (o.full_correct() - corr) / o.n,
        "mean_flops": fl / o.n,
        "full_flops": total,
        "compute_saved": 1.0 - fl / (o.n * total),
        "exit_fractions": [float(np.mean(e == j)) for j in range(o.m + 1)],
    }


def _per_exit(o_cal, o_ev, th, names, blocks, dec, values) -> list[dict]:
    e_cal, e_ev = o_cal.exit_index(th), o_ev.exit_index(th)
    total = float(o_cal.ends[-1])
    out = []
    for j, name in enumerate(names):
        stop = e_ev == j
        out.append(
            {
                "exit": j,
                "segment": name,
                "block": blocks[j],
                "threshold": th[j],
                "stopped_calibration": float(np.mean(e_cal == j)),
                "stopped_evaluation": float(np.mean(stop)),
                "accuracy_of_stopped_evaluation": float(np.mean(o_ev.correct[stop, j]))
                if stop.any()
                else None,
                "compute_saved_evaluation": float(np.mean(stop)) * (1.0 - float(o_ev.ends[j]) / total),
                "decoder_cost": dec[j],
                "contribution": values["contribution_with_all_exits"].get(str(j)),
                "worth_keeping": j in values["kept"],
            }
        )
    return out
