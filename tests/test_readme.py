"""The README's Python examples run as written (Polygraphy-style executed docs)."""

from __future__ import annotations

import re

from conftest import ROOT


def _python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_has_python_examples():
    assert _python_blocks(), "README.md should show the Python API"


def test_readme_python_examples_run():
    for block in _python_blocks():
        exec(compile(block, "README.md", "exec"), {})
