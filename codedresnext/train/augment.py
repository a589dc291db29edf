"""Training augmentation on uint8 image batches, on any device (CPU, or the GPU it trains on).

Every random parameter is drawn from torch's global CPU generator (the trainer seeds it per
micro-batch), whatever device holds the pixels: a batch gets the same crops, flips and RandAugment
ops on CPU and CUDA, in the main process or a DataLoader worker, so a resumed run sees the batches
an uninterrupted one saw. The ops are batched: one kernel per op for all samples that drew it, not
one Python call per sample.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

MAGNITUDE_BINS = 31  # RandAugment magnitudes 0..30, as torchvision's default num_magnitude_bins

# RandAugment's op space (Cubuk et al. 2020, as in torchvision's RandAugment): name -> (max at
# magnitude 30, signed). The translate maximum is a fraction of the image side (150/331).
RANDAUGMENT_OPS: dict[str, tuple[float, bool]] = {
    "identity": (0.0, False),
    "shear_x": (0.3, True),
    "shear_y": (0.3, True),
    "translate_x": (150.0 / 331.0, True),
    "translate_y": (150.0 / 331.0, True),
    "rotate": (30.0, True),
    "brightness": (0.9, True),
    "color": (0.9, True),
    "contrast": (0.9, True),
    "sharpness": (0.9, True),
    "posterize": (4.0, False),  # bits removed: 8 - round(4 * m / 30) kept
    "solarize": (1.0, False),  # threshold 255 * (1 - m / 30)
    "autocontrast": (0.0, False),
    "equalize": (0.0, False),
}
_OP_NAMES = tuple(RANDAUGMENT_OPS)


def crop_flip(images: Tensor, pad: int = 4) -> Tensor:
    """(B, H, W, 3) uint8 -> (B, H, W, 3) uint8 with a random zero-padded crop and a random h-flip.

    Draws 3 x B numbers from the global CPU generator (offsets y, x, then flips); the gather runs
    where `images` are.
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
    dev = images.device
    return padded[b.to(dev), rows[:, :, None].to(dev), cols[:, None, :].to(dev)]  # (B, H, W, 3)


def hflip(images: Tensor) -> Tensor:
    """(B, H, W, 3): mirror a random half (one CPU draw per sample)."""
    flip = (torch.rand(len(images)) < 0.5).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(2), images)


def _apply_op(x: Tensor, op: str, mag: float) -> Tensor:
    """One RandAugment op on (n, 3, H, W) uint8 with a signed magnitude in op units."""
    from torchvision.transforms.v2 import functional as F

    H, W = x.shape[-2:]
    if op == "identity":
        return x
    if op in ("shear_x", "shear_y"):
        deg = math.degrees(math.atan(mag))
        shear = [deg, 0.0] if op == "shear_x" else [0.0, deg]
        return F.affine(x, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, center=[0, 0])
    if op in ("translate_x", "translate_y"):
        shift = [int(mag * W), 0] if op == "translate_x" else [0, int(mag * H)]
        return F.affine(x, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0])
    if op == "rotate":
        return F.rotate(x, mag)
    enhance = {
        "brightness": F.adjust_brightness,
        "color": F.adjust_saturation,
        "contrast": F.adjust_contrast,
        "sharpness": F.adjust_sharpness,
    }
    if op in enhance:
        return enhance[op](x, 1.0 + mag)
    if op == "posterize":
        return F.posterize(x, 8 - int(round(mag)))
    if op == "solarize":
        return F.solarize(x, 255.0 * (1.0 - mag))
    if op == "autocontrast":
        return F.autocontrast(x)
    if op == "equalize":
        return F.equalize(x)
    raise ValueError(f"unknown RandAugment op {op!r}")


def rand_augment(images: Tensor, num_ops: int, magnitude: int) -> Tensor:
    """RandAugment(num_ops, magnitude) per sample on (B, H, W, 3) uint8: each sample draws its own
    `num_ops` ops (uniformly, with replacement) and signs; samples that drew the same op and sign in
    a round are transformed together. Draws 2 x B numbers per round from the global CPU generator.
    """
    if not 0 <= magnitude < MAGNITUDE_BINS:
        raise ValueError(f"RandAugment magnitude must be in [0, {MAGNITUDE_BINS - 1}], not {magnitude}")
    B = len(images)
    x = images.permute(0, 3, 1, 2).contiguous()  # (B, 3, H, W)
    for _ in range(num_ops):
        ops = torch.randint(len(_OP_NAMES), (B,))
        neg = torch.rand(B) < 0.5
        key = ops * 2 + neg.long()
        for k in torch.unique(key).tolist():
            op = _OP_NAMES[k // 2]
            peak, signed = RANDAUGMENT_OPS[op]
            if op == "identity":
                continue
            mag = peak * magnitude / (MAGNITUDE_BINS - 1)
            if signed and k % 2:
                mag = -mag
            idx = torch.nonzero(key == k).squeeze(1).to(x.device)
            x[idx] = _apply_op(x[idx], op, mag)
    return x.permute(0, 2, 3, 1)


def resized_crop_params(
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random-resized crop (Inception-style: area fraction in `scale`, log-
    uniform aspect ratio, 10 tries, else the centre crop with the ratio clamped). Global CPU RNG."""
    area = height * width
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(2).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        r = math.exp(log_r[0] + (log_r[1] - log_r[0]) * u[1])
        w = int(round(math.sqrt(target * r)))
        h = int(round(math.sqrt(target / r)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,)))
            left = int(torch.randint(0, width - w + 1, (1,)))
            return top, left, h, w
    r = width / height
    if r < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif r > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(image: Tensor, size: int) -> Tensor:
    """(3, H, W) uint8 -> (3, size, size) uint8: a random-resized crop (bilinear, antialiased)."""
    from torchvision.transforms.v2 import functional as F

    top, left, h, w = resized_crop_params(*image.shape[-2:])
    return F.resized_crop(image, top, left, h, w, [size, size], antialias=True)
