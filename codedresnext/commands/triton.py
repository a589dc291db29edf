"""codedresnext triton: a Triton Inference Server model repository from an export."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..artifact import load_manifest
from ..deploy.subset import segment_names
from ..deploy.triton import write_repository
from ..deploy.triton_model import CASCADE_MODEL, write_python_models
from . import _args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("triton", help="write a Triton model repository (config.pbtxt per graph)")
    p.add_argument("directory", type=_args.export_dir, help="export directory (manifest.json)")
    p.add_argument("--out", required=True, help="repository folder")
    p.add_argument(
        "--graphs", type=_args.names, default=None, metavar="NAME,NAME", help="graph names (default: all)"
    )
    p.add_argument(
        "--max-batch-size", type=_args.positive_int, default=32, help="Triton max_batch_size (default 32)"
    )
    p.add_argument(
        "--instances", type=_args.positive_int, default=1, help="model instances per graph (default 1)"
    )
    p.add_argument(
        "--engines",
        default=None,
        type=_args.existing_file,
        help="engines-PRECISION.json from `codedresnext build`: use "
        "the TensorRT plans (platform tensorrt_plan) instead of ONNX",
    )
    p.add_argument("--gpu", action="store_true", help="instance_group KIND_GPU for ONNX models")
    p.add_argument(
        "--python",
        action="store_true",
        help="also write Python-backend models a CPU Triton runs (`codedresnext serve`): <graph>_py per "
        "detector (score + decision at its threshold) and cascade_py (the early-exit cascade)",
    )
    p.add_argument(
        "--threads", type=_args.positive_int, default=1, help="ONNX Runtime threads per Python-model instance"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    engines = profiles = None
    if args.engines:
        d = json.loads(Path(args.engines).read_text())
        engines = {g["name"]: Path(args.directory) / g["engine"] for g in d["graphs"]}
        profiles = {g["name"]: g["profile"] for g in d["graphs"] if g.get("profile")}
    out = write_repository(
        args.directory,
        args.out,
        graphs=args.graphs,
        engines=engines,
        max_batch_size=args.max_batch_size,
        instances=args.instances,
        gpu=args.gpu,
        engine_profiles=profiles,
    )
    if args.python:
        # with an engine for every segment, the cascade model sends its segments to their TensorRT
        # plan models by BLS requests (exit decisions stay on the host); else it runs them itself
        segs = segment_names(load_manifest(args.directory))
        calls = "engines" if engines and segs and all(s in engines for s in segs) else None
        out += write_python_models(
            args.directory,
            args.out,
            graphs=args.graphs or None,
            max_batch_size=args.max_batch_size,
            instances=args.instances,
            threads=args.threads,
            segment_calls=calls,
        )
        if calls:
            print(f"{CASCADE_MODEL} sends its segments to the TensorRT models {', '.join(segs)} (BLS)")
    print(f"wrote {len(out)} models to {args.out}")
    return 0
