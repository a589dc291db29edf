"""What the benchmark scripts on the shipped demo model share: where things are, their common
arguments, and how paths appear in the results files (which travel with the repository)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from codedresnext._io import write_json, write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def demo_parser(doc: str | None) -> argparse.ArgumentParser:
    """--checkpoint (the demo model) and --data (the offline CIFAR-10 archive) with their defaults."""
    shared = Path(os.environ.get("CODEDRESNEXT_SHARED", ROOT.parent / "shared"))
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(ROOT / "models" / "demo" / "model.pt"))
    p.add_argument("--data", default=str(shared / "datasets" / "cifar10-jpeg.tar.gz"))
    return p


def shown(path: str) -> str:
    """Paths as seen from the repository root."""
    p = Path(path).resolve()
    return os.path.relpath(p, ROOT) if p.is_relative_to(ROOT.parent) else str(path)


def write_results(out: str | os.PathLike, res: dict, markdown: Callable[[dict], str]) -> None:
    """OUT.json and OUT.md (atomically), as every benchmark writes its results."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), res)
    write_text(out.with_suffix(".md"), markdown(res))
    print(f"wrote {out}.json and {out}.md")
