"""Training: loop, coding loss (in the model), dropSubNN masks, checkpoints, DDP via torchrun."""

from .loop import TrainConfig, train

__all__ = ["TrainConfig", "train"]
