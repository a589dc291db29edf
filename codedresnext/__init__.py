"""Coded ResNeXt: train, prune to per-class detectors, export and run on ONNX Runtime / TensorRT.

`import codedresnext` is light (no torch): the model itself is `codedresnext.model` (torch), the
runtime `codedresnext.runtime`, the export format `codedresnext.artifact`; docs/code-map.md maps the rest.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .coding import CodingScheme, paper_scheme
from .model_config import ModelConfig, build_config, list_presets

__all__ = ["__version__", "CodingScheme", "ModelConfig", "build_config", "list_presets", "paper_scheme"]
