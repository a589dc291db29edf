"""The one lazy-import helper: a module bound at the top, imported on first use; a missing library
is a MissingDependency naming what to install, in-process and through the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest

from codedresnext._optional import INSTALL, TRAIN_EXTRA, available, lazy, require
from codedresnext.errors import BackendUnavailable, CodedResNeXtError, MissingDependency


def test_lazy_imports_on_first_use(monkeypatch):
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    m = lazy("colorsys")
    assert "colorsys" not in sys.modules  # bound, not imported
    assert m.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert "colorsys" in sys.modules


def test_missing_library_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # what an install without torch looks like
    t = lazy("torch", why="codedresnext export")
    with pytest.raises(
        MissingDependency, match=r"codedresnext export needs .*'torch'.*codedresnext\[train\]"
    ):
        t.zeros(1)
    assert INSTALL["torch"] == TRAIN_EXTRA
    with pytest.raises(BackendUnavailable, match="pip install tensorrt-cu12"):
        require(
            "tensorrt",
            why="the TensorRT backend",
            install="pip install tensorrt-cu12",
            error=BackendUnavailable,
        )
    assert issubclass(MissingDependency, CodedResNeXtError)


def test_unknown_library_and_availability():
    with pytest.raises(MissingDependency, match="pip install no_such_library_xyz"):
        require("no_such_library_xyz")
    assert available("json") and not available("no_such_library_xyz")
    with pytest.raises(ModuleNotFoundError):  # a missing module of our own is a bug, not a user error
        require("codedresnext.no_such_module")


def test_lazy_in_a_fresh_interpreter_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from codedresnext._optional import lazy\n"
        "from codedresnext.errors import MissingDependency\n"
        "t = lazy('torch')\n"
        "try:\n    t.tensor\nexcept MissingDependency as e:\n    print('refused:', e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("refused:") and "codedresnext[train]" in r.stdout
