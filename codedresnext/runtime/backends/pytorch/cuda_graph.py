"""CUDA-graph replay of a torch module: one captured graph per input-shape signature.

Why: an interpreted graph of a few hundred small kernels is launch-bound at small batches; a CUDA
graph replays the whole launch sequence with one call. Static buffers hold the inputs and outputs
(the PyTorch pattern: warm up on a side stream, capture, then copy new inputs into the static
inputs and replay). Outputs are the static buffers themselves: the caller copies them out before the
next replay. At most `max_graphs` shapes are captured (the early-exit cascade compacts batches to
every size); further shapes run eagerly. Imports torch at module level: only the torch backend
imports it, lazily.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ....errors import GraphError


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: list[torch.Tensor]
    outputs: tuple[torch.Tensor, ...]


class CudaGraphRunner:
    """`runner(list of host or device tensors) -> tuple of device tensors` (valid until the next call)."""

    def __init__(
        self, module: torch.nn.Module, device: torch.device, *, warmup: int = 3, max_graphs: int = 16
    ) -> None:
        if device.type != "cuda":
            raise GraphError(
                f"CUDA graphs need a CUDA device, not {device}; drop cuda_graph or use device='cuda'"
            )
        self.module, self.device, self.warmup, self.max_graphs = module, device, warmup, max_graphs
        self._graphs: dict[tuple, _Captured] = {}

    @property
    def captured_shapes(self) -> list[tuple]:
        return list(self._graphs)

    def __call__(self, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        key = tuple((tuple(t.shape), t.dtype) for t in inputs)
        cap = self._graphs.get(key)
        if cap is None:
            if len(self._graphs) >= self.max_graphs:
                with torch.inference_mode():
                    return tuple(self.module(*[t.to(self.device) for t in inputs]))
            cap = self._graphs[key] = self._capture(inputs)
        for static, t in zip(cap.inputs, inputs):
            static.copy_(t, non_blocking=True)
        cap.graph.replay()
        return cap.outputs

    def _capture(self, inputs: list[torch.Tensor]) -> _Captured:
        static = [t.to(self.device, copy=True) for t in inputs]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.no_grad():
            with torch.cuda.stream(side):  # warm-up off the capture stream (cuDNN picks algorithms here)
                for _ in range(self.warmup):
                    self.module(*static)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    outputs = self.module(*static)
            except RuntimeError as e:
                raise GraphError(
                    f"this graph cannot be captured in a CUDA graph ({e}); run it without cuda_graph"
                ) from e
        torch.cuda.synchronize(self.device)
        return _Captured(graph, static, tuple(outputs))
