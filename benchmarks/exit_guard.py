"""How well each exit-threshold guard keeps the accuracy budget on NEW data, over many halvings.

    .venv/bin/python benchmarks/exit_guard.py [--checkpoint models/demo/model.pt] [--splits 20]

`calibrate` fits exit thresholds on one half of the test split and reports the other half; one
halving is one draw, and a budget met (or missed) on it says little. This runs every segment of a
`--segments all` export on all test images once, then for each of `--splits` seeded halvings fits
the thresholds on the calibration half with each guard (cv with the default and other fold counts,
se, none; joint search, and the greedy baseline at the cv guard's searched budget) and scores the
evaluation half: the median and mean loss, how often it exceeds the budget, the compute saved and
how often no exit was taken; plus the ceiling (`_oracle`). Confidences as `calibrate --exit-confidence`.
Writes benchmarks/results/exit_guard.{json,md}.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from demo_common import RESULTS, demo_parser, shown
from history import with_history


def _markdown(res: dict) -> str:
    lines = [
        "# Exit-threshold guards on new data, measured",
        "",
        f"Checkpoint {res['checkpoint']} (`--segments all`, {res['exits']} exits); test split of "
        f"{res['data']} ({res['images']} images) halved {res['splits']} times "
        f"(seeds 0..{res['splits'] - 1}), "
        f"thresholds fitted on the calibration half, scored on the evaluation half; budget "
        f"{res['budget']} points. Command: `{res['command']}` ({res['seconds']:.0f} s).",
        "",
        "| confidence | guard | eval loss median (pt) | eval loss mean | over budget | "
        "compute saved median | saved mean | no exit taken | calibration loss median |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['confidence']} | {r['guard']} | {r['eval_loss_median']:.2f} | {r['eval_loss_mean']:.2f} | "
            f"{r['over_budget']}/{res['splits']} | {100 * r['saved_median']:.1f}% | "
            f"{100 * r['saved_mean']:.1f}% | {r['no_exit']}/{res['splits']} | {r['cal_loss_median']:.2f} |"
        )
    lines += [
        "",
        f"Ceiling: if every image left at the first exit that predicts what the final classifier does "
        f"(no accuracy lost), the cascade would save {100 * res['oracle_compute_saved']:.1f}% (all "
        f"{res['images']} images): what a perfect exit confidence could reach with these decoders.",
        "",
    ]
    return "\n".join(lines)


def _outcomes(exits: list[np.ndarray], logits: np.ndarray, labels: np.ndarray, casc, idx, rule: str):
    from codedresnext.runtime.thresholds.exit_search import ExitOutcomes

    return ExitOutcomes.from_outputs(
        [e[idx] for e in exits],
        logits[idx],
        labels[idx],
        casc.segment_flops,
        casc.exit_segments,
        confidence=rule,
    )


def _oracle(exits: list[np.ndarray], logits: np.ndarray, seg_flops, exit_segments) -> float:
    """Compute saved if every sample left at the first exit that predicts what the final classifier
    does (no accuracy lost): the ceiling of any exit confidence on these decoders."""
    ends = np.cumsum(np.asarray(seg_flops, np.float64))
    final = logits.argmax(1)
    spent = np.full(len(final), ends[-1])
    for j in reversed(range(len(exits))):
        spent = np.where(exits[j].argmax(1) == final, ends[exit_segments[j]], spent)
    return float(1.0 - spent.mean() / ends[-1])


def _fits(grid, budget: float) -> dict[str, list[float]]:
    """Thresholds per guard, as `calibrate --guard G` would fit them on this calibration half."""
    from codedresnext.runtime.thresholds.exit_guard import CV_FOLDS, guarded_search, search_cross_validated
    from codedresnext.runtime.thresholds.exit_search import greedy_search, min_correct_for

    cv = guarded_search(grid, budget, guard="cv")
    out = {f"cv ({CV_FOLDS} folds, default)": cv["thresholds"]}
    for k in (3, 5, 10):
        if k != CV_FOLDS:
            out[f"cv ({k} folds)"] = search_cross_validated(grid, budget, folds=k)["thresholds"]
    for g in ("se", "none"):
        out[g] = guarded_search(grid, budget, guard=g)["thresholds"]
    b = cv.get("searched_budget")  # the baseline under the default guard, as calibrate reports it
    m = len(cv["thresholds"])
    out["greedy at cv's budget"] = (
        [float("inf")] * m if b is None else greedy_search(grid, min_correct_for(grid, b))
    )
    return out


def main() -> int:
    from codedresnext._io import write_json, write_text
    from codedresnext.data import load_dataset
    from codedresnext.export import ExportOptions, export_graphs
    from codedresnext.runtime.api.cascade import EarlyExitClassifier
    from codedresnext.runtime.thresholds.exit_search import summarise
    from codedresnext.runtime.thresholds.exits import GRID, cascade_outputs
    from codedresnext.runtime.thresholds.samples import heldout_split

    p = demo_parser(__doc__)
    p.add_argument("--splits", type=int, default=20)
    p.add_argument("--budget", type=float, default=0.5, help="--max-accuracy-loss (points)")
    p.add_argument("--confidences", default="max,margin")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    t0 = time.perf_counter()
    ds = load_dataset(args.data, "test")
    labels = np.asarray(ds.labels)
    with tempfile.TemporaryDirectory(prefix="codedresnext-guard-") as tmp:
        export_graphs(
            ExportOptions(
                out=Path(tmp) / "export", checkpoint=args.checkpoint, segments="all", progress=False
            )
        )
        with EarlyExitClassifier.from_directory(Path(tmp) / "export") as casc:
            exits, logits = cascade_outputs(casc, ds.images, 250)
            print(f"ran {casc.num_exits} exits on {len(labels)} images", flush=True)
            ceiling = _oracle(exits, logits, casc.segment_flops, casc.exit_segments)
            rows = []
            for rule in args.confidences.split(","):
                per: dict[str, list[tuple[float, float, float]]] = {}
                for s in range(args.splits):
                    cal, ev = heldout_split(len(labels), seed=s)
                    o_cal = _outcomes(exits, logits, labels, casc, cal, rule)
                    o_ev = _outcomes(exits, logits, labels, casc, ev, rule)
                    for label, th in _fits(o_cal.with_grid(GRID), args.budget).items():
                        e = summarise(o_ev, th)
                        cal_loss = summarise(o_cal, th)["accuracy_loss_points"]
                        per.setdefault(label, []).append(
                            (cal_loss, e["accuracy_loss_points"], e["compute_saved"])
                        )
                    print(rule, s, {g: [round(x, 3) for x in v[-1]] for g, v in per.items()}, flush=True)
                for g, v in per.items():
                    a = np.array(v)
                    rows.append(
                        {
                            "confidence": rule,
                            "guard": g,
                            "cal_loss_median": float(np.median(a[:, 0])),
                            "eval_loss_median": float(np.median(a[:, 1])),
                            "eval_loss_mean": float(a[:, 1].mean()),
                            "over_budget": int((a[:, 1] > args.budget + 1e-9).sum()),
                            "saved_median": float(np.median(a[:, 2])),
                            "saved_mean": float(a[:, 2].mean()),
                            "no_exit": int((a[:, 2] == 0).sum()),
                            "per_split": a.tolist(),
                        }
                    )
    res = {
        "checkpoint": shown(args.checkpoint),
        "data": shown(args.data),
        "images": len(labels),
        "exits": len(exits),
        "splits": args.splits,
        "budget": args.budget,
        "command": " ".join(["python", "benchmarks/exit_guard.py", *sys.argv[1:]]),
        "seconds": time.perf_counter() - t0,
        "oracle_compute_saved": ceiling,
        "rows": rows,
    }
    write_json(args.out / "exit_guard.json", res)
    page = args.out / "exit_guard.md"
    write_text(page, with_history(page, _markdown(res)))
    print(_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
