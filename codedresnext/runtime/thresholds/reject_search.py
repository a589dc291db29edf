"""Where early reject wins: every coded block's reject, measured from the reject probes (numpy + a
runtime backend; no torch).

A reject probe (export --reject-block all) is class k's graph that also outputs, at every coded
block J before the last, what the reject pair cut at J computes (part A: class path to J, all
branches at J): the codeword distance and the normalised energies. Per class and block the reject
score is the distance, or (rule "learned") a logistic score on the log energies fitted on other
images (reject_logistic.py). The reject threshold is the lowest score whose expected loss of the
detector's recall on new positives is at most `max_recall_loss` points, set on the calibration
half's positives (calibrate_reject_threshold, the rule the pairs use too); on the evaluation half
we report the negatives stopped, the recall lost and the compute spent on negatives as a fraction of the class
graph (a rejected negative costs part A, a kept one A + B; FLOPs from the export's manifest). The
block with the least mean compute on the CALIBRATION half's negatives (over classes) is chosen; the
evaluation half only reports. With the learned rule the distance's figures are reported beside it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...artifact import (
    FP32,
    OUTPUT_LOGITS,
    GraphKind,
    Manifest,
    ManifestEntry,
    RejectChoice,
    reject_distance_name,
    reject_energies_name,
)
from ...errors import DataError, GraphError
from ..api.graphs import prepare_batch, resolve_graph
from ..api.postprocess import reject_score
from ..backends import DEFAULT_BACKEND, open_backend
from .detector import f1_optimal_threshold, undefined_reason
from .reject_logistic import fit_class_rule

REJECT_RULES = ("learned", "distance")


def calibrate_reject_threshold(
    distance_pos: np.ndarray, detected_pos: np.ndarray, *, max_recall_loss: float = 1.0
) -> float:
    """Lowest reject threshold whose EXPECTED recall loss on new positives is <= max_recall_loss points.

    distance_pos: the reject scores of the calibration positives; detected_pos: the full detector's
    decisions on them (the recall baseline); a positive is lost when it was detected and its score
    exceeds the threshold. With the threshold at the m-th largest of the n_det detected scores, a
    new detected positive exceeds it with probability m / (n_det + 1) (exchangeability), so the
    expected loss is m / (n_det + 1) * n_det / n_pos of the recall: m is the largest count within
    budget, and m - 1 positives are lost on the calibration half itself. (Fitting the loss exactly
    on the calibration half, m lost, overshot the budget on new data by about one positive: 0.2
    point at 500 positives; benchmarks/results/reject_rule.md.)
    """
    d = np.asarray(distance_pos, np.float64).reshape(-1)
    det = np.asarray(detected_pos, bool).reshape(-1)
    if len(d) == 0:
        raise DataError("no positives to calibrate the early reject on")
    lost_if = np.sort(d[det])[::-1]  # detected positives' scores, descending
    n_det = len(lost_if)
    if n_det == 0:
        return float(np.min(d))  # nothing detected, nothing to lose
    m = int(np.floor(max_recall_loss / 100.0 * len(d) * (n_det + 1) / n_det + 1e-9))
    if m <= 0:
        return float("inf")  # not even the top score may go: never reject
    if m > n_det:
        return float(np.min(d))  # every detected positive may go
    return float(lost_if[m - 1])  # reject strictly above the m-th largest


def probe_outputs(
    directory: Path, entry: ManifestEntry, images: np.ndarray, batch: int, backend: str, threads: int | None
) -> dict[str, np.ndarray]:
    """{"logits": (n,), str(block): (n,) distance and f"e{block}": (n, N) energies per probed block}."""
    ref = resolve_graph(directory, entry.name)
    parts: list[dict] = []
    with open_backend(backend, ref.path, threads=threads) as be:
        inp = be.inputs[0]
        for i in range(0, len(images), batch):
            x = prepare_batch(images[i : i + batch], inp.name, inp.shape, ref.preprocessing)
            parts.append(be.infer({inp.name: x}))
    out = {"logits": np.concatenate([p[OUTPUT_LOGITS][:, 0] for p in parts])}
    for j in entry.reject_probe.blocks:
        out[str(j)] = np.concatenate([p[reject_distance_name(j)].reshape(-1) for p in parts])
        if reject_energies_name(j) in parts[0]:  # probes exported before the learned rule lack them
            out[f"e{j}"] = np.concatenate([p[reject_energies_name(j)] for p in parts])
    return out


def _energies(out: dict[str, np.ndarray], j: int, name: str) -> np.ndarray:
    if f"e{j}" not in out:
        raise GraphError(
            f"reject probe {name} does not output {reject_energies_name(j)!r} (exported by an older "
            "version): re-export it, or calibrate with reject_rule='distance' (calibrate_directory)"
        )
    return out[f"e{j}"]


def block_figures(
    dist: np.ndarray,
    scores: np.ndarray,
    positive: np.ndarray,
    rt: float,
    dt: float,
    a: float,
    b: float,
    class_flops: float,
) -> dict:
    """One block of one class on one half: what a reject at threshold `rt` does."""
    rejected = dist > rt
    detected = scores > dt
    neg = ~positive
    rec0 = float(np.mean(detected[positive])) if positive.any() else float("nan")
    rec1 = float(np.mean((detected & ~rejected)[positive])) if positive.any() else float("nan")
    mean_neg = float(np.mean(np.where(rejected[neg], a, a + b))) if neg.any() else float("nan")
    return {
        "negatives_stopped": float(np.mean(rejected[neg])) if neg.any() else float("nan"),
        "recall_loss_points": 100.0 * (rec0 - rec1),
        "negative_compute_vs_class_graph": mean_neg / class_flops,
    }


def _decision_threshold(manifest: Manifest, cls: str, scores: np.ndarray, pos: np.ndarray):
    """The detector's logit threshold: from the class graph (evaluate writes it) or the probe, else
    F1-optimal on the calibration half (an export never evaluated)."""
    for g in manifest.of_kind(GraphKind.CLASS, GraphKind.REJECT_PROBE):
        th = g.thresholds or {}
        if g.classes == [cls] and cls in th:
            return float(th[cls]), f"manifest ({g.name})"
    return f1_optimal_threshold(scores, pos)[0], "F1-optimal on the calibration half"


def rule_description(fit: Any, fit_description: str | None) -> dict:
    """What the reject score was, for the report."""
    if fit is None:
        return {"rule": "distance", "score": "||v - w_k|| of the normalised energies at the block"}
    return {
        "rule": "learned",
        "score": "per class and block: logistic score on log(v + eps) of the normalised energies",
        "fitted_on": fit_description,
    }


def _block_row(sc, se, oc, oe, pc, pe, max_recall_loss: float, *, dt, a, b, class_flops) -> dict:
    """Threshold on the calibration half's positives, figures on both halves, for one score."""
    rt = calibrate_reject_threshold(sc[pc], oc["logits"][pc] > dt, max_recall_loss=max_recall_loss)
    return {
        "reject_threshold": rt,
        "calibration": block_figures(sc, oc["logits"], pc, rt, dt, a, b, class_flops),
        "evaluation": block_figures(se, oe["logits"], pe, rt, dt, a, b, class_flops),
    }


def _probe_class(
    directory: Path,
    manifest: Manifest,
    g: ManifestEntry,
    cal: Any,
    ev: Any,
    fit: Any,
    *,
    max_recall_loss: float,
    fit_description: str | None,
    run: tuple[int, str, int | None],
) -> dict:
    """One probed class: per coded block, the reject threshold and its figures on both halves
    (beside the codeword distance's where a rule is learned); stamps them on the probe's twins.
    run: (batch, backend, threads) for probe_outputs."""
    cls = g.classes[0]
    if cls not in cal.class_names:
        raise DataError(f"class {cls!r} is not in the data's classes {list(cal.class_names)[:10]}...")
    k = list(cal.class_names).index(cls)
    reason = undefined_reason(cal.labels == k)
    if reason:  # no threshold can be set: this class's rejects stay shut, the search goes on
        for twin in manifest.of_kind(GraphKind.REJECT_PROBE, precision=None):
            if twin.classes == g.classes:
                twin.reject_probe.reject_thresholds = {str(j): math.inf for j in g.reject_probe.blocks}
                twin.reject_probe.reject_rules = None
        return {"undefined": f"calibration half: {reason}; its rejects stay shut (null)"}
    pairs = g.reject_probe.pair_flops
    if not pairs:
        raise GraphError(f"reject probe {g.name} has no pair_flops in the manifest; re-export it")
    floor = manifest.reject_floor
    class_flops = (floor.class_graph_flops if floor else None) or g.flops
    oc = probe_outputs(directory, g, cal.images, *run)
    oe = probe_outputs(directory, g, ev.images, *run)
    of = probe_outputs(directory, g, fit.images, *run) if fit is not None else None
    pc, pe = cal.labels == k, ev.labels == k
    dt, source = _decision_threshold(manifest, cls, oc["logits"], pc)
    rows, rules = {}, {}
    for j in g.reject_probe.blocks:
        a, b = float(pairs[str(j)]["a"]), float(pairs[str(j)]["b"])
        cost = {"dt": dt, "a": a, "b": b, "class_flops": class_flops}
        sc, se = oc[str(j)], oe[str(j)]  # the codeword distance
        if of is not None:
            rules[str(j)] = fit_class_rule(_energies(of, j, g.name), fit, cls, fit_description)
            dist_row = _block_row(sc, se, oc, oe, pc, pe, max_recall_loss, **cost)
            sc = reject_score(rules[str(j)], _energies(oc, j, g.name))
            se = reject_score(rules[str(j)], _energies(oe, j, g.name))
        rows[str(j)] = {
            **_block_row(sc, se, oc, oe, pc, pe, max_recall_loss, **cost),
            "part_a_vs_class_graph": a / class_flops,
        }
        if of is not None:
            rows[str(j)]["distance_rule"] = dist_row
    for twin in manifest.of_kind(GraphKind.REJECT_PROBE, precision=None):  # every precision
        if twin.classes == g.classes:
            twin.reject_probe.reject_thresholds = {j: r["reject_threshold"] for j, r in rows.items()}
            twin.reject_probe.reject_rules = dict(rules) or None
    return {"decision_threshold": dt, "decision_threshold_source": source, "blocks": rows}


def _block_table(per_class: dict[str, dict], blocks: list[int], learned: bool) -> list[dict]:
    """Per coded block, the figures averaged over the probed classes that have them (a class without
    positives or negatives in the calibration half has none); DataError when no class has."""
    defined = [c for c in per_class.values() if "blocks" in c]
    if not defined:
        raise DataError(
            "no probed class has both positives and negatives in the calibration half, so no reject "
            "block can be chosen: calibrate on more images (or data holding the probed classes)"
        )

    def mean(half: str, key: str, j: int, rule: str | None = None) -> float:
        """Over the classes with figures; rule "distance_rule": the distance's beside a learned rule."""
        rows = [c["blocks"][str(j)] for c in defined]
        return float(np.mean([(r[rule] if rule else r)[half][key] for r in rows]))

    table = [
        {
            "block": j,
            "part_a_vs_class_graph": float(
                np.mean([c["blocks"][str(j)]["part_a_vs_class_graph"] for c in defined])
            ),
            "calibration_negative_compute_vs_class_graph": mean(
                "calibration", "negative_compute_vs_class_graph", j
            ),
            **{
                key: mean("evaluation", key, j)
                for key in ("negatives_stopped", "recall_loss_points", "negative_compute_vs_class_graph")
            },
        }
        for j in blocks
    ]
    if learned:  # the codeword distance's figures beside the learned rule's
        for row in table:
            for key in ("negatives_stopped", "recall_loss_points"):
                row[f"distance_{key}"] = mean("evaluation", key, row["block"], "distance_rule")
    return table


def calibrate_reject_blocks(
    directory: str | os.PathLike,
    manifest: Manifest,
    cal: Any,
    ev: Any,
    *,
    max_recall_loss: float = 1.0,
    batch: int = 64,
    backend: str = DEFAULT_BACKEND,
    threads: int | None = None,
    fit: Any = None,
    fit_description: str | None = None,
) -> dict:
    """Per class and coded block: reject threshold, negatives stopped, recall loss and compute on
    negatives; the chosen block. Writes each probe's thresholds (and rules) and the choice into
    `manifest`. fit: images (with labels and class_names) to fit the learned rule on; None: the
    codeword distance is the reject score."""
    directory = Path(directory)
    probes = manifest.of_kind(GraphKind.REJECT_PROBE, precision=FP32)
    if not probes:
        raise GraphError(f"{directory} has no reject probes; export with --reject-block all")
    per_class = {
        g.classes[0]: _probe_class(
            directory,
            manifest,
            g,
            cal,
            ev,
            fit,
            max_recall_loss=max_recall_loss,
            fit_description=fit_description,
            run=(batch, backend, threads),
        )
        for g in probes
    }
    table = _block_table(per_class, [int(j) for j in probes[0].reject_probe.blocks], fit is not None)
    chosen = min(table, key=lambda r: r["calibration_negative_compute_vs_class_graph"])["block"]
    manifest.reject_choice = RejectChoice(
        block=chosen,
        criterion=f"least mean compute on the calibration half's negatives at <= {max_recall_loss} point "
        "recall loss, over the probed classes",
        export=f"codedresnext export CKPT --reject-block {chosen}",
    )
    floor = manifest.reject_floor
    return {
        "chosen_block": chosen,
        "rule": rule_description(fit, fit_description),
        "max_recall_loss": max_recall_loss,
        "classes": sorted(per_class),
        "blocks": table,
        "trunk_floor": floor.to_dict() if floor else None,
        "per_class": per_class,
        "note": "means over classes; negatives stopped, recall loss and compute on the evaluation half",
    }
