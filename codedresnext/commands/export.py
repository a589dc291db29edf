"""codedresnext export: verified ONNX graphs (full, per-class, subsets, masked, multi-exit, segments,
early-reject pairs, FP16 and INT8 twins) + manifest.json from a checkpoint or a preset's random weights.

Verification tolerances, the opset, the paper's masked graphs and INT8 calibration details are
ExportOptions / Int8Options arguments of the Python API (codedresnext.export), not options here."""

from __future__ import annotations

import argparse

from ..errors import CodedResNeXtError
from ..export.exporter import export_graphs
from ..export.options import DEFAULT_CALIBRATION_IMAGES, DEFAULT_EVAL_IMAGES, ExportOptions, Int8Options
from ..model_config import PRESETS
from . import _args

NEEDS = ("torch",)


def _cuts(s: str) -> list[int] | str:
    if s.strip() == "all":
        return "all"
    try:
        cuts = [int(c) for c in s.split(",") if c.strip()]
    except ValueError:
        cuts = []
    if not cuts or min(cuts) < 0:
        raise argparse.ArgumentTypeError(f"expected 'all' or coded block indices such as 2,5, not {s!r}")
    return cuts


def _reject_block(s: str) -> int | str:
    if s.strip() == "all":
        return "all"
    try:
        return _args.non_negative_int(s)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a coded block index such as 3, or 'all', not {s!r}"
        ) from None


def _classes(s: str) -> list[str] | str:
    return "all" if s.strip() == "all" else _args.names(s)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export verified ONNX graphs and a manifest",
        description="Export a checkpoint (or --preset random weights) to ONNX: full.onnx plus the graphs "
        "asked for, each verified with ONNX Runtime against PyTorch. Writes DIR atomically: if any graph "
        "exceeds the verification tolerance nothing is written.",
    )
    p.add_argument(
        "checkpoint",
        nargs="?",
        type=_args.existing_file,
        help="checkpoint (.pt) written by `codedresnext train`",
    )
    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        help="export RANDOM weights of this preset instead (to try the pipeline; marked untrained)",
    )
    p.add_argument(
        "--out", required=True, help="output directory (created; must be empty unless --overwrite)"
    )
    p.add_argument(
        "--classes", type=_classes, metavar="all|NAME,NAME", help="one binary detector graph per class"
    )
    p.add_argument(
        "--subset",
        action="append",
        type=_args.names,
        default=[],
        metavar="NAME,NAME",
        help="one graph for the union of these classes' paths (repeatable)",
    )
    p.add_argument(
        "--multi-exit", action="store_true", help="full graph + early decoder outputs per coded block"
    )
    p.add_argument(
        "--segments",
        nargs="?",
        const=True,
        default=False,
        type=_cuts,
        metavar="CUTS",
        help="segment graphs for the early-exit cascade; CUTS: block indices like 3,5, or 'all' (after "
        "every coded block but the last); bare --segments: the measured default cuts",
    )
    p.add_argument(
        "--reject-block",
        type=_reject_block,
        default=None,
        metavar="J|all",
        help="early-reject pairs per class (part a: stem..block J, part b: the rest), what "
        "RejectDetector loads; 'all': one reject probe per class for `calibrate` to pick J",
    )
    p.add_argument(
        "--uint8-input",
        action="store_true",
        help="graphs take uint8 (batch,H,W,3) frames with the preprocessing inside",
    )
    p.add_argument("--fp16", action="store_true", help="also an FP16 twin (float32 I/O) of every graph")
    p.add_argument(
        "--int8",
        metavar="DATA",
        type=_args.dataset,
        help="also INT8 twins of every fp32 graph (NAME_int8 for TensorRT, NAME_int8_cpu for ONNX Runtime "
        f"CPU), calibrated on {DEFAULT_CALIBRATION_IMAGES} training images of DATA (anything `train --data` "
        f"takes) and scored on {DEFAULT_EVAL_IMAGES} of its test images",
    )
    p.add_argument(
        "--images",
        type=_args.existing_path,
        help="real images to verify every graph on: .npz/.npy (uint8 NHWC) or an image "
        "tree/.tar.gz (default: ../shared/datasets/cifar10-jpeg.tar.gz if present)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if (args.checkpoint is None) == (args.preset is None):
        raise CodedResNeXtError("give a checkpoint path or --preset NAME (one of them)")
    if args.preset:
        print(
            f"note: --preset {args.preset} exports RANDOM weights (untrained, marked so in the manifest): "
            "for trying the pipeline; its scores and decisions mean nothing"
        )
    options = ExportOptions(
        out=args.out,
        checkpoint=args.checkpoint,
        preset=args.preset,
        classes=args.classes,
        subsets=args.subset,
        multi_exit=args.multi_exit,
        segments=args.segments,
        reject_block=args.reject_block,
        uint8=args.uint8_input,
        fp16=args.fp16,
        int8=Int8Options(args.int8) if args.int8 else None,
        images=args.images,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    m = export_graphs(options)
    _print_summary(m, args.out)
    return 0


def _print_summary(m, out: str) -> None:
    """One line per graph (file, kind, params, FLOPs, worst verification error) and a total."""
    worst = max((g.verification.max_abs for g in m.graphs if g.verification), default=None)
    for g in m.graphs:
        v = g.verification
        errs = (
            [r.max_abs for r in (v.random, v.images) if r is not None and r.max_abs is not None] if v else []
        )
        err = f"max abs err {max(errs):.2e}" if errs else "not verified"
        a = g.accuracy or {}
        if "top1_agreement" in a:
            err = f"int8 top-1 agreement {a['top1_agreement']:.4f}"
        elif a.get("decision_agreement"):
            err = f"int8 decision agreement {min(a['decision_agreement'].values()):.4f}"
        elif a.get("exit_top1_agreement"):
            err = f"int8 exit top-1 agreement {min(a['exit_top1_agreement'].values()):.4f}"
        print(f"{g.file:<40} {g.kind:<10} params {g.params:>10,}  FLOPs {g.flops:>14,}  {err}")
    print(
        f"wrote {len(m.graphs)} graphs + manifest.json to {out}"
        + (f" (worst error {worst:.2e})" if worst is not None else "")
    )
