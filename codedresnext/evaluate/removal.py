"""Branch specialisation (paper Fig. 2a): accuracy when k active or k inactive branches of one
coded block are removed, relative to each sample's TRUE class codeword.

Per draw and class, the removal order of the active (resp. inactive) branches is one seeded
permutation; removing k branches removes its first k, so the sets are nested in k. Samples are
grouped by class because the mask depends on the class.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data import ArrayDataset
from ..model import CodedResNeXt
from .inference import _batches, _input, forward_from, forward_prefix

KINDS = ("active", "inactive")


def removal_orders(codewords: np.ndarray, draws: int, seed: int) -> dict[str, np.ndarray]:
    """{kind: (draws, K, n_kind)} branch indices in removal order; codewords (K, N) 0/1."""
    codewords = np.asarray(codewords).astype(bool)
    out = {}
    for kind in KINDS:
        rows = []
        for d in range(draws):
            rng = np.random.default_rng([seed, d, KINDS.index(kind)])
            sel = codewords if kind == "active" else ~codewords
            rows.append([rng.permutation(np.nonzero(w)[0]) for w in sel])
        out[kind] = np.asarray(rows, dtype=np.int64)
    return out


def keep_mask(order: np.ndarray, k: int, n: int) -> np.ndarray:
    """(N,) float 0/1 keeping every branch except the first k of `order`."""
    keep = np.ones(n, np.float32)
    keep[order[:k]] = 0.0
    return keep


@torch.no_grad()
def removal_curves(
    model: CodedResNeXt,
    ds: ArrayDataset,
    *,
    coded_index: int = -1,
    draws: int = 3,
    seed: int = 0,
    batch_size: int = 250,
    progress: bool = False,
) -> dict:
    """Accuracy on `ds` for k = 0..N_act removed active / inactive branches of one coded block.

    `coded_index` counts coded blocks only (negative counts from the end). Lists are indexed by k;
    an inactive entry is None where the block has fewer than k inactive branches.
    """
    model.eval()
    ds = ds.subset(np.argsort(ds.labels, kind="stable"))  # class-sorted: few mask groups per batch
    coded = model.coded_blocks
    if not coded:
        raise ValueError("the model has no coded block (a control model): nothing to remove")
    j = coded_index if coded_index >= 0 else len(coded) + coded_index
    if not 0 <= j < len(coded):
        raise ValueError(
            f"coded block {coded_index} out of range: the model has {len(coded)} coded blocks "
            f"(0..{len(coded) - 1})"
        )
    bi = coded[j]
    words = model.blocks[bi].codewords.cpu().numpy()  # (K, N)
    n = words.shape[1]
    n_act = int(words[0].sum())
    orders = removal_orders(words, draws, seed)
    k_max = {"active": n_act, "inactive": min(n_act, n - n_act)}
    correct = {kind: np.zeros((n_act + 1, draws)) for kind in KINDS}
    for i in _batches(len(ds), batch_size, progress, f"removal (block {bi})"):
        x = _input(model, ds.images[i : i + batch_size])
        y = torch.from_numpy(ds.labels[i : i + batch_size])
        h = forward_prefix(model, x, bi)  # (B, C, H, W) input of the chosen block
        base = int((forward_from(model, h, bi)[0].argmax(1) == y).sum())
        for kind in KINDS:
            correct[kind][0] += base
        for c in torch.unique(y).tolist():
            sel = y == c
            hc = h[sel]
            for kind in KINDS:
                for k in range(1, k_max[kind] + 1):
                    for d in range(draws):
                        keeps = [None] * len(model.blocks)
                        keeps[bi] = torch.from_numpy(keep_mask(orders[kind][d, c], k, n))
                        pred = forward_from(model, hc, bi, keeps)[0].argmax(1)
                        correct[kind][k, d] += int((pred == c).sum())
    out = {
        "coded_block": j,
        "block_index": bi,
        "n_active": n_act,
        "branches": n,
        "draws": draws,
        "samples": len(ds),
        "k": list(range(n_act + 1)),
    }
    for kind in KINDS:
        acc = correct[kind] / max(len(ds), 1)  # (n_act + 1, draws)
        out[kind] = [float(acc[k].mean()) if k <= k_max[kind] else None for k in range(n_act + 1)]
        out[f"{kind}_draws"] = [acc[k].tolist() if k <= k_max[kind] else None for k in range(n_act + 1)]
    return out
