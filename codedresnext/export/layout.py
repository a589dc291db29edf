"""Block geometry, branch paths and analytic parameter counts from a ModelConfig (numpy only).

The graph builder, the pruner and the counters all derive shapes from here, so a device with only
onnx + numpy can rebuild any graph from the config stored in the full graph's metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import CodedResNeXtError
from ..model_config import ModelConfig

EXPAND_ALIGN = 4  # expand input channels padded to a multiple of this (builder._expand)


@dataclass(frozen=True)
class BlockGeom:
    """Static shape facts of one block (index over all blocks, in order)."""

    index: int
    stage: int
    c_in: int
    c_out: int
    width: int  # d
    branches: int  # N
    active: int  # N_act
    stride: int
    size_in: int  # spatial H = W at the block input
    size_out: int
    codewords: np.ndarray | None  # (K, N) uint8 for coded blocks

    @property
    def coded(self) -> bool:
        return self.codewords is not None

    @property
    def projection(self) -> bool:
        """True when the shortcut is a 1x1 conv + BN (shape changes)."""
        return self.stride != 1 or self.c_in != self.c_out


def stem_size(cfg: ModelConfig) -> int:
    """Spatial size after the stem: cifar keeps it, imagenet: conv7/2 then maxpool3/2."""
    s = cfg.input_size
    if cfg.stem == "imagenet":
        s = (s + 6 - 7) // 2 + 1
        s = (s + 2 - 3) // 2 + 1
    return s


def block_layout(cfg: ModelConfig) -> list[BlockGeom]:
    out: list[BlockGeom] = []
    c, size = cfg.stem_channels, stem_size(cfg)
    for si, s in enumerate(cfg.stages):
        words = None
        if s.coded:
            words = np.array([[ch == "1" for ch in w] for w in s.codewords], dtype=np.uint8)
        for i in range(s.depth):
            stride = s.stride if i == 0 else 1
            size_out = (size - 1) // stride + 1  # 3x3 pad 1 and 1x1 pad 0 agree
            out.append(
                BlockGeom(
                    len(out),
                    si,
                    c,
                    s.out_channels,
                    s.width,
                    s.branches,
                    s.active,
                    stride,
                    size,
                    size_out,
                    words,
                )
            )
            c, size = s.out_channels, size_out
    return out


def class_indices(cfg: ModelConfig, names: Sequence[str | int]) -> list[int]:
    """Class names (or indices) -> indices; unknown names raise with the list of valid ones."""
    out = []
    for n in names:
        if isinstance(n, (int, np.integer)):
            if not 0 <= int(n) < cfg.num_classes:
                raise CodedResNeXtError(f"class index {n} out of range 0..{cfg.num_classes - 1}")
            out.append(int(n))
            continue
        if n not in cfg.class_names:
            raise CodedResNeXtError(f"unknown class {n!r}; valid class names: {', '.join(cfg.class_names)}")
        out.append(cfg.class_names.index(n))
    if len(set(out)) != len(out):
        raise CodedResNeXtError(f"class list {list(names)} names a class twice")
    return out


def keep_branches(layout: Sequence[BlockGeom], classes: Sequence[int] | None) -> list[tuple[int, ...] | None]:
    """Per block: sorted kept branch indices (union of the classes' paths); None = all branches."""
    if classes is None:
        return [None] * len(layout)
    classes = list(classes)
    out: list[tuple[int, ...] | None] = []
    for b in layout:
        if b.codewords is None:
            out.append(None)
        else:
            used = b.codewords[classes].max(0)
            out.append(tuple(int(n) for n in np.flatnonzero(used)))
    return out


def analytic_params(cfg: ModelConfig, keep: Sequence[tuple[int, ...] | None], rows: int) -> int:
    """PyTorch-equivalent parameters of a path: conv/fc weights + BN gamma and beta of kept channels.

    Not counted: BN running statistics (buffers) and the derived Gram matrices (computed from the
    expand weights). With keep all-None and rows = K this is `count_parameters(model)`.

    The projection shortcuts (1x1 conv + BN where a stage changes shape) are on every path and are
    counted: cifar10 2,149,034 / 4,638,926 = 46.3% per class, cifar100 1,777,744 / 4,749,136 = 37.4%.
    Leaving them out gives 37.2% / 27.1%, i.e. the paper's 38% / 27%, which suggests the paper
    did not count them (or used parameter-free shortcuts).
    """
    n = 3 * cfg.stem_channels * (49 if cfg.stem == "imagenet" else 9) + 2 * cfg.stem_channels
    layout = block_layout(cfg)
    for b, k in zip(layout, keep):
        nk = b.branches if k is None else len(k)
        ch = nk * b.width
        n += b.c_in * ch + 2 * ch  # reduce + BN
        n += ch * b.width * 9 + 2 * ch  # grouped 3x3 + BN
        n += ch * b.c_out + 2 * b.c_out  # expand (sum of per-branch expands) + BN
        if b.projection:
            n += b.c_in * b.c_out + 2 * b.c_out
    n += rows * layout[-1].c_out
    return n
