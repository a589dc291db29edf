"""`codedresnext <command>`: thin wrappers over library functions.

Each command lives in codedresnext/commands/<name>.py with `register(subparsers)`; modules import
heavy libraries (torch, onnxruntime) inside their handlers, so `prune` runs where torch is absent.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import CodedResNeXtError

COMMANDS = (
    "train",
    "precise_bn",
    "fit_exits",
    "evaluate",
    "export",
    "prune",
    "build",
    "calibrate",
    "bench",
    "predict",
    "triton",
    "serve",
    "bundle",
    "deepstream",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codedresnext",
        description="Train Coded ResNeXt, cut per-class detectors, export and benchmark them.",
    )
    parser.add_argument("--version", action="version", version=f"codedresnext {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"codedresnext.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CodedResNeXtError as e:
        print(f"codedresnext {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
