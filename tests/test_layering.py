"""Import structure of the package, read from the source (ast), not by importing it.

- No import cycle among codedresnext's modules, counting every import (module level and the lazy
  ones inside functions): a cycle means two modules each need the other, whatever the timing.
- The layers: artifact (the format) imports nothing above it; runtime, deploy and the ONNX pruner import
  no torch at module level and nothing from export/train/evaluate; export may use runtime, never
  the reverse.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PKG = ROOT / "codedresnext"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """{module: modules of the package it imports}, submodule-precise where the import names one."""
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, path.name == "__init__.py", node)
                # `from . import x` / `from .pkg import sub` name submodules; else the module itself
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in files:  # `import codedresnext.export.pruner` -> that file
                    t = t.rpartition(".")[0]
                if t.startswith("codedresnext") and t != mod:
                    deps.add(t)
        graph[mod] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None. Importing a package's submodule also runs the
    package's __init__, but that edge is the package's own business (lazy __getattr__ here)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d) :] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_graph_is_read_from_the_source():
    g = import_graph()
    assert "codedresnext.artifact.manifest" in g["codedresnext.runtime.thresholds.detector"] or (
        "codedresnext.artifact" in g["codedresnext.runtime.thresholds.detector"]
    )
    assert "codedresnext.runtime.backends.base" in g["codedresnext.runtime.backends.onnxrt.session"]
    assert "codedresnext.runtime.api.detector" in g["codedresnext.evaluate.graphs"] or (
        "codedresnext.runtime" in g["codedresnext.evaluate.graphs"]
    )


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_package_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def _module_level_imports(path: Path) -> set[str]:
    """Top-level packages imported when the module is imported (not the lazy ones in functions)."""
    out = set()
    tree = ast.parse(path.read_text())
    top = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    for node in (sub for n in top for sub in ast.walk(n)):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def _module_level_package_imports(path: Path) -> set[str]:
    """The package modules imported when the module is imported (relative imports resolved)."""
    out = set()
    tree = ast.parse(path.read_text())
    top = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    for node in (sub for n in top for sub in ast.walk(n)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(_module_name(path), path.name == "__init__.py", node)
            out |= {base} | {f"{base}.{a.name}" for a in node.names}  # `from . import sub` too
    return out


# Inside runtime/, each subpackage may import only those before it: the backends know nothing of
# what uses them; the application API uses backends; threshold calibration uses the API; the
# benchmarks use all three. deploy/ packages what the runtime runs and may use all of it.
RUNTIME_LAYERS = ("backends", "api", "thresholds", "bench")


def test_runtime_subpackages_are_layered():
    g = import_graph()
    layer = {name: i for i, name in enumerate(RUNTIME_LAYERS)}
    seen = set()
    for mod, deps in g.items():
        parts = mod.split(".")
        if parts[:2] != ["codedresnext", "runtime"] or len(parts) < 3:
            continue
        assert parts[2] in layer, f"{mod}: runtime modules live in one of {RUNTIME_LAYERS}"
        seen.add(parts[2])
        for d in deps:
            dp = d.split(".")
            if dp[:2] == ["codedresnext", "runtime"] and len(dp) > 2:
                assert layer[dp[2]] <= layer[parts[2]], f"{mod} imports {d}: {dp[2]} is above {parts[2]}"
    assert seen == set(RUNTIME_LAYERS)


def test_layers():
    g = import_graph()
    for mod, deps in g.items():
        if mod.startswith("codedresnext.artifact"):
            assert all(
                d.startswith(("codedresnext.artifact", "codedresnext.errors", "codedresnext._io"))
                or d == "codedresnext.model_config"
                for d in deps
            ), (mod, deps)
        if mod.startswith(("codedresnext.runtime", "codedresnext.deploy")):
            bad = [
                d
                for d in deps
                if d.startswith(("codedresnext.export", "codedresnext.train", "codedresnext.evaluate"))
            ]
            assert not bad, (mod, bad)
    # Training is a leaf: only train/ and the CLI commands that run it import it (the model's input
    # convention lives in model.py, not in train/augment).
    for mod, deps in g.items():
        if not mod.startswith(("codedresnext.train", "codedresnext.commands")):
            assert not [d for d in deps if d.startswith("codedresnext.train")], mod
    # The torch backend's own modules (the ONNX -> torch importer, CUDA graphs) import torch at
    # module level; only the torch backend imports them, inside its _load, so that importing the
    # runtime never needs torch. Any module-level import of them elsewhere breaks that.
    torch_only = {
        f"codedresnext.runtime.backends.pytorch.{m}"
        for m in ("onnx_import", "onnx_node", "onnx_ops", "onnx_ops_nn", "cuda_graph")
    }
    for path in [
        *(PKG / "runtime").rglob("*.py"),
        *(PKG / "deploy").rglob("*.py"),
        PKG / "export" / "pruner.py",
        *(PKG / "artifact").glob("*.py"),
    ]:
        if _module_name(path) in torch_only:
            continue
        assert "torch" not in _module_level_imports(path), path  # torch only lazily (torch backend)
        assert not _module_level_package_imports(path) & torch_only, path
    assert all(
        (PKG / "runtime" / "backends" / "pytorch" / f"{m.rsplit('.', 1)[1]}.py").is_file() for m in torch_only
    )
