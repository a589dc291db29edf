"""ONNX Runtime backend: the embedded default (CPU), with CUDA / TensorRT execution providers.

`create_session` is the one place sessions are made (the backend, export verification and
evaluation all use it): threads are always explicit (intra-op = `threads`, default os.cpu_count();
inter-op = 1, sequential execution) so benchmark numbers say what they ran with, and intra-op
spinning is off unless asked for (busy-waiting worker threads steal a shared CPU from the other
processes on it; `spinning=True` is for cores the process owns). A spinning session spins only
while one of its runs is in flight: ONNX Runtime's own default keeps the workers spinning after
`run` returns, which steals cores from the next session's run in the same process (one detector
after another: on 2 cores the next graph's first blocks ran at one-thread speed, and a class graph
realised 0.89 of its FLOP saving next to the full graph instead of 0.95;
benchmarks/results/class_efficiency.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ....errors import BackendUnavailable, GraphError
from ..base import Backend, onnx_io_specs, require

# user-facing provider names -> ONNX Runtime execution providers (in priority order)
PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
DEFAULT_PROVIDER = "cpu"


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


def default_threads(threads: int | None) -> int:
    return int(threads or os.cpu_count() or 1)


def session_options(*, threads: int | None = None, spinning: bool = False, stop_spinning: bool = True) -> Any:
    """The onnxruntime.SessionOptions every session here is made with (see module docstring).
    stop_spinning=False is ONNX Runtime's default (workers keep spinning after a run), for
    benchmarks that show what it costs."""
    ort = require("onnxruntime", "onnxruntime", "the ONNX Runtime backend")
    so = ort.SessionOptions()
    so.intra_op_num_threads = default_threads(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.add_session_config_entry("session.force_spinning_stop", "1" if stop_spinning else "0")
    return so


def create_session(
    model: str | os.PathLike | bytes,
    *,
    threads: int | None = None,
    provider: str = DEFAULT_PROVIDER,
    spinning: bool = False,
) -> Any:
    """An onnxruntime.InferenceSession for a graph file or serialized bytes (see module docstring).

    GraphError when the file is missing or ONNX Runtime cannot load it (corrupt, unsupported op).
    """
    ort = require("onnxruntime", "onnxruntime", "the ONNX Runtime backend")
    if not isinstance(model, bytes):
        model = Path(model)
        if not model.is_file():
            raise GraphError(f"graph file {model} does not exist")
    so = session_options(threads=threads, spinning=spinning)
    providers = resolve_providers(provider, ort.get_available_providers())
    src = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(src, sess_options=so, providers=providers)
    except Exception as e:  # InvalidProtobuf, InvalidGraph, Fail, ... (pybind classes)
        what = "the serialized graph" if isinstance(model, bytes) else str(model)
        raise GraphError(f"ONNX Runtime cannot load {what}: {e}; re-export it") from e


class OrtBackend(Backend):
    name = "ort"

    def _load(
        self,
        path: Path,
        *,
        provider: str = DEFAULT_PROVIDER,
        threads: int | None = None,
        spinning: bool = False,
        **_: Any,
    ) -> None:
        import onnxruntime as ort

        self.threads = default_threads(threads)
        self.spinning = spinning
        self.session = create_session(path, threads=self.threads, provider=provider, spinning=spinning)
        self.providers = self.session.get_providers()
        self.inputs, self.outputs = onnx_io_specs(path)
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
            "intra_op_spinning": self.spinning,
        }

    def _close(self) -> None:
        self.session = None
