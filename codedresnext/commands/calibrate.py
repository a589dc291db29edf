"""codedresnext calibrate: early-exit (and early-reject) thresholds on held-out data -> manifest."""

from __future__ import annotations

import argparse
import json
import sys

from ..runtime.backends import BACKENDS, DEFAULT_BACKEND
from ..runtime.thresholds.exit_guard import CV_FOLDS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="pick early-exit / early-reject thresholds on held-out data",
        description="Uses the TEST split of --data, shuffled (seed 0) and halved: the first half "
        "picks thresholds, the second half reports accuracy and compute. Writes the thresholds "
        "into DIR/manifest.json.",
    )
    p.add_argument("directory", help="export directory with segment (and/or reject) graphs")
    p.add_argument(
        "--data", required=True, help="dataset: .tar.gz / folder / official CIFAR root / .npz sample"
    )
    p.add_argument(
        "--max-accuracy-loss", type=float, default=0.5, help="points vs the full graph (default 0.5)"
    )
    p.add_argument(
        "--max-recall-loss", type=float, default=1.0, help="early reject: points of recall (default 1)"
    )
    p.add_argument(
        "--reject-rule",
        default="auto",
        choices=("auto", "learned", "distance"),
        help="early reject score: learned = per class and block a logistic score on the log energies, "
        "fitted on a sample of the TRAINING split of --data (the thresholds still come from the test "
        "halves); distance = the codeword distance ||v - w_k||; auto (default) = learned when --data "
        "has a training split and the reject graphs output their energies (exported by this version), "
        "else distance",
    )
    p.add_argument(
        "--reject-fit-images",
        type=int,
        default=2000,
        help="learned reject rule: training images it is fitted on (random sample, seed 0; default 2000)",
    )
    p.add_argument(
        "--search",
        default="joint",
        choices=("joint", "greedy"),
        help="exit thresholds: all exits searched jointly (default) or the one-at-a-time greedy baseline",
    )
    p.add_argument(
        "--guard",
        default="cv",
        choices=("cv", "se", "none"),
        help="how the joint search keeps the budget on NEW data: cv (default) = the price of accuracy "
        f"(compute traded per point) chosen by {CV_FOLDS}-fold cross-validation in the calibration half; "
        "se = calibration loss + --margin-se standard errors within the budget; "
        "none = fit it exactly on the calibration half",
    )
    p.add_argument("--margin-se", type=float, default=None, help="with --guard se: Z (default 2)")
    p.add_argument(
        "--exit-confidence",
        default="auto",
        choices=("auto", "max", "margin"),
        help="what an exit threshold is compared with: max = the top exit score, margin = top minus "
        "runner-up; auto (default) searches both and keeps the one saving more compute on the "
        "calibration half (written to the segments' manifest entries, the cascade reads it)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="report folder: calibration.json/.md/.html + curves (default DIR/calibration)",
    )
    p.add_argument("--limit", type=int, default=None, help="use at most N images per half")
    p.add_argument(
        "--reject-limit",
        type=int,
        default=None,
        help="reject probes: at most N images per half (default: --limit)",
    )
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=sorted(BACKENDS), help="inference backend")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..runtime.thresholds.calibrate import calibrate_directory
    from ..runtime.thresholds.report import write_calibration_report

    res = calibrate_directory(
        args.directory,
        args.data,
        max_accuracy_loss=args.max_accuracy_loss,
        max_recall_loss=args.max_recall_loss,
        limit=args.limit,
        batch=args.batch,
        threads=args.threads,
        backend=args.backend,
        search=args.search,
        margin_se=args.margin_se,
        guard=args.guard,
        reject_limit=args.reject_limit,
        exit_confidence=args.exit_confidence,
        reject_rule=args.reject_rule,
        reject_fit_images=args.reject_fit_images,
    )
    paths = write_calibration_report(res, args.out or Path(args.directory) / "calibration")
    print(json.dumps(res, indent=2, allow_nan=False))  # strict JSON: null = never
    print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0
