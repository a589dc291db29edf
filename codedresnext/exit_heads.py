"""Learned early-exit heads (beyond the paper): a linear classifier on each coded block's output,
average-pooled to pool x pool cells, fitted on training images after training (the network frozen).

Why: the paper's early decoder (docs/method.md section 6, the codeword distance of the branch
energies) reads only N numbers per block. A linear head on the block's 2x2-pooled output also reads
where in the image the features are: it is more accurate at the same blocks, and the cascade stops
more samples (docs/early-exit.md). The heads live in the checkpoint (`exit_heads`), not in the trained module:
training never sees them, `fit-exits` adds them, and the exporter puts them into the segments'
and the multi-exit graph's exits (AveragePool -> Flatten -> Gemm -> Softmax, the Gemm in float32).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import CheckpointError, CodedResNeXtError
from .model import to_input

DEFAULT_POOL = 2
L2_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)  # `auto`: per block, the best held-out log-loss
HOLDOUT = 0.2  # of the fitting images, for choosing the L2 penalty


@dataclass
class ExitHeads:
    """Per coded block index: scores = softmax(pooled(h) @ weight.T + bias), pooled(h) (B, C*pool*pool)
    in (channel, row, column) order, as Flatten of AveragePool writes it."""

    pool: int
    weights: dict[int, np.ndarray]  # (K, C*pool*pool) float32
    biases: dict[int, np.ndarray]  # (K,) float32
    fitted: dict[str, Any] = field(default_factory=dict)  # how: images, l2, data, accuracies

    def to_state(self) -> dict:
        """Plain containers and tensors (checkpoints load with weights_only=True)."""
        return {
            "pool": self.pool,
            "blocks": {
                str(i): {
                    "weight": torch.from_numpy(self.weights[i]),
                    "bias": torch.from_numpy(self.biases[i]),
                }
                for i in sorted(self.weights)
            },
            "fitted": dict(self.fitted),
        }

    @classmethod
    def from_state(cls, state: Any, model, where: str) -> ExitHeads:
        """Check the heads against the model they are attached to; CheckpointError if they do not fit."""
        try:
            pool = int(state["pool"])
            blocks = {int(k): v for k, v in state["blocks"].items()}
            weights = {i: v["weight"].float().numpy() for i, v in blocks.items()}
            biases = {i: v["bias"].float().numpy() for i, v in blocks.items()}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(
                f"{where}: damaged exit heads ({e}); refit them with `codedresnext fit-exits`"
            ) from e
        heads = cls(pool, weights, biases, dict(state.get("fitted", {})))
        heads.check(model, where)
        return heads

    def check(self, model, where: str) -> None:
        K = model.cfg.num_classes
        for i, w in self.weights.items():
            if not 0 <= i < len(model.blocks) or not model.blocks[i].coded:
                raise CheckpointError(f"{where}: an exit head for block {i}, which is not a coded block")
            want = (K, model.blocks[i].c_out * self.pool * self.pool)
            if w.shape != want or self.biases[i].shape != (K,):
                raise CheckpointError(
                    f"{where}: exit head of block {i} has shape {w.shape}, the model needs {want}; "
                    "refit them with `codedresnext fit-exits`"
                )


def pooled(h, pool: int):
    """(B, C, H, W) block output -> (B, C*pool*pool) cell means (torch)."""
    if h.shape[2] % pool or h.shape[3] % pool:
        raise CodedResNeXtError(
            f"pool={pool}: {pool}x{pool} cells do not tile a {tuple(h.shape[2:])} block output; "
            "pick a pool that divides it"
        )
    return F.avg_pool2d(h.float(), (h.shape[2] // pool, h.shape[3] // pool)).flatten(1)


def head_scores(heads: ExitHeads, block: int, h):
    """Softmax scores (B, K) of block `block`'s exit head on its output h (torch, float32)."""
    w = torch.from_numpy(heads.weights[block]).to(h.device)
    b = torch.from_numpy(heads.biases[block]).to(h.device)
    return torch.softmax(pooled(h, heads.pool) @ w.T + b, 1)


def block_features(
    model, images: np.ndarray, pool: int, *, batch: int = 500, progress: Callable | None = None
):
    """{coded block: (n, C*pool*pool) float32} pooled outputs of every coded block (eval mode)."""
    model.eval()
    out: dict[int, list[np.ndarray]] = {i: [] for i in model.coded_blocks}
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = to_input(
                torch.from_numpy(np.ascontiguousarray(images[s : s + batch])), model.cfg.mean, model.cfg.std
            )
            h = model.stem(x)
            for i, blk in enumerate(model.blocks):
                h, _ = blk(h)
                if i in out:
                    out[i].append(pooled(h, pool).numpy())
            if progress:
                progress(min(batch, len(images) - s))
    return {i: np.concatenate(v) for i, v in out.items()}


def fit_linear(
    x: np.ndarray, y: np.ndarray, classes: int, l2: float, iters: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression with an L2 penalty on standardised features (L-BFGS, float64);
    the standardisation is folded into the returned (weight (K, D), bias (K,))."""
    X = torch.from_numpy(x.astype(np.float64))
    mu, sd = X.mean(0), X.std(0) + 1e-6
    Z = (X - mu) / sd
    t = torch.from_numpy(np.asarray(y, np.int64))
    W = torch.zeros(classes, Z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=iters, line_search_fn="strong_wolfe", tolerance_grad=1e-9)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(Z @ W.T + b, t) + 0.5 * l2 * (W * W).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        w = W / sd
        bias = b - (w * mu).sum(1)
    return w.float().numpy(), bias.float().numpy()


def choose_l2(x: np.ndarray, y: np.ndarray, classes: int, *, seed: int = 0) -> tuple[float, dict[str, float]]:
    """The L2 penalty of L2_GRID whose head has the lowest cross-entropy on a held-out 20% of the
    fitting images: the exits are gated on the heads' confidence, so calibration, not only accuracy,
    decides what they save (unpenalised heads of later blocks fit the training images almost
    perfectly and are overconfident on new ones)."""
    idx = np.random.default_rng(seed).permutation(len(y))
    n_val = max(1, int(len(y) * HOLDOUT))
    val, fit = idx[:n_val], idx[n_val:]
    losses = {}
    for l2 in L2_GRID:
        w, b = fit_linear(x[fit], y[fit], classes, l2)
        z = torch.from_numpy(x[val]) @ torch.from_numpy(w).T + torch.from_numpy(b)
        losses[f"{l2:g}"] = float(torch.nn.functional.cross_entropy(z, torch.from_numpy(np.asarray(y)[val])))
    best = min(L2_GRID, key=lambda v: losses[f"{v:g}"])
    return best, losses


def fit_exit_heads(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    pool: int = DEFAULT_POOL,
    l2: float | None = None,
    seed: int = 0,
    progress: Callable | None = None,
) -> ExitHeads:
    """One head per coded block, fitted on (images (n, H, W, 3) uint8, labels) with the model frozen;
    l2 None: chosen per block by choose_l2, then refitted on all the images."""
    feats = block_features(model, images, pool, progress=progress)
    labels = np.asarray(labels, np.int64)
    weights, biases, chosen, losses = {}, {}, {}, {}
    for i, x in feats.items():
        if l2 is None:
            chosen[i], losses[i] = choose_l2(x, labels, model.cfg.num_classes, seed=seed)
        else:
            chosen[i] = l2
        weights[i], biases[i] = fit_linear(x, labels, model.cfg.num_classes, chosen[i])
    train_acc = {
        str(i): float(((x @ weights[i].T + biases[i]).argmax(1) == labels).mean()) for i, x in feats.items()
    }
    fitted = {"images": int(len(labels)), "pool": pool, "l2": {str(i): v for i, v in chosen.items()}}
    fitted["train_accuracy"] = train_acc  # from the features already computed: no second pass
    if losses:
        fitted["l2_heldout_log_loss"] = {str(i): v for i, v in losses.items()}
    heads = ExitHeads(pool, weights, biases, fitted)
    heads.check(model, "fitted heads")
    return heads


def head_accuracy(model, heads: ExitHeads, images: np.ndarray, labels: np.ndarray) -> dict[int, float]:
    """{coded block: top-1 of its exit head} on (images, labels)."""
    feats = block_features(model, images, heads.pool)
    out = {}
    for i, x in feats.items():
        z = torch.from_numpy(x) @ torch.from_numpy(heads.weights[i]).T + torch.from_numpy(heads.biases[i])
        out[i] = float((z.argmax(1).numpy() == np.asarray(labels)).mean())
    return out
