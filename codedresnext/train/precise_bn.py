"""Precise BatchNorm: recompute a trained model's BN statistics on clean images, dropSubNN off.

Why: in training, dropSubNN zeroes branches and rescales the survivors by 1/(1 - p), and the
images are augmented, so the running statistics of every BatchNorm after a coded block describe a
noisier input than inference sees (all branches on, plain images). Averaging them once more over
un-augmented training images with p = 0 removes that train/test shift; the weights do not change.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data import ArrayDataset, FolderDataset
from ..errors import CodedResNeXtError
from ..model import CodedResNeXt, to_input
from .config import PRECISE_BN_IMAGES as DEFAULT_IMAGES
from .pipeline import eval_images


def bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_bn(
    model: CodedResNeXt,
    ds: ArrayDataset | FolderDataset,
    *,
    images: int = DEFAULT_IMAGES,
    batch_size: int = 250,
    seed: int = 0,
    device: str | torch.device = "cpu",
    size: int | None = None,
    workers: int = 0,
    progress: bool = False,
) -> int:
    """Reset every BN layer's running mean/var and re-estimate them as the equal-weight average over
    batches of a seeded random subset of `images` images of `ds`; returns the images used.

    The model is left in eval mode with its dropSubNN probability unchanged."""
    if images < 1 or batch_size < 1:
        raise CodedResNeXtError(
            f"precise BN needs images >= 1 and batch_size >= 1, not {images}, {batch_size}"
        )
    if len(ds.class_names) != model.cfg.num_classes:
        raise CodedResNeXtError(
            f"the data has {len(ds.class_names)} classes but the model {model.cfg.num_classes}; "
            "recalibrate on the dataset the model was trained on"
        )
    bns = bn_layers(model)
    if not bns:
        raise CodedResNeXtError("the model has no BatchNorm layers to recalibrate")
    idx = np.sort(np.random.default_rng(seed).permutation(len(ds))[: min(images, len(ds))])
    subset = ds.subset(idx)
    momenta = [bn.momentum for bn in bns]
    p_drop = model.p_drop
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: every batch weighs the same
    model.to(device)
    model.p_drop = 0.0
    model.train()
    batches = eval_images(subset, batch_size, size=size, workers=workers)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, total=-(-len(subset) // batch_size), desc="precise BN", unit="batch")
    try:
        for imgs in batches:
            model(to_input(imgs.to(device), model.cfg.mean, model.cfg.std))
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        model.p_drop = p_drop
        model.eval()
    return len(subset)
