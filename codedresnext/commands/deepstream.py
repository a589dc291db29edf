"""codedresnext deepstream: Gst-nvinfer secondary-classifier configs (and a deepstream-app sample)."""

from __future__ import annotations

import argparse

from ..deploy.deepstream import write_deepstream
from . import _args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deepstream",
        help="write DeepStream nvinfer configs for class detectors (secondary classifiers)",
    )
    p.add_argument(
        "directory", type=_args.export_dir, help="export directory (float input: not --uint8-input)"
    )
    p.add_argument(
        "--classes", required=True, type=_args.names, metavar="NAME,NAME", help="class names, e.g. cat,dog"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--precision", default="fp16", choices=("fp32", "fp16", "int8"), help="nvinfer network-mode"
    )
    p.add_argument(
        "--batch", type=_args.positive_int, default=16, help="nvinfer batch-size (objects per batch)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    files = write_deepstream(
        args.directory, args.classes, args.out, precision=args.precision, batch=args.batch
    )
    print(f"wrote {len(files)} files to {args.out}: deepstream-app -c {args.out}/deepstream_app.txt")
    return 0
