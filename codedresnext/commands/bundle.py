"""codedresnext bundle: a self-contained device bundle (Jetson / TensorRT / ONNX Runtime) for some classes."""

from __future__ import annotations

import argparse

from ..deploy.bundle import write_bundle
from . import _args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bundle",
        help="copy some classes' detectors into a device bundle (graphs, manifest, thresholds, "
        "calibration cache, build.sh, run.py)",
    )
    p.add_argument("directory", type=_args.export_dir, help="export directory")
    p.add_argument(
        "--classes", required=True, type=_args.names, metavar="NAME,NAME", help="class names, e.g. cat,dog"
    )
    p.add_argument("--out", required=True, help="bundle folder (new or empty)")
    p.add_argument(
        "--batch", type=_args.batch_profile, default=(1, 8, 32), help="engine profile MIN,OPT,MAX in build.sh"
    )
    p.add_argument(
        "--dla-core",
        type=_args.non_negative_int,
        default=None,
        help="build.sh default DLA core (GPU fallback on; default: no DLA)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    files = write_bundle(args.directory, args.classes, args.out, batch=args.batch, dla_core=args.dla_core)
    print(f"wrote {len(files)} files to {args.out}: run `python {args.out}/run.py frames.npy`")
    return 0
