"""Coded ResNeXt: train, prune to per-class detectors, export and run on ONNX Runtime / TensorRT.

`import codedresnext` is light: torch-dependent parts load on first use, so a device with only
onnx, numpy and a runtime can use the pruner and the runtime.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "create_model": ("codedresnext.model", "create_model"),
    "CodedResNeXt": ("codedresnext.model", "CodedResNeXt"),
    "CodedBlock": ("codedresnext.model", "CodedBlock"),
    "count_parameters": ("codedresnext.model", "count_parameters"),
    "build_config": ("codedresnext.model_config", "build_config"),
    "ModelConfig": ("codedresnext.model_config", "ModelConfig"),
    "list_presets": ("codedresnext.model_config", "list_presets"),
    "CodingScheme": ("codedresnext.coding", "CodingScheme"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'codedresnext' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
