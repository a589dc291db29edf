"""PyTorch passes over a dataset that share work between the full model and the class paths.

Blocks before the first coded block are the same for every class path (nothing is masked
there), so each batch runs them once and only the coded part runs once per class. The result for
class k is exactly model(x, keep_classes=[k]).logits[:, k] (tests check this).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ..data import ArrayDataset
from ..exit_heads import head_scores
from ..model import CodedResNeXt, to_input


def forward_prefix(model: CodedResNeXt, x: Tensor, stop: int) -> Tensor:
    """Stem and blocks [0, stop) unmasked: (B, 3, H, W) -> the input of block `stop`."""
    h = model.stem(x)
    for b in model.blocks[:stop]:
        h, _ = b(h)
    return h


def forward_from(
    model: CodedResNeXt,
    h: Tensor,
    start: int,
    keeps: Sequence[Tensor | None] | None = None,
    *,
    outputs: list[Tensor] | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """Blocks [start, end) with per-block (N,) keep masks, then pool and fc (eval mode, no drop).

    Returns logits (B, K) and the normalised energies (B, N) of the coded blocks that ran; their
    outputs (B, C, H', W') are appended to `outputs` when given (for the exit heads).
    """
    keeps = list(keeps) if keeps is not None else [None] * len(model.blocks)
    energies = []
    for b, keep in zip(model.blocks[start:], keeps[start:]):
        h, e = b(h, keep)
        if e is not None:
            energies.append(e)
            if outputs is not None:
                outputs.append(h)
    return model.fc(h.mean((2, 3))), energies


def _batches(n: int, batch_size: int, progress: bool, desc: str):
    rng = range(0, n, batch_size)
    if progress:
        return tqdm(rng, desc=desc, unit="batch", leave=False)
    return rng


def _input(model: CodedResNeXt, images: np.ndarray) -> Tensor:
    x = to_input(torch.from_numpy(np.ascontiguousarray(images)), model.cfg.mean, model.cfg.std)
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def run_passes(
    model: CodedResNeXt,
    ds: ArrayDataset,
    *,
    full: bool = True,
    class_paths: bool = True,
    flip_tta: bool = False,
    batch_size: int = 250,
    progress: bool = False,
    desc: str = "eval",
) -> dict:
    """One sweep over `ds`.

    Returns "logits" (M, K) of the full model (flip-averaged if flip_tta), "logits_plain" (without
    the flip) and "energies" (list
    over coded blocks of (M, N)) when `full`, and then also "exit_head_predictions" ({coded block:
    (M,) argmax of its exit head, no flip}) if the model has exit heads; "binary" (M, K) with
    column k = class k's path logit (the masked model, = the pruned class graph's output) when
    `class_paths`.
    """
    model.eval()
    coded = model.coded_blocks
    first = coded[0] if coded else len(model.blocks)
    masks = [model.keep_masks([k]) for k in range(model.cfg.num_classes)] if class_paths else []
    heads = getattr(model, "exit_heads", None) if full else None
    logits, plain, energies, binary = [], [], [], []
    exits: dict[int, list[np.ndarray]] = {b: [] for b in coded if heads is not None and b in heads.weights}
    for i in _batches(len(ds), batch_size, progress, desc):
        x = _input(model, ds.images[i : i + batch_size])  # (B, 3, H, W)
        h = forward_prefix(model, x, first)
        if full:
            outs: list[Tensor] = []
            lg, en = forward_from(model, h, first, outputs=outs if exits else None)
            for b, o in zip(coded, outs):
                if b in exits:
                    exits[b].append(head_scores(heads, b, o).argmax(1).numpy())
            plain.append(lg.float().numpy())
            if flip_tta:
                lg = (lg + model(x.flip(3)).logits) / 2
            logits.append(lg.float().numpy())
            energies.append([e.float().numpy() for e in en])
        if class_paths:
            cols = [forward_from(model, h, first, masks[k])[0][:, k] for k in range(len(masks))]
            binary.append(torch.stack(cols, 1).float().numpy())  # (B, K)
    out: dict = {}
    if full:
        out["logits"] = np.concatenate(logits)
        out["logits_plain"] = np.concatenate(plain)
        out["energies"] = [np.concatenate([e[j] for e in energies]) for j in range(len(coded))]
        if heads is not None:
            out["exit_head_predictions"] = {b: np.concatenate(p) for b, p in exits.items()}
    if class_paths:
        out["binary"] = np.concatenate(binary)
    return out
