"""Export: torch -> ONNX (full), ONNX -> ONNX (per-class, subset, masked, multi-exit, segments, reject).

Library entry points (torch needed only where marked):
- `export_graphs(ExportOptions(out=DIR, checkpoint=PATH | preset=NAME, classes="all", subsets=[[a, b]],
  multi_exit=True, segments=True | [cuts], masked=True, reject_block=J, uint8=True, fp16=True, ...),
  model=MODEL)` -> artifact.Manifest; writes DIR/*.onnx, DIR/source.pt and DIR/manifest.json
  atomically (torch).
- `load_full_graph(path)` -> FullGraph; `prune(full, ["cat"])` -> onnx.ModelProto;
  `prune_file(full_onnx, out_file, ["cat", "dog"])`; `derive(full, spec)` for any GraphSpec
  (no torch: numpy + onnx only).
- `kinds.*` graph kinds (the KINDS registry) and their GraphSpec factories,
  `counting.count_params / count_flops`, `ops.check_graph`.
Submodules import lazily so that `from codedresnext.export import prune` never imports torch.
"""

from __future__ import annotations

_LAZY = {
    "export_graphs": "exporter",
    "ExportOptions": "options",
    "plan_graphs": "plan",
    "load_full_graph": "pruner",
    "prune": "pruner",
    "prune_file": "pruner",
    "derive": "pruner",
    "FullGraph": "pruner",
    "GraphSpec": "kinds",
    "build_graph": "builder",
    "count_params": "counting",
    "count_flops": "counting",
    "check_graph": "ops",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"codedresnext.export.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'codedresnext.export' has no attribute {name!r}")


__all__ = list(_LAZY)
