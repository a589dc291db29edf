"""Training: loop, coding loss (in the model), dropSubNN masks, checkpoints, DDP via torchrun.

The package itself imports no torch, so the CLI reads `TrainConfig`'s defaults while building every
command's parser (`prune` included); the loop is `codedresnext.train.loop.train` (torch).
"""

from __future__ import annotations

from .config import TrainConfig

__all__ = ["TrainConfig"]
