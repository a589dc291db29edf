"""codedresnext evaluate: detectors, early decoders, branch specialisation -> metrics + report."""

from __future__ import annotations

import argparse


def _limit(s: str) -> int | None:
    if s.lower() in ("all", "none", "0"):
        return None
    try:
        n = int(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError("expected a positive number of images or 'all'") from e
    if n < 0:
        raise argparse.ArgumentTypeError("expected a positive number of images or 'all'")
    return n


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint: accuracy, per-class detectors, early decoders, report",
        description="Writes OUT/metrics.json, summary.md, report.html (self-contained) and PNG figures. "
        "With --graphs, the detector numbers come from the exported class graphs in ONNX Runtime and "
        "the fitted thresholds are written into that export (manifest + graph metadata).",
    )
    p.add_argument("checkpoint", help="checkpoint from `codedresnext train` (e.g. runs/demo/best.pt)")
    p.add_argument(
        "--data",
        required=True,
        help="dataset the model was trained on: cifar10 | cifar100 | CIFAR root | ImageFolder | .tar.gz",
    )
    p.add_argument("--out", required=True, help="output directory for the report")
    p.add_argument(
        "--graphs",
        default=None,
        metavar="EXPORT_DIR",
        help="export directory (codedresnext export --classes all): score its class graphs "
        "and write the thresholds into it",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        metavar="P",
        help="with --graphs: score the class graphs of this precision (fp32, fp16, int8, int8-cpu: "
        "the twins from export --fp16 / --int8); their thresholds are fitted on their own scores and "
        "written to that precision's graphs only (default fp32: to every twin)",
    )
    p.add_argument(
        "--no-write-thresholds", action="store_true", help="with --graphs: leave the export unchanged"
    )
    p.add_argument(
        "--ood",
        default=None,
        metavar="PATH",
        help="out-of-distribution negatives: .npz with images (e.g. ../shared/datasets/"
        "cifar100-test-partial.npz for a CIFAR-10 model) or a dataset path (its test split)",
    )
    p.add_argument(
        "--removal-block",
        type=int,
        default=-1,
        metavar="J",
        help="coded block for the removal study, counting coded blocks from 0 (default -1: last)",
    )
    p.add_argument(
        "--limit",
        type=_limit,
        default=None,
        metavar="N",
        help="stratified subset of N test images (default: all)",
    )
    p.add_argument(
        "--train-limit",
        type=_limit,
        default=2000,
        metavar="N",
        help="stratified training images for fitting thresholds (default 2000; 'all' = 50k)",
    )
    p.add_argument(
        "--removal-limit",
        type=_limit,
        default=2000,
        metavar="N",
        help="test images for the removal study (default 2000; 'all')",
    )
    p.add_argument("--removal-draws", type=int, default=3, help="random branch choices averaged (default 3)")
    p.add_argument(
        "--positive-fraction",
        type=float,
        default=0.1,
        help="sample negatives so positives are at least this fraction (default 0.1)",
    )
    p.add_argument("--flip-tta", action="store_true", help="flip-averaged logits for the full-model accuracy")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR (internet)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import CodedResNeXtError
    from ..evaluate.run import EvalConfig, evaluate

    if args.removal_draws < 1 or args.batch_size < 1:
        raise CodedResNeXtError("--removal-draws and --batch-size must be at least 1")
    if args.precision != "fp32" and not args.graphs:
        raise CodedResNeXtError("--precision picks the exported class graphs: pass --graphs EXPORT_DIR too")
    if not 0 < args.positive_fraction < 1:
        raise CodedResNeXtError("--positive-fraction must lie between 0 and 1")
    cfg = EvalConfig(
        checkpoint=args.checkpoint,
        data=args.data,
        out=args.out,
        graphs=args.graphs,
        precision=args.precision,
        ood=args.ood,
        removal_block=args.removal_block,
        limit=args.limit,
        train_limit=args.train_limit,
        removal_limit=args.removal_limit,
        removal_draws=args.removal_draws,
        positive_fraction=args.positive_fraction,
        flip_tta=args.flip_tta,
        seed=args.seed,
        batch_size=args.batch_size,
        download=args.download,
        write_thresholds=not args.no_write_thresholds,
        progress=not args.quiet,
    )
    m = evaluate(cfg)
    line = (
        f"accuracy {m['accuracy']:.4f}, {m.get('detector_precision', 'fp32')} detectors "
        f"mean F1 {m['binary_mean_f1']:.4f} "
        f"(AUC {m['binary_mean_auc']:.4f})"
    )
    if "ood_mean_f1" in m:
        line += f", with OOD negatives F1 {m['ood_mean_f1']:.4f}"
    if m["early_decoder_accuracy"]:
        line += f", last early decoder {m['early_decoder_accuracy'][-1]:.4f}"
    if m.get("exit_head_accuracy") and m["exit_head_accuracy"][-1] is not None:
        line += f", last exit head {m['exit_head_accuracy'][-1]:.4f}"
    print(line)
    print(f"report: {args.out}/report.html ({m['seconds']:.0f} s)")
    return 0
