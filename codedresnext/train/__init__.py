"""Training: loop, coding loss (in the model), dropSubNN masks, checkpoints, DDP via torchrun.

`TrainConfig` imports no torch (the CLI reads its defaults while building every command's parser,
`prune` included); `train` loads the loop, and torch, on first use.
"""

from __future__ import annotations

from .config import TrainConfig


def __getattr__(name: str):
    if name == "train":
        from .loop import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TrainConfig", "train"]
