"""`make demo`: the shipped demo model end to end - export, evaluate on the shipped graphs,
calibrate early exits and early reject at every coded block, benchmark on ONNX Runtime, print a summary table.

Runs offline on SHARED/datasets/cifar10-jpeg.tar.gz (or --data); without it, torchvision's CIFAR-10
is downloaded once into the cache, and the console says so (`resolve_data`). Library calls only;
every step is also a `codedresnext` command (printed as it runs).
From a source checkout the defaults are the repository's models/demo/model.pt and ../shared; an
installed package takes them from --model / --shared or CODEDRESNEXT_DEMO_MODEL / CODEDRESNEXT_SHARED.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from ._optional import lazy
from ._paths import checkout_root, shared_root
from .archives import cache_root
from .artifact import MANIFEST_NAME, GraphKind
from .errors import CodedResNeXtError
from .export import ExportOptions, export_graphs
from .runtime.bench.options import BenchOptions
from .runtime.bench.report import write_report
from .runtime.bench.run import run_bench
from .runtime.thresholds.calibrate import calibrate_directory
from .runtime.thresholds.report import reject_rule_label, write_calibration_report

evaluation = lazy("codedresnext.evaluate.run", why="make demo")  # torch

MODEL_ENV = "CODEDRESNEXT_DEMO_MODEL"
LOCAL_ARCHIVE = "cifar10-jpeg.tar.gz"  # under SHARED/datasets
TORCHVISION_NAMES = ("cifar10", "cifar100")


def resolve_data(data: str | None, shared: str | None) -> tuple[str, bool, str | None]:
    """What the demo reads: (dataset, whether torchvision may download it, a notice for the console).

    Offline first: --data, else SHARED/datasets/cifar10-jpeg.tar.gz. A fresh clone has no ../shared,
    so without either the demo takes torchvision's CIFAR-10, downloaded once into the cache; the
    notice says where it looked, what is fetched and where, and how to stay offline."""
    if data is not None:
        return data, data in TORCHVISION_NAMES, None
    local = Path(shared) / "datasets" / LOCAL_ARCHIVE if shared else None
    if local is not None and local.is_file():
        return str(local), False, None
    looked = str(local) if local is not None else "(no --shared, CODEDRESNEXT_SHARED unset)"
    notice = (
        f"demo: no offline CIFAR-10 at {looked}; using torchvision's CIFAR-10 instead, downloaded once "
        f"(about 170 MB, needs internet) into {cache_root() / 'torchvision'}. To stay offline, pass "
        f"--data PATH (make demo DATA=PATH) or --shared DIR with datasets/{LOCAL_ARCHIVE} in it."
    )
    return "cifar10", True, notice


def default_model() -> Path | None:
    """$CODEDRESNEXT_DEMO_MODEL, else models/demo/model.pt of the source checkout, else None."""
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV])
    root = checkout_root()
    return root / "models" / "demo" / "model.pt" if root is not None else None


def _step(title: str, command: str) -> None:
    print(f"\n== {title}\n   $ {command}", flush=True)


def _export(args: argparse.Namespace, export_dir: Path) -> None:
    _step(
        "1/4 export: full, every class, a subset, masked peer, multi-exit, an exit at every coded block, "
        "reject probes",
        f"codedresnext export {args.model} --out {export_dir} --classes all --subset cat,dog "
        "--multi-exit --segments all --reject-block all"
        "  (+ the paper's masked graphs: ExportOptions(masked=True))",
    )
    export_graphs(
        ExportOptions(
            out=export_dir,
            checkpoint=args.model,
            classes="all",
            subsets=[["cat", "dog"]],
            masked=True,
            multi_exit=True,
            segments="all",
            reject_block="all",
            overwrite=True,
            progress=True,
        )
    )


def _evaluate(args: argparse.Namespace, export_dir: Path, eval_dir: Path) -> dict:
    ood = Path(args.shared) / "datasets" / "cifar100-test-partial.npz" if args.shared else None
    ood_arg = str(ood) if ood and ood.is_file() else None
    _step(
        "2/4 evaluate on the shipped graphs (thresholds written back into the export)",
        f"codedresnext evaluate {args.model} --data {args.data} --out {eval_dir} --graphs {export_dir}"
        + (f" --ood {ood_arg}" if ood_arg else ""),
    )
    return evaluation.evaluate(
        evaluation.EvalConfig(
            checkpoint=str(args.model),
            data=str(args.data),
            out=str(eval_dir),
            graphs=str(export_dir),
            ood=ood_arg,
            download=args.download,
        )
    )


def _calibrate(args: argparse.Namespace, export_dir: Path) -> tuple[dict, dict]:
    _step(
        "3/4 calibrate early exits (<= 0.5 point accuracy loss) and early reject at every coded block "
        "(<= 1 point recall loss)",
        f"codedresnext calibrate {export_dir} --data {args.data}"
        + (f" --limit {args.calibration_limit}" if args.calibration_limit else "")
        + (
            f"  (reject probes: calibrate_directory(reject_limit={args.reject_limit}))"
            if args.reject_limit
            else ""
        ),
    )
    cal = calibrate_directory(
        export_dir, args.data, limit=args.calibration_limit, reject_limit=args.reject_limit
    )
    return cal, write_calibration_report(cal, export_dir / "calibration")


def _bench(args: argparse.Namespace, export_dir: Path) -> tuple[dict, dict]:
    _step(
        "4/4 benchmark on ONNX Runtime (CPU)",
        f"codedresnext bench {export_dir} --batch 1,32 --duration {args.bench_duration}",
    )
    report = run_bench(
        export_dir,
        BenchOptions(
            batches=[1, 32],
            duration=args.bench_duration,
            warmup=0.2,
            data=str(args.data),
            max_class_graphs=3,
            early_exit_limit=args.bench_limit,
        ),
    )
    return report, write_report(report, export_dir / "bench")


def run(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    export_dir, eval_dir = out / "export", out / "evaluation"
    timings = {}
    t = time.perf_counter()
    _export(args, export_dir)
    timings["export"], t = time.perf_counter() - t, time.perf_counter()
    metrics = _evaluate(args, export_dir, eval_dir)
    timings["evaluate"], t = time.perf_counter() - t, time.perf_counter()
    cal, cal_paths = _calibrate(args, export_dir)
    timings["calibrate"], t = time.perf_counter() - t, time.perf_counter()
    report, paths = _bench(args, export_dir)
    timings["bench"] = time.perf_counter() - t
    summary = _summary(metrics, cal, report)
    print("\n" + summary)
    print(
        f"\nfiles: {eval_dir / 'report.html'}, {cal_paths['html']}, {paths['markdown']}, "
        f"{export_dir / MANIFEST_NAME}"
    )
    print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    return {"metrics": metrics, "calibration": cal, "bench": report, "timings": timings}


def _summary(metrics: dict, cal: dict, report: dict) -> str:
    rows = [
        ("full-model test accuracy", f"{100 * metrics['accuracy']:.2f}%"),
        ("binary detectors: mean F1 (ONNX class graphs)", f"{metrics['binary_mean_f1']:.3f}"),
        (
            "early decoder accuracy per coded block (codewords)",
            ", ".join(f"{100 * a:.1f}%" for a in metrics["early_decoder_accuracy"]),
        ),
    ]
    if metrics.get("exit_head_accuracy"):
        rows.append(
            (
                "exit head accuracy per coded block (what early exit uses)",
                ", ".join("-" if a is None else f"{100 * a:.1f}%" for a in metrics["exit_head_accuracy"]),
            )
        )
    ee = cal.get("early_exit")
    if ee:
        e, g = ee["evaluation"], ee["search"]["greedy_baseline"]["evaluation"]
        rows += [
            (
                f"early exit ({len(ee['exits'])} exits): compute saved / accuracy loss, eval half",
                f"{100 * e['compute_saved']:.1f}% / {e['accuracy_loss_points']:.2f} pt",
            ),
            (
                "  greedy baseline, same budget",
                f"{100 * g['compute_saved']:.1f}% / {g['accuracy_loss_points']:.2f} pt",
            ),
            ("  exits worth their cut (block indices)", str(ee["exit_rule"]["recommended_cuts"])),
        ]
    er = cal.get("early_reject_blocks")
    if er:
        best = next(b for b in er["blocks"] if b["block"] == er["chosen_block"])
        floor = (er.get("trunk_floor") or {}).get("fraction_of_class_graph")
        rows += [
            ("early reject: chosen block (least compute on negatives)", str(er["chosen_block"])),
            ("  reject score", reject_rule_label(er, best)),
            (
                "  negatives stopped / recall loss, eval half",
                f"{100 * best['negatives_stopped']:.1f}% / {best['recall_loss_points']:.2f} pt",
            ),
            (
                "  compute on negatives vs class graph",
                f"{100 * best['negative_compute_vs_class_graph']:.1f}%",
            ),
            ("  floor: shared uncoded trunk vs class graph", "-" if floor is None else f"{100 * floor:.1f}%"),
        ]
    g = report.get("ratios", {})
    cls = [x for x in report.get("graphs", []) if x["kind"] == GraphKind.CLASS]
    sp = [r["speedup_vs_full"] for x in cls for r in x["results"] if r["batch"] == g.get("batch")]
    if sp:
        rows.append(
            (f"class graph speedup vs full (batch {g['batch']}, median)", f"{statistics.median(sp):.2f}x")
        )
    eff = g.get("class_speedup_over_flop_ratio")
    if eff:
        rows.append(("  speedup / FLOP ratio (median)", f"{eff['median']:.2f}"))
    if g.get("masked_speedup"):
        rows.append(
            (
                "masked peer speedup, paper's approach (median)",
                f"{statistics.median(g['masked_speedup']):.2f}x",
            )
        )
    width = max(len(r[0]) for r in rows)
    lines = [f"| {'what'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m codedresnext.demo", description=__doc__)
    model, shared = default_model(), shared_root()
    p.add_argument(
        "--model",
        default=str(model) if model else None,
        help=f"checkpoint (default: ${MODEL_ENV}, else the checkout's models/demo/model.pt)",
    )
    p.add_argument(
        "--shared",
        default=str(shared) if shared else None,
        help="the offline data folder (default: $CODEDRESNEXT_SHARED, else ../shared beside the checkout)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="dataset (default: SHARED/datasets/cifar10-jpeg.tar.gz, else torchvision's CIFAR-10, "
        "downloaded once into the cache)",
    )
    p.add_argument("--download", action="store_true", help="allow torchvision to download CIFAR-10")
    p.add_argument("--out", default="runs/demo-output")
    p.add_argument("--bench-duration", type=float, default=1.0)
    p.add_argument(
        "--calibration-limit",
        type=int,
        default=None,
        help="early exits: images per held-out half (default: all 5,000; the guard's cross-validation "
        "folds over-fit when they are small)",
    )
    p.add_argument("--bench-limit", type=int, default=2000, help="images the early-exit benchmark runs")
    p.add_argument(
        "--reject-limit",
        type=int,
        default=None,
        help="images per half for the reject probes (one per class; default: all 5,000: at 1,000 a class "
        "has ~100 positives, a 1-point budget then allows one lost and the threshold is very cautious)",
    )
    args = p.parse_args(argv)
    if args.model is None or not Path(args.model).is_file():
        print(
            f"demo: error: no demo model at {args.model or '(none: not a source checkout)'}; pass --model "
            f"CKPT or set {MODEL_ENV} (the repository ships it as models/demo/model.pt)",
            file=sys.stderr,
        )
        return 2
    args.data, download, notice = resolve_data(args.data, args.shared)
    args.download = args.download or download
    if notice:
        print(notice, flush=True)
    try:
        run(args)
    except CodedResNeXtError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
