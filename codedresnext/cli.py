"""`codedresnext <command>`: thin wrappers over library functions.

Each command lives in codedresnext/commands/<name>.py with `register(subparsers)` and a `NEEDS`
tuple of the optional libraries its handler imports (torch for the training side). `main` checks
NEEDS through `_optional.require` before the handler runs, so a torch-free install (`pip install .`)
answers `export`, `train`, ... with one line naming the extra to install, and runs `prune`, `bench`,
`predict` as they are. Bad arguments exit 2 with one line (the typed parsers of commands/_args.py).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from . import __version__
from ._optional import require
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


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (argparse prints the whole usage block first)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def command_module(command: str) -> ModuleType:
    """The module of a command as typed (`precise-bn` -> commands/precise_bn.py)."""
    return importlib.import_module(f"codedresnext.commands.{command.replace('-', '_')}")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="codedresnext",
        description="Train Coded ResNeXt, cut per-class detectors, export and benchmark them.",
    )
    parser.add_argument("--version", action="version", version=f"codedresnext {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        command_module(name).register(sub)
    for p in sub.choices.values():
        _show_defaults(p)
    return parser


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append '(default X)' to an option's help where the help does not state its default."""
    for a in parser._actions:
        d = a.default
        if not a.option_strings or d in (None, False, argparse.SUPPRESS) or d == []:
            continue
        if a.help and "default" not in a.help:
            shown = ",".join(map(str, d)) if isinstance(d, (list, tuple)) else d
            a.help += f" (default {shown})".replace("%", "%%")


def check_needs(command: str) -> None:
    """Import what the command declares in NEEDS; a missing one is a MissingDependency (exit 2)."""
    for name in getattr(command_module(command), "NEEDS", ()):
        require(name, why=f"codedresnext {command}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the command's own parser, which knows the options it does take
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        check_needs(args.command)
        return int(args.func(args) or 0)
    except CodedResNeXtError as e:
        print(f"codedresnext {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
