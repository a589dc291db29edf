"""docs/code-map.md maps the package one to one: every module and folder is named there, and every
path it names exists (a module added, moved or removed without updating the map fails here)."""

from __future__ import annotations

import re

from conftest import ROOT

PKG = ROOT / "codedresnext"
MAP = ROOT / "docs" / "code-map.md"


def _named() -> set[str]:
    """Package paths in backticks (the tests and the package folder itself are named too, not mapped)."""
    names = set(re.findall(r"`([\w/]+(?:\.py|/))`", MAP.read_text()))
    return {n for n in names if not n.startswith(("tests/", "codedresnext/"))}


def _actual() -> set[str]:
    modules = {str(p.relative_to(PKG)) for p in PKG.rglob("*.py") if p.name != "__init__.py"}
    folders = {f"{p.parent.relative_to(PKG)}/" for p in PKG.rglob("__init__.py") if p.parent != PKG}
    return modules | folders


def test_every_module_and_folder_is_on_the_map():
    missing = sorted(_actual() - _named())
    assert not missing, f"add to docs/code-map.md: {missing}"


def test_the_map_names_nothing_that_is_gone():
    gone = sorted(p for p in _named() if not (PKG / p).exists())
    assert not gone, f"docs/code-map.md names paths that do not exist under codedresnext/: {gone}"
