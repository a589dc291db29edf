"""Early reject: the learned score vs the codeword distance, and the threshold rule, over many halvings.

    .venv/bin/python benchmarks/reject_rule.py [--checkpoint models/demo/model.pt] [--splits 20]

`calibrate` sets reject thresholds on one half of the test split and reports the other; one halving
is one draw. This exports one reject probe per class, runs each on every test image and on
`--fit-images` training images once, fits the learned rule per class and block on the training
sample (as `calibrate --reject-rule learned` does), then for each seeded halving sets the threshold
on the calibration half's positives, both with calibrate's rule (expected recall loss on new data
within the budget) and with the exact in-sample fit it replaced, and scores the evaluation half:
negatives stopped, recall lost, how often the mean over classes exceeds the budget, compute spent
on negatives. Writes benchmarks/results/reject_rule.{json,md}.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from demo_common import RESULTS, demo_parser, shown
from history import with_history


def in_sample_threshold(d: np.ndarray, detected: np.ndarray, budget: float) -> float:
    """The rule calibrate used before: lose at most `budget` points on the calibration half itself."""
    allowed = int(np.floor(budget / 100.0 * len(d) + 1e-9))
    lost_if = np.sort(d[detected])[::-1]
    return float(np.min(d)) if allowed >= len(lost_if) else float(lost_if[allowed])


def _markdown(res: dict) -> str:
    lines = [
        "# Early reject: learned score vs codeword distance, threshold rules, over many halvings",
        "",
        f"Checkpoint {res['checkpoint']}, {res['classes']} classes; test split of {res['data']} "
        f"({res['images']} images) halved {res['splits']} times (seeds 0..{res['splits'] - 1}); learned rule "
        f"fitted once on {res['fit_images']} training images; budget {res['budget']} point of recall. "
        f"Means over classes, then over halvings (evaluation half). Command: `{res['command']}` "
        f"({res['seconds']:.0f} s).",
        "",
        "| block | score | threshold | negatives stopped | recall loss mean (pt) | over budget | "
        "compute on negatives vs class graph |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['block']} | {r['score']} | {r['threshold']} | {100 * r['negatives_stopped']:.1f}% | "
            f"{r['recall_loss_mean']:.2f} | {r['over_budget']}/{res['splits']} | "
            f"{100 * r['negative_compute']:.1f}% |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    from codedresnext._io import write_json, write_text
    from codedresnext.artifact import FP32, GraphKind, load_manifest
    from codedresnext.data import load_dataset
    from codedresnext.export import ExportOptions, export_graphs
    from codedresnext.runtime.api.postprocess import reject_score
    from codedresnext.runtime.thresholds.detector import f1_optimal_threshold
    from codedresnext.runtime.thresholds.reject_logistic import fit_reject_rule
    from codedresnext.runtime.thresholds.reject_search import (
        block_figures,
        calibrate_reject_threshold,
        probe_outputs,
    )
    from codedresnext.runtime.thresholds.samples import heldout_split

    p = demo_parser(__doc__)
    p.add_argument("--splits", type=int, default=20)
    p.add_argument("--budget", type=float, default=1.0, help="--max-recall-loss (points)")
    p.add_argument("--fit-images", type=int, default=2000, help="training images for the learned rule")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    t0 = time.perf_counter()
    test = load_dataset(args.data, "test")
    train = load_dataset(args.data, "train")
    fit = train.subset(np.sort(np.random.default_rng(0).permutation(len(train))[: args.fit_images]))
    labels, names = np.asarray(test.labels), list(test.class_names)
    rules = {"calibrate (expected loss)": calibrate_reject_threshold, "in-sample exact (before)": None}
    acc: dict[tuple, list] = {}
    with tempfile.TemporaryDirectory(prefix="codedresnext-reject-") as tmp:
        d = Path(tmp) / "export"
        export_graphs(
            ExportOptions(
                out=d,
                checkpoint=args.checkpoint,
                classes="all",
                reject_block="all",
                progress=False,
                verify=False,
            )
        )
        m = load_manifest(d)
        probes = m.of_kind(GraphKind.REJECT_PROBE, precision=FP32)
        for g in probes:
            k = names.index(g.classes[0])
            out = probe_outputs(d, g, test.images, 250, "ort", None)
            out_fit = probe_outputs(d, g, fit.images, 250, "ort", None)
            pos, fit_pos = labels == k, np.asarray(fit.labels) == k
            class_flops = m.reject_floor.class_graph_flops
            for j in g.reject_probe.blocks:
                ab = g.reject_probe.pair_flops[str(j)]
                scores = {
                    "learned": reject_score(fit_reject_rule(out_fit[f"e{j}"], fit_pos), out[f"e{j}"]),
                    "distance": out[str(j)],
                }
                for s in range(args.splits):
                    cal, ev = heldout_split(len(labels), seed=s)
                    dt = f1_optimal_threshold(out["logits"][cal], pos[cal])[0]
                    det = out["logits"][cal][pos[cal]] > dt
                    for sname, sc in scores.items():
                        for rname, rule in rules.items():
                            d_pos = sc[cal][pos[cal]]
                            rt = (
                                rule(d_pos, det, max_recall_loss=args.budget)
                                if rule
                                else in_sample_threshold(d_pos, det, args.budget)
                            )
                            f = block_figures(
                                sc[ev], out["logits"][ev], pos[ev], rt, dt, ab["a"], ab["b"], class_flops
                            )
                            acc.setdefault((j, sname, rname, s), []).append(f)
            print(f"{g.name}: {len(g.reject_probe.blocks)} blocks x {args.splits} halvings", flush=True)
    rows = []
    blocks = sorted({key[0] for key in acc})
    for j in blocks:
        for sname in ("learned", "distance"):
            for rname in rules:
                per = [acc[(j, sname, rname, s)] for s in range(args.splits)]  # per halving: per class
                stop = [np.mean([f["negatives_stopped"] for f in fs]) for fs in per]
                loss = [np.mean([f["recall_loss_points"] for f in fs]) for fs in per]
                cost = [np.mean([f["negative_compute_vs_class_graph"] for f in fs]) for fs in per]
                rows.append(
                    {
                        "block": j,
                        "score": sname,
                        "threshold": rname,
                        "negatives_stopped": float(np.mean(stop)),
                        "recall_loss_mean": float(np.mean(loss)),
                        "recall_loss_median": float(np.median(loss)),
                        "over_budget": int(np.sum(np.array(loss) > args.budget + 1e-9)),
                        "negative_compute": float(np.mean(cost)),
                        "per_split": [[float(a), float(b)] for a, b in zip(stop, loss)],
                    }
                )
    res = {
        "checkpoint": shown(args.checkpoint),
        "data": shown(args.data),
        "images": len(labels),
        "classes": len(probes),
        "fit_images": len(fit.labels),
        "splits": args.splits,
        "budget": args.budget,
        "command": " ".join(["python", "benchmarks/reject_rule.py", *sys.argv[1:]]),
        "seconds": time.perf_counter() - t0,
        "rows": rows,
    }
    write_json(args.out / "reject_rule.json", res)
    page = args.out / "reject_rule.md"
    write_text(page, with_history(page, _markdown(res)))
    print(_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
