"""`make demo`: the shipped demo model end to end - export, evaluate on the shipped graphs,
calibrate early exits, benchmark on ONNX Runtime, print a summary table.

Runs offline on ../shared/datasets/cifar10-jpeg.tar.gz, or online with `--data cifar10 --download`
(torchvision). Library calls only; every step is also a `codedresnext` command (printed as it runs).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .artifact import MANIFEST_NAME
from .errors import CodedResNeXtError

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "models" / "demo" / "model.pt"


def _step(title: str, command: str) -> float:
    print(f"\n== {title}\n   $ {command}", flush=True)
    return time.perf_counter()


def run(args: argparse.Namespace) -> dict:
    from .evaluate.run import EvalConfig, evaluate
    from .export import export_graphs
    from .runtime.bench import run_bench
    from .runtime.bench_report import write_report
    from .runtime.calibrate import calibrate_directory

    out = Path(args.out)
    export_dir, eval_dir = out / "export", out / "evaluation"
    data = args.data
    ood = Path(args.shared) / "datasets" / "cifar100-test-partial.npz"
    ood_arg = str(ood) if ood.is_file() else None
    timings = {}

    t = _step(
        "1/4 export: full, every class, a subset, masked peer, multi-exit, segments",
        f"codedresnext export {args.model} --out {export_dir} --classes all --subset cat,dog "
        "--masked --multi-exit --segments",
    )
    export_graphs(
        out=export_dir,
        checkpoint=args.model,
        classes="all",
        subsets=[["cat", "dog"]],
        masked=True,
        multi_exit=True,
        segments=True,
        overwrite=True,
        progress=True,
    )
    timings["export"] = time.perf_counter() - t

    t = _step(
        "2/4 evaluate on the shipped graphs (thresholds written back into the export)",
        f"codedresnext evaluate {args.model} --data {data} --out {eval_dir} --graphs {export_dir}"
        + (f" --ood {ood_arg}" if ood_arg else ""),
    )
    metrics = evaluate(
        EvalConfig(
            checkpoint=str(args.model),
            data=str(data),
            out=str(eval_dir),
            graphs=str(export_dir),
            ood=ood_arg,
            download=args.download,
        )
    )
    timings["evaluate"] = time.perf_counter() - t

    t = _step(
        "3/4 calibrate early exits (<= 0.5 point accuracy loss)",
        f"codedresnext calibrate {export_dir} --data {data}",
    )
    cal = calibrate_directory(export_dir, data, limit=args.calibration_limit)
    timings["calibrate"] = time.perf_counter() - t

    t = _step(
        "4/4 benchmark on ONNX Runtime (CPU)",
        f"codedresnext bench {export_dir} --batch 1,32 --duration {args.bench_duration}",
    )
    report = run_bench(
        export_dir,
        batches=[1, 32],
        duration=args.bench_duration,
        warmup=0.2,
        data=str(data),
        max_class_graphs=3,
        early_exit_limit=args.calibration_limit,
    )
    paths = write_report(report, export_dir / "bench")
    timings["bench"] = time.perf_counter() - t
    summary = _summary(metrics, cal, report)
    print("\n" + summary)
    print(f"\nfiles: {eval_dir / 'report.html'}, {paths['markdown']}, {export_dir / MANIFEST_NAME}")
    print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    return {"metrics": metrics, "calibration": cal, "bench": report, "timings": timings}


def _summary(metrics: dict, cal: dict, report: dict) -> str:
    rows = [
        ("full-model test accuracy", f"{100 * metrics['accuracy']:.2f}%"),
        ("binary detectors: mean F1 (ONNX class graphs)", f"{metrics['binary_mean_f1']:.3f}"),
        (
            "early decoder accuracy per coded block",
            ", ".join(f"{100 * a:.1f}%" for a in metrics["early_decoder_accuracy"]),
        ),
    ]
    ee = (cal.get("early_exit") or {}).get("evaluation")
    if ee:
        rows.append(
            (
                "early exit: compute saved / accuracy loss",
                f"{100 * ee['compute_saved']:.1f}% / {ee['accuracy_loss_points']:.2f} pt",
            )
        )
    g = report.get("ratios", {})
    eff = g.get("class_speedup_over_flop_ratio")
    if eff:
        rows.append(
            (f"class graph speedup / FLOP ratio (batch {g['batch']}, median)", f"{eff['median']:.2f}")
        )
    if g.get("masked_speedup"):
        import statistics

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
    p.add_argument("--model", default=str(DEMO_MODEL), help="checkpoint (default: the shipped demo model)")
    p.add_argument("--shared", default=str(ROOT.parent / "shared"), help="the offline data folder")
    p.add_argument(
        "--data",
        default=None,
        help="dataset (default: SHARED/datasets/cifar10-jpeg.tar.gz, else torchvision cifar10)",
    )
    p.add_argument("--download", action="store_true", help="allow torchvision to download CIFAR-10")
    p.add_argument("--out", default="runs/demo-output")
    p.add_argument("--bench-duration", type=float, default=1.0)
    p.add_argument("--calibration-limit", type=int, default=2000)
    args = p.parse_args(argv)
    if args.data is None:
        local = Path(args.shared) / "datasets" / "cifar10-jpeg.tar.gz"
        args.data = str(local) if local.is_file() else "cifar10"
    if args.data in ("cifar10", "cifar100"):
        args.download = True  # torchvision's copy; downloaded once into the cache
    try:
        run(args)
    except CodedResNeXtError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
