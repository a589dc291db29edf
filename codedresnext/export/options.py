"""ExportOptions: every `export_graphs` setting in one typed place (the CLI builds one).

Grouped as the export runs: where the weights come from, which graphs are written, how each is
verified against PyTorch, and how the output directory is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from . import quantize as Q

DEFAULT_CALIBRATION_IMAGES = 512
DEFAULT_EVAL_IMAGES = 2000
DEFAULT_TOLERANCE = 1e-4
DEFAULT_FP16_TOLERANCE = 5e-2  # abs on logits/scores for FP16 graphs vs the float32 PyTorch reference


@dataclass(frozen=True)
class Int8Options:
    """`export --int8`: calibration data and how the INT8 twins are calibrated (export/int8.py)."""

    calibration: str | os.PathLike
    images: int = DEFAULT_CALIBRATION_IMAGES
    method: str = Q.DEFAULT_METHOD
    percentile: float = Q.DEFAULT_PERCENTILE  # for method "percentile"
    precisions: tuple[str, ...] = Q.INT8_PRECISIONS
    eval_images: int = DEFAULT_EVAL_IMAGES
    seed: int = 0
    batch: int = 32


@dataclass(frozen=True)
class ExportOptions:
    """What one export writes and how. `out` is the directory written (atomically).

    Source: exactly one of `checkpoint` / `preset` (random weights, seeded by `seed`), unless
    `export_graphs` is given an in-memory model. Graphs: classes "all" or class names -> one binary
    graph per class; subsets: lists of class names -> one graph each; segments: True for the
    default cuts, "all" for a cut after every coded block, or block indices to cut after;
    reject_block: block index for early-reject pairs, or "all" for one reject probe per class that
    gives the pair's distance at every coded block (classes default to all); int8: INT8 twins of
    every fp32 graph (export/int8.py). Verification: `verify_batch` fresh random inputs and
    `verify_images` real images (from `images`, 0: skip those) per graph, within `tolerance`
    (`fp16_tolerance` for FP16 graphs).
    """

    out: str | os.PathLike
    # source
    checkpoint: str | os.PathLike | None = None
    preset: str | None = None
    seed: int = 0
    # which graphs
    classes: str | Sequence[str] | None = None
    subsets: Sequence[Sequence[str]] = ()
    multi_exit: bool = False
    segments: bool | str | Sequence[int] = False
    masked: bool = False
    reject_block: int | str | None = None
    uint8: bool = False
    fp16: bool = False
    int8: Int8Options | None = None
    opset: int = 17
    # verification
    verify: bool = True
    tolerance: float = DEFAULT_TOLERANCE
    fp16_tolerance: float = DEFAULT_FP16_TOLERANCE
    images: str | os.PathLike | None = None
    verify_batch: int = 4
    verify_images: int = 16
    # writing
    overwrite: bool = False
    progress: bool = True
