"""Batch augmentation on uint8 tensors (pad-4 crop, flip) and per-sample RandAugment."""

from __future__ import annotations

import torch
from torch import Tensor


def crop_flip(images: Tensor, pad: int = 4) -> Tensor:
    """(B, H, W, 3) uint8 -> (B, H, W, 3) uint8 with a random zero-padded crop and a random h-flip.

    Draws from torch's global RNG, which the trainer seeds per micro-batch.
    """
    B, H, W, _ = images.shape
    padded = torch.nn.functional.pad(images, (0, 0, pad, pad, pad, pad))  # (B, H+2p, W+2p, 3)
    oy = torch.randint(0, 2 * pad + 1, (B,))
    ox = torch.randint(0, 2 * pad + 1, (B,))
    flip = torch.rand(B) < 0.5
    rows = oy[:, None] + torch.arange(H)  # (B, H)
    cols = ox[:, None] + torch.arange(W)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    b = torch.arange(B)[:, None, None]
    return padded[b, rows[:, :, None], cols[:, None, :]]  # (B, H, W, 3)


def rand_augment(images: Tensor, num_ops: int, magnitude: int) -> Tensor:
    """torchvision RandAugment(num_ops, magnitude) per sample on (B, H, W, 3) uint8."""
    from torchvision.transforms import v2

    ra = v2.RandAugment(num_ops=num_ops, magnitude=magnitude)
    chw = images.permute(0, 3, 1, 2)
    return torch.stack([ra(im) for im in chw]).permute(0, 2, 3, 1)


def to_input(images: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 normalised (the model's input convention)."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s
