"""Where the package finds files outside itself, for an installed package as well as a checkout.

An installed package (`pip install .`, a wheel) lives in site-packages, where `parents[N]` of a
module is not the repository; only a source checkout (editable install, or running from the repo)
has the repository's models/ and the sibling ../shared/ data beside it. Everything else comes from
an explicit option or an environment variable, and a missing default says which to pass.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_ENV = "CODEDRESNEXT_SHARED"


def checkout_root() -> Path | None:
    """The source checkout this package is imported from, or None for an installed package."""
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "codedresnext" / "__init__.py").is_file():
        return root
    return None


def shared_root() -> Path | None:
    """The offline data folder: $CODEDRESNEXT_SHARED, else ../shared beside a checkout, else None."""
    env = os.environ.get(SHARED_ENV)
    if env:
        return Path(env)
    root = checkout_root()
    return root.parent / "shared" if root is not None else None
