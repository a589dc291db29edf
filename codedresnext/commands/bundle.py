"""codedresnext bundle: a self-contained device bundle (Jetson / TensorRT / ONNX Runtime) for some classes."""

from __future__ import annotations

import argparse


def _batch(s: str) -> tuple[int, int, int]:
    try:
        a, b, c = (int(x) for x in s.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError("expected MIN,OPT,MAX, e.g. 1,8,32") from e
    return a, b, c


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bundle",
        help="copy some classes' detectors into a device bundle (graphs, manifest, thresholds, "
        "calibration cache, build.sh, run.py)",
    )
    p.add_argument("directory", help="export directory")
    p.add_argument("--classes", required=True, help="comma-separated class names, e.g. cat,dog")
    p.add_argument("--out", required=True, help="bundle folder (new or empty)")
    p.add_argument("--batch", type=_batch, default=(1, 8, 32), help="engine profile MIN,OPT,MAX in build.sh")
    p.add_argument("--dla-core", type=int, default=None, help="build.sh default DLA core (GPU fallback on)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..deploy.bundle import write_bundle

    classes = [c for c in args.classes.split(",") if c]
    files = write_bundle(args.directory, classes, args.out, batch=args.batch, dla_core=args.dla_core)
    print(f"wrote {len(files)} files to {args.out}: run `python {args.out}/run.py frames.npy`")
    return 0
