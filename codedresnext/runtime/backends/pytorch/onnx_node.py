"""One ONNX node as the op builders read it (attributes, constant operands) and the ONNX -> torch dtype
table. Imports torch: only the torch backend imports this, lazily."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from onnx import helper

from ....errors import GraphError

# ONNX TensorProto element types -> torch dtypes
DTYPES = {
    1: torch.float32,
    2: torch.uint8,
    3: torch.int8,
    5: torch.int16,
    6: torch.int32,
    7: torch.int64,
    9: torch.bool,
    10: torch.float16,
    11: torch.float64,
    16: torch.bfloat16,
}


class OpNode:
    """One node's attributes and constant operands, as the op builders below read them."""

    def __init__(self, node, consts: dict[str, np.ndarray]) -> None:
        self.op, self.name = node.op_type, node.name or node.output[0]
        self.inputs, self.outputs = list(node.input), list(node.output)
        self.attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        self._consts = consts

    def attr(self, key: str, default: Any = None) -> Any:
        v = self.attrs.get(key, default)
        return v.decode() if isinstance(v, bytes) else v

    def has_input(self, i: int) -> bool:
        return len(self.inputs) > i and self.inputs[i] != ""

    def const(self, i: int) -> np.ndarray | None:
        """The i-th input's value if it is an initializer/Constant, else None (absent: None)."""
        return self._consts.get(self.inputs[i]) if self.has_input(i) else None

    def const_ints(self, i: int, what: str) -> list[int] | None:
        """Constant int list operand (axes, shape, K, ...); GraphError if it is computed at run time."""
        if not self.has_input(i):
            return None
        v = self.const(i)
        if v is None:
            raise GraphError(
                f"node {self.name!r} ({self.op}): its {what} input {self.inputs[i]!r} is computed at run "
                "time; the torch importer needs it as an initializer or Constant"
            )
        return [int(a) for a in np.asarray(v).reshape(-1)]

    def fail(self, why: str) -> GraphError:
        return GraphError(f"node {self.name!r} ({self.op}): {why} is not supported by the torch importer")
