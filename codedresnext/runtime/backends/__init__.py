"""Backends: one folder per inference framework (onnxrt: ONNX Runtime, the default; trt: TensorRT;
pytorch: the exported graphs through torch), each behind the `Backend` interface of base.py.

Everything framework-specific lives in its folder; other code asks the registry's `BackendInfo`
what a backend can do (streams, devices, providers, batch profiles) instead of comparing names.
Framework libraries are imported inside `load`, so importing this package needs none of them.
"""

from __future__ import annotations

from .base import (
    BACKENDS,
    DEFAULT_BACKEND,
    Backend,
    BackendInfo,
    Closing,
    TensorSpec,
    backend_info,
    onnx_io_specs,
    open_backend,
    require,
)
