"""Regenerate benchmarks/results/bench_*.{json,md,png} in one command (ONNX Runtime CPU by default).

    .venv/bin/python benchmarks/bench_graphs.py
        cifar10 and cifar100 presets with random weights (speed does not depend on the weights):
        full vs per-class vs masked (the paper's approach) vs subset vs multi-exit vs PyTorch eager,
        measured interleaved in one run per preset, batch 1,8,32.
    .venv/bin/python benchmarks/bench_graphs.py --presets none \\
        --checkpoint models/demo/model.pt --data ../shared/datasets/cifar10-jpeg.tar.gz
        the trained model: its graphs plus early exit (calibrated on half of the test split, measured
        on the other half) and early reject.

Timings are only meaningful on an otherwise idle machine (the report records the load average).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def bench_preset(preset: str, work: Path, args) -> Path:
    from codedresnext.export import ExportOptions, export_graphs
    from codedresnext.model_config import build_config

    cfg = build_config(preset)
    classes = list(cfg.class_names[: args.max_class_graphs])
    out = work / preset
    export_graphs(
        ExportOptions(
            out=out,
            preset=preset,
            classes=classes,
            subsets=[classes[:2]],
            masked=True,
            multi_exit=True,
            verify=False,
            overwrite=True,
            progress=not args.quiet,
        )
    )
    names = [
        "full",
        *(f"class_{c}" for c in classes),
        f"masked_{classes[0]}",
        f"subset_{classes[0]}__{classes[1]}",
        "multi_exit",
    ]
    return _bench_and_write(out, names, args, stem=f"bench_{preset}")


def bench_trained(work: Path, args) -> Path:
    from codedresnext.checkpoint import read_checkpoint
    from codedresnext.export import ExportOptions, export_graphs
    from codedresnext.model_config import ModelConfig
    from codedresnext.runtime.thresholds.calibrate import calibrate_directory

    cfg = ModelConfig.from_dict(read_checkpoint(args.checkpoint)["model_config"])
    out = work / "trained"
    export_graphs(
        ExportOptions(
            out=out,
            checkpoint=args.checkpoint,
            classes="all",
            masked=True,
            multi_exit=True,
            segments=True,
            reject_block=cfg.coded_blocks[0],
            overwrite=True,
            progress=not args.quiet,
        )
    )
    calibrate_directory(
        out, args.data, max_accuracy_loss=args.max_accuracy_loss, limit=args.calib_limit, threads=args.threads
    )
    names = [
        "full",
        *(f"class_{c}" for c in cfg.class_names[: args.max_class_graphs]),
        f"masked_{cfg.class_names[0]}",
        "multi_exit",
    ]
    return _bench_and_write(
        out, names, args, stem=f"bench_trained_{cfg.name}", data=args.data, early_exit_limit=args.calib_limit
    )


def _bench_and_write(out: Path, names: list[str], args, *, stem: str, **extra) -> Path:
    """One interleaved run over `names` with the command-line settings; JSON/Markdown/PNG under --out."""
    from goals import add_goals

    from codedresnext.runtime.bench.options import BenchOptions
    from codedresnext.runtime.bench.report import write_report
    from codedresnext.runtime.bench.run import run_bench

    report = run_bench(
        out,
        BenchOptions(
            batches=args.batch,
            warmup=args.warmup,
            duration=args.duration,
            graphs=names,
            threads=args.threads,
            rounds=args.rounds,
            min_iterations=args.min_iterations,
            progress=not args.quiet,
            spinning=not args.no_spinning,
            **extra,
        ),
    )
    report["command"] = " ".join(["python", "benchmarks/bench_graphs.py", *sys.argv[1:]])
    add_goals(report)
    return write_report(report, args.out, stem=stem)["markdown"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="cifar10,cifar100", help="comma-separated presets, or 'none'")
    p.add_argument("--checkpoint", default=None, help="trained checkpoint: adds early exit / early reject")
    p.add_argument("--data", default=None, help="dataset for calibration (its test split, halved)")
    p.add_argument("--batch", type=lambda s: [int(b) for b in s.split(",")], default=[1, 8, 32])
    p.add_argument("--warmup", type=float, default=0.2)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--min-iterations", type=int, default=10, help="at least this many calls per graph and batch"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="ORT intra-op and torch threads (default: all cores)"
    )
    p.add_argument("--max-class-graphs", type=int, default=10)
    p.add_argument(
        "--no-spinning",
        action="store_true",
        help="ONNX Runtime threads without busy-wait (the library default); the results in "
        "benchmarks/results/ were measured with busy-wait during each run (runtime.ort.session_options), "
        "on an idle machine",
    )
    p.add_argument("--max-accuracy-loss", type=float, default=0.5)
    p.add_argument("--calib-limit", type=int, default=2500, help="images per held-out half")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--work", type=Path, default=None, help="where exports go (default: a temp dir)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    if args.checkpoint and not args.data:
        p.error("--checkpoint needs --data for the early-exit calibration")
    with tempfile.TemporaryDirectory(prefix="codedresnext-bench-") as tmp:
        work = args.work or Path(tmp)
        written = []
        for preset in [s for s in args.presets.split(",") if s and s != "none"]:
            written.append(bench_preset(preset, work, args))
        if args.checkpoint:
            written.append(bench_trained(work, args))
    for md in written:
        print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
