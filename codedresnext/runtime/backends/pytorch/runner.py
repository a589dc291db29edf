"""PyTorch backend: the exported ONNX graphs themselves (pruned ones too) on CPU or CUDA, or the
PyTorch eager reference rebuilt from DIR/source.pt.

- `.onnx`: imported by runtime.onnx_torch (one torch op per ONNX node, weights as buffers), so the
  GPU path runs exactly what ONNX Runtime and TensorRT run. On CUDA, `cuda_graph=True` captures one
  CUDA graph per batch size and replays it. `tf32=False` by default (fp32 means fp32: the parity
  tests compare with ONNX Runtime at fp32 tolerances).
- `.pt`: the model's own forward (`keep_classes` masks branches): the eager peer that `bench`
  compares with; takes "images" and returns "logits" like the full graph.

torch is imported only inside `_load`, so importing the runtime never needs it. Latencies include the
host -> device copy of the inputs and the device -> host copy of the outputs (as TrtBackend's do).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ....artifact import INPUT_FLOAT, OUTPUT_LOGITS
from ....errors import BackendUnavailable, GraphError
from ..base import Backend, TensorSpec, onnx_io_specs, require


def resolve_device(torch: Any, device: str) -> Any:
    """torch.device for `device`; BackendUnavailable (saying why) where CUDA is asked for but absent."""
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise BackendUnavailable(f"unknown torch device {device!r} (use 'cpu', 'cuda' or 'cuda:N')") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = torch.version.cuda or "none (CPU-only build)"
            raise BackendUnavailable(
                f"device {device!r}: torch {torch.__version__} sees no CUDA GPU (its CUDA build: {build}); "
                "run on a machine with an NVIDIA GPU and a CUDA build of PyTorch, or use device 'cpu'"
            )
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise BackendUnavailable(
                f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
        dev = torch.device("cuda", index)
    elif dev.type != "cpu":
        raise BackendUnavailable(f"device {device!r}: the torch backend runs on 'cpu' or 'cuda[:N]'")
    return dev


class TorchBackend(Backend):
    name = "torch"

    def _load(
        self,
        path: Path,
        *,
        threads: int | None = None,
        device: str = "cpu",
        cuda_graph: bool = False,
        tf32: bool = False,
        cudnn_benchmark: bool = True,
        keep_classes: list[int] | None = None,
        **_: Any,
    ) -> None:
        torch = require("torch", "torch", "the PyTorch backend")
        self._torch = torch
        self.threads = int(threads or os.cpu_count() or 1)
        torch.set_num_threads(self.threads)
        self.device = resolve_device(torch, device)
        if cuda_graph and self.device.type != "cuda":
            raise GraphError(f"cuda_graph needs device 'cuda', not {str(self.device)!r}")
        if self.device.type == "cuda":  # process-wide flags: recorded in info()
            torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
            torch.backends.cudnn.allow_tf32 = bool(tf32)
            torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
        self.cuda_graph, self.tf32, self.cudnn_benchmark = bool(cuda_graph), bool(tf32), bool(cudnn_benchmark)
        self._runner = None
        if path.suffix == ".onnx":
            from .onnx_import import load_onnx

            self.mode = "onnx"
            self.module = load_onnx(path).to(self.device)
            self.inputs, self.outputs = onnx_io_specs(path)
            if [s.name for s in self.inputs] != self.module.input_names:
                raise GraphError(f"{path}: graph inputs {self.module.input_names} differ from its I/O specs")
            if self.cuda_graph:
                from .cuda_graph import CudaGraphRunner

                self._runner = CudaGraphRunner(self.module, self.device)
        else:
            if cuda_graph:
                raise GraphError("cuda_graph runs ONNX graphs; the eager checkpoint peer runs without it")
            from ....checkpoint import load_checkpoint

            self.mode = "checkpoint"
            model, _ = load_checkpoint(path)
            self.model = model.eval().to(self.device)
            self.keep_classes = keep_classes
            s = model.cfg.input_size
            self.inputs = [TensorSpec(INPUT_FLOAT, np.dtype(np.float32), (None, 3, s, s))]
            self.outputs = [TensorSpec(OUTPUT_LOGITS, np.dtype(np.float32), (None, model.cfg.num_classes))]

    def _run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None) -> dict[str, np.ndarray]:
        torch = self._torch
        if self.mode == "checkpoint":
            with torch.inference_mode():
                x = torch.from_numpy(feeds[INPUT_FLOAT]).to(self.device)
                logits = self.model(x, keep_classes=self.keep_classes).logits
                return {OUTPUT_LOGITS: logits.float().cpu().numpy()}
        host = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.input_names]
        if self._runner is not None:
            res = self._runner(host)
        else:
            with torch.inference_mode():
                res = self.module(*[t.to(self.device) for t in host])
        wanted = set(outputs or self.output_names)
        out = {}
        for spec, t in zip(self.outputs, res):
            if spec.name in wanted:  # .cpu() waits for the device: the timing covers the whole call
                out[spec.name] = t.detach().cpu().numpy().astype(spec.dtype, copy=False)
        return out

    def info(self) -> dict:
        torch = self._torch
        d = {
            "backend": self.name,
            "mode": self.mode,
            "torch": str(torch.__version__),
            "threads": self.threads,
            "device": str(self.device),
        }
        if self.device.type == "cuda":
            d.update(
                device_name=torch.cuda.get_device_name(self.device),
                compute_capability=".".join(map(str, torch.cuda.get_device_capability(self.device))),
                cuda=torch.version.cuda,
                cudnn=torch.backends.cudnn.version(),
                cuda_graph=self.cuda_graph,
                tf32=self.tf32,
                cudnn_benchmark=self.cudnn_benchmark,
            )
        return d

    def _close(self) -> None:  # the Backend lifecycle: drop the captured graphs and the weights
        self._runner = None
        self.module = self.model = None
