"""The one lazy-import helper: optional heavy libraries (torch, torchvision, matplotlib, TensorRT, ...)
and the project modules that import them at module level are bound at a module's top with
`lazy("torch")` and imported on first attribute access, so the torch-free core (`pip install .`:
prune, runtime, bench, predict) imports and runs without them. A missing library becomes one
MissingDependency that names what to install, never a ModuleNotFoundError traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any

from .errors import MissingDependency

# top-level import name -> how to get it
TRAIN_EXTRA = "install the [train] extra: pip install 'codedresnext[train]'"
INSTALL = {
    "torch": TRAIN_EXTRA,
    "torchvision": TRAIN_EXTRA,
    "matplotlib": TRAIN_EXTRA,
    "tensorrt": "install TensorRT (JetPack on Jetson; elsewhere pip install -r requirements-gpu.txt)",
    "polygraphy": "install the [gpu] extra: pip install 'codedresnext[gpu]'",
    "tritonclient": "install the [serve] extra: pip install 'codedresnext[serve]'",
}


def require(
    name: str, *, why: str = "", install: str = "", error: type[MissingDependency] = MissingDependency
) -> ModuleType:
    """Import `name` now; a missing library (it, or one it imports) raises `error` saying what to
    install (`install`, else the INSTALL entry of the missing library, else `pip install <it>`)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        missing = (e.name or name).partition(".")[0]
        if missing == "codedresnext":
            raise
        how = install or INSTALL.get(missing, f"pip install {missing}")
        raise error(
            f"{why or name} needs the Python package {missing!r}, which is not installed: {how}"
        ) from e


def available(name: str) -> bool:
    """Whether `name` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


class lazy(ModuleType):  # noqa: N801  (used like a module, named like one)
    """A module bound now and imported on first attribute access (through `require`)."""

    def __init__(self, name: str, *, why: str = "") -> None:
        super().__init__(name)
        self.__dict__["_why"] = why

    def __getattr__(self, attr: str) -> Any:
        module = require(self.__name__, why=self.__dict__["_why"])
        self.__dict__.update(module.__dict__)  # later lookups skip __getattr__
        return getattr(module, attr)
