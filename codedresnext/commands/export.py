"""codedresnext export: verified ONNX graphs (full, per-class, subsets, masked, multi-exit, segments,
early-reject pairs, FP16 and INT8 twins) + manifest.json from a checkpoint or a preset's random weights."""

from __future__ import annotations

import argparse

from ..errors import CodedResNeXtError
from ..export.exporter import export_graphs
from ..export.options import ExportOptions, Int8Options


def _names(s: str) -> list[str]:
    return [n.strip() for n in s.split(",") if n.strip()]


def _cuts(s: str) -> list[int] | str:
    if s.strip() == "all":
        return "all"
    try:
        return [int(c) for c in s.split(",") if c.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError("expected 'all' or block indices such as 2,5") from e


def _reject_block(s: str) -> int | str:
    if s.strip() == "all":
        return "all"
    try:
        return int(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError("expected a coded block index such as 3, or 'all'") from e


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export verified ONNX graphs and a manifest",
        description="Export a checkpoint (or --preset random weights) to ONNX: full.onnx plus the graphs "
        "asked for, each verified with ONNX Runtime against PyTorch. Writes DIR atomically: if any graph "
        "exceeds --tolerance nothing is written.",
    )
    p.add_argument("checkpoint", nargs="?", help="checkpoint (.pt) written by `codedresnext train`")
    p.add_argument("--preset", help="export random weights of this preset instead (marked untrained)")
    p.add_argument("--seed", type=int, default=0, help="seed for --preset weights and random test inputs")
    p.add_argument(
        "--out", required=True, help="output directory (created; must be empty unless --overwrite)"
    )
    p.add_argument("--classes", help="'all' or NAME,NAME: one binary graph per class")
    p.add_argument(
        "--subset",
        action="append",
        type=_names,
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
        help="segment graphs (an early exit per cut); CUTS: block indices like 3,5, or 'all' (after "
        "every coded block but the last); bare --segments: the measured default, after the last block "
        "of each coded stage but the network's and after the second-to-last block of a coded last stage",
    )
    p.add_argument(
        "--masked",
        action="store_true",
        help="also the paper's masked per-class graphs (full size, zeroed branches)",
    )
    p.add_argument(
        "--reject-block",
        type=_reject_block,
        default=None,
        metavar="J|all",
        help="early-reject pairs (part a: stem..block J + distance and energies, part b: rest) per class; "
        "'all': one reject probe per class with those at every coded block, for `calibrate` to pick J",
    )
    p.add_argument(
        "--uint8-input",
        action="store_true",
        help="graphs take uint8 (batch,H,W,3) 'frames' with preprocessing inside",
    )
    p.add_argument("--fp16", action="store_true", help="also an FP16 twin (float32 I/O) of every graph")
    p.add_argument(
        "--int8",
        action="store_true",
        help="also INT8 twins of every fp32 graph: NAME_int8 (TensorRT Q/DQ), NAME_int8_cpu (ORT CPU)",
    )
    p.add_argument(
        "--calibration",
        metavar="DATA",
        help="dataset for --int8 (anything `train --data` takes): ranges from a seeded sample of its "
        "training split, accuracy on a seeded sample of its test split",
    )
    p.add_argument("--calibration-images", type=int, default=512, help="training images to calibrate on")
    p.add_argument(
        "--calibration-method",
        default="minmax",
        choices=("minmax", "percentile", "entropy"),
        help="ONNX Runtime calibrator (default minmax: benchmarks/results/int8_calibration.md)",
    )
    p.add_argument(
        "--int8-precisions", default="int8,int8-cpu", help="which INT8 forms (default int8,int8-cpu)"
    )
    p.add_argument(
        "--int8-eval-images",
        type=int,
        default=2000,
        help="test images for the INT8 accuracy figures (0: skip)",
    )
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs error on logits (default 1e-4)")
    p.add_argument("--fp16-tolerance", type=float, default=5e-2, help="max abs error for FP16 graphs")
    p.add_argument(
        "--images",
        help="real images for verification: .npz/.npy (uint8 NHWC) or an image "
        "tree/.tar.gz (default: ../shared/datasets/cifar10-jpeg.tar.gz if present)",
    )
    p.add_argument("--verify-batch", type=int, default=4, help="random inputs per verification (default 4)")
    p.add_argument("--verify-images", type=int, default=16, help="real images per verification (default 16)")
    p.add_argument(
        "--no-verify", action="store_true", help="skip ONNX Runtime verification (not recommended)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if (args.checkpoint is None) == (args.preset is None):
        raise CodedResNeXtError("give a checkpoint path or --preset NAME (one of them)")
    int8 = None
    if args.int8:
        if not args.calibration:
            raise CodedResNeXtError("--int8 needs --calibration DATA (real images to calibrate on)")
        int8 = Int8Options(
            args.calibration,
            images=args.calibration_images,
            method=args.calibration_method,
            precisions=tuple(_names(args.int8_precisions)),
            eval_images=args.int8_eval_images,
            seed=args.seed,
        )
    elif args.calibration:
        raise CodedResNeXtError("--calibration is only used with --int8; add --int8 (or drop --calibration)")
    classes = None
    if args.classes:
        classes = "all" if args.classes == "all" else _names(args.classes)
    options = ExportOptions(
        out=args.out,
        checkpoint=args.checkpoint,
        preset=args.preset,
        seed=args.seed,
        classes=classes,
        subsets=args.subset,
        multi_exit=args.multi_exit,
        segments=args.segments,
        masked=args.masked,
        reject_block=args.reject_block,
        uint8=args.uint8_input,
        fp16=args.fp16,
        int8=int8,
        opset=args.opset,
        verify=not args.no_verify,
        tolerance=args.tolerance,
        fp16_tolerance=args.fp16_tolerance,
        images=args.images,
        verify_batch=args.verify_batch,
        verify_images=args.verify_images,
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
