"""codedresnext build: one TensorRT engine per graph (TensorRT 10 or 11, GPU)."""

from __future__ import annotations

import argparse
import json

from ..runtime.backends.trt.plan import PRECISIONS  # no TensorRT import: the planning half


def _batch(s: str) -> tuple[int, int, int]:
    try:
        a, b, c = (int(x) for x in s.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError("expected MIN,OPT,MAX, e.g. 1,8,32") from e
    return a, b, c


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build",
        help="build TensorRT engines for an export (needs TensorRT and a GPU)",
        description="fp16 on TensorRT 11 (strongly typed only) needs the FP16 export "
        "(`export --fp16`); int8 builds the Q/DQ twins NAME_int8 (`export --int8 --calibration DATA`): "
        "TensorRT 10 with the INT8 flag, TensorRT 11 strongly typed. Engines are cached by graph sha256, "
        "precision, GPU compute capability, TensorRT version and profile.",
    )
    p.add_argument("directory")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--batch", type=_batch, default=(1, 8, 32), help="optimisation profile MIN,OPT,MAX")
    p.add_argument("--graphs", default=None, help="comma-separated graph names (default: all)")
    p.add_argument("--cache", default=None, help="engine + timing cache folder (default DIR/engines)")
    p.add_argument("--rebuild", action="store_true", help="ignore cached engines")
    p.add_argument(
        "--int8-fp16",
        action="store_true",
        help="TensorRT 10, --precision int8: also the FP16 flag for the layers outside Q/DQ (the energy "
        "sums of squares may overflow FP16; compare against ONNX Runtime before deploying)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..runtime.backends.trt.engine import build_directory

    res = build_directory(
        args.directory,
        precision=args.precision,
        batch=args.batch,
        graphs=args.graphs.split(",") if args.graphs else None,
        cache_dir=args.cache,
        rebuild=args.rebuild,
        int8_fp16=args.int8_fp16,
    )
    print(json.dumps(res, indent=2))
    return 0
