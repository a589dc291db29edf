"""Packaging: declared dependencies are the real ones, and the package runs outside the checkout.

The layout test copies the package alone into a temporary folder, as a wheel installs it into
site-packages (no pyproject.toml, models/ or ../shared beside it), and runs the CLI from another
working directory without CODEDRESNEXT_SHARED: nothing may reach the repository through
`parents[N]`. The real non-editable `pip install .` is the same check at install time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# distribution -> module, where they differ
IMPORT_NAME = {"pillow": "PIL", "onnx-graphsurgeon": "onnx_graphsurgeon"}
TOOLS = {"ruff": "make lint", "pytest": "make test"}  # run as commands (pytest is imported too)


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower()


def _pins() -> dict[str, str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return {_name(x): x for x in lines if x.strip() and not x.startswith(("#", "-"))}


def test_requirements_pin_exactly_the_declared_dependencies():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = {_name(r) for r in project["dependencies"] + extras["train"] + extras["dev"] + extras["serve"]}
    assert set(_pins()) == declared
    assert all("==" in line for line in _pins().values())  # constraints: exact tested versions
    assert isinstance(project["license"], str)  # SPDX expression (PEP 639), not a table


def test_every_pinned_package_is_imported():
    sources = [p for d in ("codedresnext", "tests", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    text = "\n".join(p.read_text() for p in sources)
    for name in _pins():
        module = IMPORT_NAME.get(name, name)
        used = re.search(rf"^\s*(import|from)\s+{re.escape(module)}\b", text, re.M)
        assert used or name in TOOLS, f"{name} is pinned in requirements.txt but nothing imports it"


@pytest.fixture(scope="module")
def installed_copy(tmp_path_factory) -> Path:
    """The package alone, as in site-packages."""
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(
        ROOT / "codedresnext", site / "codedresnext", ignore=shutil.ignore_patterns("__pycache__")
    )
    return site


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CODEDRESNEXT_SHARED", "CODEDRESNEXT_DEMO_MODEL")}
    env.update(PYTHONPATH=str(site), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_export_runs_outside_the_checkout(installed_copy, tmp_path):
    r = _run(installed_copy, tmp_path, "-c", "import codedresnext, codedresnext._paths as p; "
             "print(codedresnext.__file__); print(p.checkout_root(), p.shared_root())")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [str(installed_copy / "codedresnext" / "__init__.py"), "None None"]
    r = _run(installed_copy, tmp_path, "-m", "codedresnext.cli", "export", "--preset", "tiny", "--out", "D",
             "--classes", "cat", "--segments")  # fmt: skip
    assert r.returncode == 0, r.stderr
    names = {p.name for p in (tmp_path / "D").iterdir()}
    assert {"manifest.json", "full.onnx", "class_cat.onnx", "segment0.onnx"} <= names


def test_demo_names_its_options_outside_the_checkout(installed_copy, tmp_path):
    r = _run(installed_copy, tmp_path, "-m", "codedresnext.demo")
    assert r.returncode == 2 and "--model" in r.stderr and "CODEDRESNEXT_DEMO_MODEL" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "runs").exists()
