"""codedresnext evaluate: detectors, early decoders, branch specialisation -> metrics + report."""

from __future__ import annotations

import argparse

from .._optional import lazy
from ..errors import CodedResNeXtError
from . import _args

NEEDS = ("torch",)

# the command needs torch (NEEDS, checked by cli.py before it runs): its module binds lazily
evaluation = lazy("codedresnext.evaluate.run")


# the plots and per-class figures need every class with positives and negatives in the sample
MIN_LIMIT = 100
PRECISIONS = ("fp32", "fp16", "int8", "int8-cpu")  # the twins `export --fp16 / --int8` write


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint: accuracy, per-class detectors, early decoders, report",
        description="Writes OUT/metrics.json, summary.md, report.html (self-contained) and PNG figures. "
        "With --graphs, the detector numbers come from the exported class graphs in ONNX Runtime and "
        "the fitted thresholds are written into that export (manifest + graph metadata).",
    )
    p.add_argument(
        "checkpoint",
        type=_args.existing_file,
        help="checkpoint from `codedresnext train` (e.g. runs/demo/best.pt)",
    )
    p.add_argument(
        "--data",
        required=True,
        type=_args.dataset,
        help="dataset the model was trained on: cifar10 | cifar100 | CIFAR root | ImageFolder | .tar.gz",
    )
    p.add_argument("--out", required=True, help="output directory for the report")
    p.add_argument(
        "--graphs",
        default=None,
        metavar="EXPORT_DIR",
        type=_args.export_dir,
        help="export directory (codedresnext export --classes all): score its class graphs "
        "and write the thresholds into it (what `predict` and `Detector.decide` need)",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="with --graphs: score the class graphs of this precision (the twins of export --fp16 / "
        "--int8); their thresholds are fitted on their own scores and written to that precision's "
        "graphs only (default fp32: to every twin)",
    )
    p.add_argument(
        "--ood",
        default=None,
        metavar="PATH",
        type=_args.existing_path,
        help="out-of-distribution negatives: .npz with images (e.g. ../shared/datasets/"
        "cifar100-test-partial.npz for a CIFAR-10 model) or a dataset path (its test split)",
    )
    p.add_argument(
        "--limit",
        type=_args.int_at_least(MIN_LIMIT),
        default=None,
        metavar="N",
        help=f"stratified subset of N >= {MIN_LIMIT} test images (default: all)",
    )
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR (internet)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.precision != "fp32" and not args.graphs:
        raise CodedResNeXtError("--precision picks the exported class graphs: pass --graphs EXPORT_DIR too")
    cfg = evaluation.EvalConfig(
        checkpoint=args.checkpoint,
        data=args.data,
        out=args.out,
        graphs=args.graphs,
        precision=args.precision,
        ood=args.ood,
        limit=args.limit,
        download=args.download,
        progress=not args.quiet,
    )
    m = evaluation.evaluate(cfg)
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
