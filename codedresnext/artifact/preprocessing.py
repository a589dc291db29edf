"""How a graph wants its images, and the one numpy implementation of that preprocessing.

uint8 (B, H, W, 3) RGB frames -> float32 (B, 3, H, W): x / 255, minus mean, divided by std, in
that order and in float32, which is what the training pipeline (model.to_input) computes,
so ONNX graphs fed here see bit-identical inputs to the PyTorch model. A "frames" graph does the
same inside the graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .keys import INPUT_FLOAT, INPUT_UINT8
from .records import Record, require_type


def normalize_frames(frames: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W), C-contiguous: (x / 255 - mean) / std."""
    x = frames.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


@dataclass(frozen=True)
class Preprocessing(Record):
    """The manifest's and the graph metadata's "preprocessing" entry (every key always written)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: int
    layout: str = "NCHW"  # "NHWC" for a uint8 "frames" graph
    dtype: str = "float32"  # "uint8" for a "frames" graph
    in_graph: bool = False  # True: the graph does /255, mean/std and HWC->CHW
    input: str = INPUT_FLOAT  # name of the graph's image input

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        require_type("preprocessing.size", self.size, int)
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {self.mean} / {self.std}")

    @classmethod
    def for_model(cls, cfg: Any, *, uint8: bool) -> Preprocessing:
        """From a ModelConfig: raw uint8 NHWC frames, or float NCHW normalised with mean/std."""
        return cls(
            mean=tuple(cfg.mean),
            std=tuple(cfg.std),
            size=cfg.input_size,
            layout="NHWC" if uint8 else "NCHW",
            dtype="uint8" if uint8 else "float32",
            in_graph=uint8,
            input=INPUT_UINT8 if uint8 else INPUT_FLOAT,
        )

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    def normalize(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (B, H, W, 3) frames -> the float32 (B, 3, H, W) tensor a float graph takes."""
        return normalize_frames(frames, self.mean, self.std)
