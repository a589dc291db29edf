"""codedresnext prune: cut a per-class (or subset) graph out of full.onnx. Needs no PyTorch."""

from __future__ import annotations

import argparse

from ..export.pruner import prune_file
from . import _args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prune",
        help="cut a per-class / subset graph from full.onnx (no PyTorch needed)",
        description="Physically remove the branches a class (or subset of classes) does not use, "
        "ONNX -> ONNX, reading the coding scheme from full.onnx's metadata.",
    )
    p.add_argument("full", type=_args.existing_file, help="full.onnx written by `codedresnext export`")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--class", dest="cls", metavar="NAME", help="one class -> binary detector (1 logit)")
    g.add_argument(
        "--subset",
        type=_args.names,
        metavar="NAME,NAME",
        help="union of these classes' paths, one logit each",
    )
    p.add_argument("--out", required=True, help="output .onnx file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    classes = [args.cls] if args.cls else args.subset
    info = prune_file(args.full, args.out, classes)
    print(
        f"wrote {info['file']}: classes {info['classes']}, params {info['params']:,}, FLOPs {info['flops']:,}"
    )
    return 0
