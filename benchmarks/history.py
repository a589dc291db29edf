"""A results page's hand-written "## History" section survives the benchmark that rewrites the page.

The pages under benchmarks/results/ are written by their scripts; what was tried before (and why the
current choice won) is written by hand below the results, under HISTORY. A rerun keeps it.
"""

from __future__ import annotations

from pathlib import Path

HISTORY = "## History"


def with_history(page: Path, text: str) -> str:
    """`text`, followed by the History section `page` holds now (unchanged if it has none)."""
    try:
        old = page.read_text()
    except OSError:
        return text
    at = old.find("\n" + HISTORY + "\n")
    if at < 0:
        return text
    return text.rstrip("\n") + "\n" + old[at:]
