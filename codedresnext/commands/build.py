"""codedresnext build: one TensorRT engine per graph (TensorRT 10 or 11, GPU)."""

from __future__ import annotations

import argparse
import json

from ..runtime.backends.trt.engine import build_directory
from ..runtime.backends.trt.plan import PRECISIONS  # no TensorRT import: the planning half
from . import _args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build",
        help="build TensorRT engines for an export (needs TensorRT and a GPU)",
        description="fp16 on TensorRT 11 (strongly typed only) needs the FP16 export "
        "(`export --fp16`); int8 builds the Q/DQ twins NAME_int8 (`export --int8 DATA`): "
        "TensorRT 10 with the INT8 flag, TensorRT 11 strongly typed. Engines are cached by graph sha256, "
        "precision, GPU compute capability, TensorRT version and profile. "
        "(TensorRT 10's extra FP16 flag for INT8 builds: build_directory(int8_fp16=True).)",
    )
    p.add_argument("directory", type=_args.export_dir, help="export directory (manifest.json)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="engine precision (default fp32)")
    p.add_argument(
        "--batch",
        type=_args.batch_profile,
        default=(1, 8, 32),
        help="optimisation profile MIN,OPT,MAX (default 1,8,32)",
    )
    p.add_argument(
        "--graphs", type=_args.names, default=None, metavar="NAME,NAME", help="graph names (default: all)"
    )
    p.add_argument("--cache", default=None, help="engine + timing cache folder (default DIR/engines)")
    p.add_argument("--rebuild", action="store_true", help="ignore cached engines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    res = build_directory(
        args.directory,
        precision=args.precision,
        batch=args.batch,
        graphs=args.graphs,
        cache_dir=args.cache,
        rebuild=args.rebuild,
    )
    print(json.dumps(res, indent=2))
    return 0
