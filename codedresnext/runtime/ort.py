"""ONNX Runtime backend: the embedded default (CPU), with CUDA / TensorRT execution providers.

Threads are always set explicitly (intra-op = `threads`, default os.cpu_count(); inter-op = 1,
sequential execution) so that benchmark numbers say what they ran with.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailable, GraphError
from .backend import Backend, onnx_io_specs, require

# user-facing provider names -> ONNX Runtime execution providers (in priority order)
PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def resolve_providers(provider: str, available: list[str]) -> list[str]:
    """Providers to ask ONNX Runtime for; BackendUnavailable if the wanted one is not built in."""
    if provider not in PROVIDERS:
        raise BackendUnavailable(
            f"unknown ONNX Runtime provider {provider!r}; choose one of {sorted(PROVIDERS)}"
        )
    wanted = PROVIDERS[provider]
    if wanted[0] not in available:
        raise BackendUnavailable(
            f"ONNX Runtime here has no {wanted[0]} (available: {available}); for provider "
            f"{provider!r} install the GPU build: pip uninstall onnxruntime && pip install onnxruntime-gpu"
        )
    return [p for p in wanted if p in available]


class OrtBackend(Backend):
    name = "ort"

    def _load(self, path: Path, *, provider: str = "cpu", threads: int | None = None, **_: Any) -> None:
        ort = require("onnxruntime", "onnxruntime", "the ONNX Runtime backend")
        self.threads = int(threads or os.cpu_count() or 1)
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self.providers = resolve_providers(provider, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=self.providers)
            self.inputs, self.outputs = onnx_io_specs(path)
        except Exception as e:  # InvalidProtobuf, InvalidGraph, DecodeError, ...: say what to do
            raise GraphError(
                f"ONNX Runtime cannot load {path}: {type(e).__name__}: {str(e).strip()[:300]}. The file is "
                "corrupt, truncated or not an ONNX graph; re-export it (`codedresnext export`)"
            ) from e
        self._ort_version = ort.__version__

    def _run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None) -> dict[str, np.ndarray]:
        names = outputs or self.output_names
        res = self.session.run(names, {k: feeds[k] for k in self.input_names})
        return dict(zip(names, res))

    def info(self) -> dict:
        return {
            "backend": self.name,
            "onnxruntime": self._ort_version,
            "providers": self.session.get_providers(),
            "intra_op_threads": self.threads,
            "inter_op_threads": 1,
        }

    def close(self) -> None:
        self.session = None
