"""codedresnext predict: a quick look at what one graph says about some images."""

from __future__ import annotations

import argparse

from ..runtime.backends import BACKENDS, DEFAULT_BACKEND


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="run one graph on image files (top classes or detector decision)")
    p.add_argument("images", nargs="+", help="image files (resized to the graph's input size)")
    p.add_argument("--graph", required=True, help="an .onnx file, or a graph name with --dir")
    p.add_argument("--dir", default=None, help="export directory (then --graph is a graph name)")
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=sorted(BACKENDS), help="inference backend")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..runtime.api.predict import predict_files

    for line in predict_files(
        args.images, graph=args.graph, directory=args.dir, top=args.top, backend=args.backend
    ):
        print(line)
    return 0
