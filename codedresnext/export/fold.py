"""Fold a CodedResNeXt's BatchNorms into its convs -> float32 numpy arrays under names.* (torch).

Folding is done in float64 so the only rounding is the final cast to float32. The block's post-sum
BN folds into the expand weight (scale) and a bias that the graph adds after the division by
sqrt(norm2); the Gram matrices are computed from the *unfolded* expand weight, as the model does.
"""

from __future__ import annotations

import numpy as np

from . import names


def _fold(conv_w, bn) -> tuple[np.ndarray, np.ndarray]:
    import torch

    with torch.no_grad():
        w = conv_w.detach().double()
        scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
        bias = bn.bias.detach().double() - bn.running_mean.detach().double() * scale
        w = w * scale.view(-1, *([1] * (w.dim() - 1)))
    return w.float().numpy(), bias.float().numpy()


def fold_weights(model) -> dict[str, np.ndarray]:
    """model (CodedResNeXt, eval semantics) -> {name: float32 array} for graph building."""
    import torch

    W: dict[str, np.ndarray] = {}
    W[names.STEM_W], W[names.STEM_B] = _fold(model.stem[0].weight, model.stem[1])
    for i, blk in enumerate(model.blocks):
        W[names.w(i, "reduce")], W[names.b(i, "reduce")] = _fold(blk.reduce[0].weight, blk.reduce[1])
        W[names.w(i, "conv")], W[names.b(i, "conv")] = _fold(blk.conv[0].weight, blk.conv[1])
        W[names.w(i, "expand")], W[names.b(i, "expand")] = _fold(blk.expand.weight, blk.bn)
        if not isinstance(blk.shortcut, torch.nn.Identity):
            W[names.w(i, "shortcut")], W[names.b(i, "shortcut")] = _fold(
                blk.shortcut[0].weight, blk.shortcut[1]
            )
        if blk.coded:
            with torch.no_grad():
                W[names.gram(i)] = blk.gram().float().numpy()
    W[names.FC_W] = model.fc.weight.detach().float().numpy()
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in W.items()}


def head_weights(model) -> dict[str, np.ndarray]:
    """The model's fitted exit heads (exit_heads.py) under names.*; {} without heads."""
    heads = getattr(model, "exit_heads", None)
    if heads is None:
        return {}
    W = {}
    for i in sorted(heads.weights):
        W[names.w(i, "exit_head")] = np.ascontiguousarray(heads.weights[i], dtype=np.float32)
        W[names.b(i, "exit_head")] = np.ascontiguousarray(heads.biases[i], dtype=np.float32)
    return W
