"""codedresnext calibrate: early-exit (and early-reject) thresholds on held-out data -> manifest.

The search itself (joint search guarded by cross-validation, the exit confidence, the reject rule)
runs with its measured defaults; other strategies are `calibrate_directory` arguments of the Python
API (codedresnext.runtime.thresholds.calibrate) and benchmarks/exit_guard.py, reject_rule.py."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..runtime.backends import BACKENDS, DEFAULT_BACKEND
from ..runtime.thresholds.calibrate import calibrate_directory
from ..runtime.thresholds.report import write_calibration_report
from . import _args

MIN_LIMIT = 100  # images per half: below this the cross-validated guard has too few to fold


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="pick early-exit / early-reject thresholds on held-out data",
        description="Uses the TEST split of --data, shuffled (seed 0) and halved: the first half "
        "picks thresholds, the second half reports accuracy and compute. Writes the thresholds "
        "into DIR/manifest.json.",
    )
    p.add_argument(
        "directory", type=_args.export_dir, help="export directory with segment (and/or reject) graphs"
    )
    p.add_argument(
        "--data",
        required=True,
        type=_args.dataset,
        help="dataset: .tar.gz / folder / official CIFAR root / .npz sample",
    )
    p.add_argument(
        "--max-accuracy-loss",
        type=_args.non_negative_float,
        default=0.5,
        help="early exit: points of accuracy below the full graph (default 0.5)",
    )
    p.add_argument(
        "--max-recall-loss",
        type=_args.non_negative_float,
        default=1.0,
        help="early reject: points of recall (default 1)",
    )
    p.add_argument(
        "--limit",
        type=_args.int_at_least(MIN_LIMIT),
        default=None,
        metavar="N",
        help=f"use at most N >= {MIN_LIMIT} images per half (default: the whole test split)",
    )
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=sorted(BACKENDS), help="inference backend")
    p.add_argument(
        "--out",
        default=None,
        help="report folder: calibration.json/.md/.html + curves (default DIR/calibration)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    res = calibrate_directory(
        args.directory,
        args.data,
        max_accuracy_loss=args.max_accuracy_loss,
        max_recall_loss=args.max_recall_loss,
        limit=args.limit,
        backend=args.backend,
    )
    paths = write_calibration_report(res, args.out or Path(args.directory) / "calibration")
    print(json.dumps(res, indent=2, allow_nan=False))  # strict JSON: null = never
    print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0
