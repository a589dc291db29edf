"""The node / initializer collector every graph is built with: unique, stable names, fp16 casts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import CodedResNeXtError

F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16


class Graph:
    """Collects nodes and initializers with unique, stable names."""

    def __init__(self, fp16: bool) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, onnx.TensorProto] = {}
        self.act = np.float16 if fp16 else np.float32
        self.fp16 = fp16

    def const(self, name: str, arr: np.ndarray) -> str:
        if name in self.inits:
            raise CodedResNeXtError(f"internal: initializer {name} defined twice")
        self.inits[name] = numpy_helper.from_array(np.ascontiguousarray(arr), name)
        return name

    def shared(self, name: str, arr: np.ndarray) -> str:
        if name not in self.inits:
            self.const(name, arr)
        return name

    def op(self, op: str, inputs: Sequence[str], name: str, out: str | None = None, **attrs) -> str:
        self.nodes.append(helper.make_node(op, list(inputs), [out or name], name=name, **attrs))
        return out or name

    def cast(self, x: str, to: int, name: str) -> str:
        return self.op("Cast", [x], name, to=to)

    def to_f32(self, x: str, name: str) -> str:
        return self.cast(x, F32, name) if self.fp16 else x

    def to_act(self, x: str, name: str) -> str:
        return self.cast(x, F16, name) if self.fp16 else x

    def conv(
        self,
        x: str,
        name: str,
        weight: np.ndarray,
        bias: np.ndarray | None,
        *,
        wname: str,
        bname: str | None,
        stride: int = 1,
        group: int = 1,
        dtype=None,
        out: str | None = None,
    ) -> str:
        dtype = dtype or self.act
        k = weight.shape[-1]
        ins = [x, self.const(wname, weight.astype(dtype))]
        if bias is not None:
            ins.append(self.const(bname, bias.astype(dtype)))
        return self.op(
            "Conv",
            ins,
            name,
            out,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[k // 2] * 4,
            group=group,
            dilations=[1, 1],
        )


def channels(branches: Iterable[int], width: int) -> np.ndarray:
    return np.concatenate([np.arange(n * width, (n + 1) * width) for n in branches]).astype(np.int64)


def i64(*v: int) -> np.ndarray:
    return np.array(v, dtype=np.int64)


def value_info(name: str, elem: int, shape: Sequence[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, ["batch", *shape])
