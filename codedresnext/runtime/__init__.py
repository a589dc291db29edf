"""Runtime: backends (ONNX Runtime, TensorRT, PyTorch eager), detectors, early-exit cascade, bench.

Imports nothing from torch (or any backend library) at module level: a device with only onnx,
numpy and one runtime can use it. Names below load on first use.
"""

from __future__ import annotations

_LAZY = {
    "Backend": ("codedresnext.runtime.backend", "Backend"),
    "TensorSpec": ("codedresnext.runtime.backend", "TensorSpec"),
    "open_backend": ("codedresnext.runtime.backend", "open_backend"),
    "BACKENDS": ("codedresnext.runtime.backend", "BACKENDS"),
    "create_session": ("codedresnext.runtime.ort", "create_session"),
    "Detector": ("codedresnext.runtime.detector", "Detector"),
    "SubsetDetector": ("codedresnext.runtime.detector", "SubsetDetector"),
    "RejectDetector": ("codedresnext.runtime.detector", "RejectDetector"),
    "EarlyExitClassifier": ("codedresnext.runtime.cascade", "EarlyExitClassifier"),
    "CascadeResult": ("codedresnext.runtime.cascade", "CascadeResult"),
    "calibrate_directory": ("codedresnext.runtime.calibrate", "calibrate_directory"),
    "run_bench": ("codedresnext.runtime.bench", "run_bench"),
    "write_report": ("codedresnext.runtime.bench_report", "write_report"),
    "build_directory": ("codedresnext.runtime.trt", "build_directory"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'codedresnext.runtime' has no attribute {name!r}")


__all__ = list(_LAZY)
