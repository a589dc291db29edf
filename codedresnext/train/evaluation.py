"""Full-model metrics on a dataset: accuracy, CE, coding loss and early-decoder accuracy per block."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data import ArrayDataset, FolderDataset
from ..model import CodedResNeXt, coding_loss, early_decode, to_input
from .pipeline import eval_images


@torch.no_grad()
def predict_arrays(
    model: CodedResNeXt,
    ds: ArrayDataset | FolderDataset,
    *,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
    flip_tta: bool = False,
    keep_classes: list[int] | None = None,
    progress: bool = False,
    size: int | None = None,
    workers: int = 0,
) -> dict[str, np.ndarray]:
    """Run the model over `ds`; returns logits (M, K) and energies per coded block (M, N).

    A FolderDataset is decoded at `size` (as load_dataset stores it) by `workers` processes."""
    model.eval()
    cfg = model.cfg
    logits, energies = [], []
    batches = eval_images(ds, batch_size, size=size, workers=workers)
    if progress:
        batches = tqdm(batches, total=-(-len(ds) // batch_size), desc="eval", unit="batch", leave=False)
    for imgs in batches:
        x = to_input(imgs.to(device), cfg.mean, cfg.std)
        out = model(x, keep_classes=keep_classes)
        lg = out.logits.float()
        if flip_tta:
            lg = (lg + model(x.flip(3), keep_classes=keep_classes).logits.float()) / 2
        logits.append(lg.cpu())
        energies.append([e.float().cpu() for e in out.energies])
    return {
        "logits": torch.cat(logits).numpy(),
        "energies": [torch.cat([e[j] for e in energies]).numpy() for j in range(len(energies[0]))]
        if energies and energies[0]
        else [],
    }


def classifier_metrics(model: CodedResNeXt, ds: ArrayDataset | FolderDataset, **kw) -> dict:
    """accuracy, cross_entropy, coding_loss[block], early_decoder_accuracy[block] on `ds`."""
    pred = predict_arrays(model, ds, **kw)
    labels = torch.from_numpy(ds.labels)
    logits = torch.from_numpy(pred["logits"])
    out = {
        "accuracy": float((logits.argmax(1) == labels).float().mean()),
        "cross_entropy": float(F.cross_entropy(logits, labels)),
        "coding_loss": [],
        "early_decoder_accuracy": [],
    }
    coded = [b for b in model.blocks if b.coded]
    for b, e in zip(coded, pred["energies"]):
        e = torch.from_numpy(e)
        words = b.codewords.cpu()
        out["coding_loss"].append(
            float(coding_loss(e, words[labels], b.ratio, model.cfg.loss_power, model.cfg.loss_threshold))
        )
        dist = early_decode(e, words)
        out["early_decoder_accuracy"].append(float((dist.argmin(1) == labels).float().mean()))
    return out
