"""codedresnext predict: what one graph decides about some images (top classes or YES / no)."""

from __future__ import annotations

import argparse

from ..runtime.api.predict import predict_files
from ..runtime.backends import BACKENDS, DEFAULT_BACKEND
from . import _args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="run one graph on image files: top classes, or a detector's YES / no at its threshold",
        description="Full and multi-exit graphs print their top classes; class and subset graphs print "
        "YES / no per class at the threshold `evaluate --graphs` fitted (or say that none is fitted "
        "yet). Segment, reject and masked graphs are refused with what to use instead.",
    )
    p.add_argument(
        "images", nargs="+", type=_args.existing_file, help="image files (resized to the graph's input)"
    )
    p.add_argument(
        "--graph", required=True, help="an .onnx file, or a graph name such as class_cat with --dir"
    )
    p.add_argument(
        "--dir", type=_args.export_dir, default=None, help="export directory (then --graph is a graph name)"
    )
    p.add_argument(
        "--top",
        type=_args.positive_int,
        default=3,
        help="full / multi-exit graphs: classes shown (default 3)",
    )
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=sorted(BACKENDS), help="inference backend")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for line in predict_files(
        args.images, graph=args.graph, directory=args.dir, top=args.top, backend=args.backend
    ):
        print(line)
    return 0
