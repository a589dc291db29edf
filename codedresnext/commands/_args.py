"""Typed argument parsers shared by every command: a bad value is refused by argparse (exit 2, one
line naming the option and what it takes) before any work starts, so no command re-checks its own
counts, durations or paths by hand."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path


def _number(s: str, kind: type, what: str) -> float | int:
    try:
        v = kind(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, not {s!r}") from None
    if isinstance(v, float) and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected {what}, not {s!r}")
    return v


def positive_int(s: str) -> int:
    """A count: 1 or more."""
    v = _number(s, int, "a whole number >= 1")
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, not {s!r}")
    return v


def non_negative_int(s: str) -> int:
    """A count where 0 means 'none' or 'skip'."""
    v = _number(s, int, "a whole number >= 0")
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, not {s!r}")
    return v


def int_at_least(low: int) -> Callable[[str], int]:
    """A count with a floor the command needs (e.g. enough images for every class)."""

    def parse(s: str) -> int:
        v = _number(s, int, f"a whole number >= {low}")
        if v < low:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, not {s!r}")
        return v

    parse.__name__ = f"int >= {low}"
    return parse


def positive_float(s: str) -> float:
    """A duration, learning rate or tolerance: more than 0."""
    v = _number(s, float, "a number > 0")
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, not {s!r}")
    return v


def non_negative_float(s: str) -> float:
    """A loss budget or weight: 0 or more."""
    v = _number(s, float, "a number >= 0")
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, not {s!r}")
    return v


def int_list(s: str) -> list[int]:
    """Comma-separated counts such as batch sizes: 1,8,32."""
    try:
        v = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        v = []
    if not v:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers such as 1,8,32, not {s!r}")
    if min(v) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers >= 1, not {s!r}")
    return v


def port(s: str) -> int:
    """A TCP port: 1..65535."""
    v = _number(s, int, "a port number in 1..65535")
    if not 1 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in 1..65535, not {s!r}")
    return v


def batch_profile(s: str) -> tuple[int, int, int]:
    """A TensorRT optimisation profile MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX."""
    try:
        a, b, c = int_list(s)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(
            f"expected MIN,OPT,MAX batch sizes such as 1,8,32, not {s!r}"
        ) from None
    if not a <= b <= c:
        raise argparse.ArgumentTypeError(f"expected MIN <= OPT <= MAX, not {s!r}")
    return a, b, c


def names(s: str) -> list[str]:
    """Comma-separated class or graph names: cat,dog (checked against the model by the command)."""
    v = [n.strip() for n in s.split(",") if n.strip()]
    if not v:
        raise argparse.ArgumentTypeError(f"expected comma-separated names such as cat,dog, not {s!r}")
    return v


def existing_file(s: str) -> str:
    """A path that must be a file now (a checkpoint, an .onnx graph, a recipe)."""
    p = Path(s)
    if not p.exists():
        raise argparse.ArgumentTypeError(f"no such file: {s}")
    if not p.is_file():
        raise argparse.ArgumentTypeError(f"{s} is a directory; give a file")
    return s


def existing_dir(s: str) -> str:
    """A path that must be a directory now (an export directory)."""
    p = Path(s)
    if not p.exists():
        raise argparse.ArgumentTypeError(f"no such directory: {s}")
    if not p.is_dir():
        raise argparse.ArgumentTypeError(f"{s} is a file; give a directory")
    return s


def export_dir(s: str) -> str:
    """An export directory: it must hold manifest.json (written by `codedresnext export`)."""
    existing_dir(s)
    if not (Path(s) / "manifest.json").is_file():
        raise argparse.ArgumentTypeError(
            f"{s} has no manifest.json; give a directory written by `codedresnext export`"
        )
    return s


def existing_path(s: str) -> str:
    """A file or directory that must exist (a dataset archive, tree or .npz sample)."""
    if not Path(s).exists():
        raise argparse.ArgumentTypeError(f"no such file or directory: {s}")
    return s


def dataset(s: str) -> str:
    """A dataset: cifar10 / cifar100 (torchvision names) or an existing path."""
    if s in ("cifar10", "cifar100"):
        return s
    return existing_path(s)


def option_count(parser: argparse.ArgumentParser) -> dict[str, int]:
    """Options per command (flags only; --help not counted): the CLI's size, kept in check by a test."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {
        name: sum(1 for a in p._actions if a.option_strings and not isinstance(a, argparse._HelpAction))
        for name, p in sub.choices.items()
    }
