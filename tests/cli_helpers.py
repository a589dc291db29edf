"""Running the CLI in-process: argparse refusals (SystemExit) and handler errors both give an exit code."""

from __future__ import annotations

from codedresnext.cli import main


def run_cli(argv: list[str]) -> int:
    """`codedresnext ARGV` in this process; the exit status whether argparse or the handler answered."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code or 0)
