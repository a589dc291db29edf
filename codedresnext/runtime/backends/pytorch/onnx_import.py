"""A small ONNX -> torch.nn.Module importer for the project's op allowlist (export/ops.py).

Why not a general converter: the exporter writes a closed set of plain ops (TRT_ALLOWED_OPS), so a
few lines per op give a module we fully control, with no extra dependency on the device. The module
interprets the graph node by node with torch ops; initializers become buffers (so `.to("cuda")`
moves them and fp16 weights stay fp16); constant operands (axes, shapes, pads, K) are read once at
import time into Python values, so a forward pass never syncs with the device and can be captured
in a CUDA graph. Semantics follow the ONNX operator spec at opset >= 13 (axes as inputs for
ReduceSum / Squeeze / Unsqueeze; ReduceMean/Max/Min take either form).

Imports torch at module level: only the torch backend imports this module, lazily.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ....errors import GraphError
from .onnx_node import DTYPES, OpNode
from .onnx_ops import OPS

__all__ = ["DTYPES", "MIN_OPSET", "OPS", "OnnxModule", "load_onnx"]

MIN_OPSET = 13  # Softmax/ReduceSum/Squeeze semantics in onnx_torch_ops are those of opset 13+

Step = tuple[Callable[..., Any], list[str], list[str]]  # (fn over tensors, input names, output names)


class OnnxModule(torch.nn.Module):
    """forward(*inputs in graph-input order) -> tuple of outputs in graph-output order."""

    def __init__(self, model) -> None:
        super().__init__()
        from onnx import numpy_helper

        graph = model.graph
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        if opset < MIN_OPSET:
            raise GraphError(
                f"opset {opset} is older than {MIN_OPSET}; the torch importer needs {MIN_OPSET}+"
            )
        consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:  # Constant nodes are initializers too
            if node.op_type == "Constant":
                consts[node.output[0]] = _constant_value(OpNode(node, consts))
        self.input_names = [v.name for v in graph.input if v.name not in consts]
        self.output_names = [v.name for v in graph.output]
        self._const_names: list[str] = []
        used = {i for node in graph.node for i in node.input} | set(self.output_names)
        for i, (name, arr) in enumerate(consts.items()):
            if name in used:
                self.register_buffer(f"c{i}", torch.from_numpy(np.array(arr, copy=True)), persistent=False)
                self._const_names.append(name)
        self._steps: list[Step] = []
        for node in graph.node:
            if node.op_type == "Constant":
                continue
            if node.domain not in ("", "ai.onnx") or node.op_type not in OPS:
                op = f"{node.domain}.{node.op_type}" if node.domain else node.op_type
                raise GraphError(
                    f"op {op} (node {node.name!r}) is not supported by the torch importer; "
                    f"it handles {sorted(OPS)}"
                )
            n = OpNode(node, consts)
            fn, dyn = OPS[node.op_type](n)
            self._steps.append((fn, [n.inputs[i] for i in dyn], [o for o in n.outputs if o]))

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        env: dict[str, Any] = dict(zip(self._const_names, self._buffers.values()))
        env.update(zip(self.input_names, inputs))
        for fn, ins, outs in self._steps:
            res = fn(*[env[i] for i in ins])
            if len(outs) == 1:
                env[outs[0]] = res[0] if isinstance(res, tuple) else res
            else:
                env.update(zip(outs, res))
        return tuple(env[o] for o in self.output_names)


def _constant_value(n: OpNode) -> np.ndarray:
    from onnx import numpy_helper

    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in n.attrs:
            v = n.attrs[key]
            if key == "value":
                return numpy_helper.to_array(v)
            return np.asarray(v, np.float32 if "float" in key else np.int64)
    raise n.fail(f"Constant with attributes {sorted(n.attrs)}")


def load_onnx(path_or_model: str | os.PathLike | Any) -> OnnxModule:
    """OnnxModule of an ONNX file or ModelProto; GraphError for unreadable files or unsupported ops."""
    import onnx

    if isinstance(path_or_model, (str, os.PathLike)):
        try:
            model = onnx.load(str(path_or_model))
        except Exception as e:  # DecodeError and friends for corrupt files
            raise GraphError(f"{path_or_model} is not a readable ONNX file ({e}); re-export it") from e
    else:
        model = path_or_model
    return OnnxModule(model).eval()
