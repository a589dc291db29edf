"""The training loop: SGD Nesterov + cosine (paper) or one-cycle, coding loss, dropSubNN, DDP.

`train` = `run.setup_run` (data, model, optimizer, resume) then, per epoch, `train_one_epoch` and
`end_epoch` (`validate`, metrics.jsonl, checkpoints).

Determinism: the data order of epoch e is a permutation seeded by (seed, e), and every micro-batch
seeds torch's RNG from (seed, step, micro-batch index) before augmenting and drawing dropSubNN
masks (train/pipeline.py). Checkpoints hold the optimizer state, the step and the running sums of
the current epoch's train metrics, so a run killed after a checkpoint and resumed reaches the same
weights and the same metrics.jsonl as an uninterrupted one (bit-exact on CPU), with any number of
input workers. A torchrun job with W processes reproduces a single process with `grad_accum=W`:
each process runs micro-batch `rank` of every step, BatchNorm statistics are per micro-batch in
both (no SyncBatchNorm, which CPU/gloo lacks), gradients are averaged, and the epoch's train
metrics are summed over processes. The parameters then agree up to the float rounding of the
gradient all-reduce; BatchNorm running statistics differ slightly, because DDP keeps rank 0's (its
micro-batches only) while the single process folds in every micro-batch.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from .._io import write_text
from ..checkpoint import save_checkpoint
from ..errors import CodedResNeXtError
from ..model import to_input
from .config import TrainConfig
from .dist import Dist
from .evaluation import classifier_metrics
from .pipeline import augmentation, micro_seed, train_batches
from .run import Run, setup_run
from .schedule import lr_at


def train(cfg: TrainConfig) -> dict:
    """Train per `cfg`; writes config.json, metrics.jsonl, last.pt and best.pt under cfg.out."""
    cfg.validate()
    dist = Dist(cfg.device)
    try:
        run = setup_run(cfg, dist, Path(cfg.out))
        micros = [dist.rank * cfg.grad_accum + a for a in range(cfg.grad_accum)]
        batches = train_batches(
            cfg, run.train_ds, micros, run.micro_batches, (run.step, run.total), dist.device
        )
        while run.step < run.total:
            epoch = run.step // run.steps_per_epoch
            train_one_epoch(run, batches, epoch)
            end_epoch(run, epoch)
            dist.barrier()
        return {"step": run.step, "best_accuracy": run.best, "history": run.history, "out": str(run.out)}
    finally:
        dist.close()


# --- one epoch --------------------------------------------------------------------------------


def train_one_epoch(run: Run, batches: Iterator, epoch: int) -> None:
    """Optimizer steps until the end of `epoch` (or of the run), summing the train metrics."""
    cfg, dist, opt = run.cfg, run.dist, run.opt
    bar = _bar(cfg, dist, run, epoch)
    while run.step < run.total and run.step // run.steps_per_epoch == epoch:
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, run.step, run.total)
        run.model.train()
        opt.zero_grad(set_to_none=True)
        for a in range(cfg.grad_accum):
            imgs, labels, rng_state = next(batches)
            micro = dist.rank * cfg.grad_accum + a
            torch.manual_seed(micro_seed(cfg.seed, run.step, micro))  # CUDA generators: dropSubNN there
            torch.set_rng_state(rng_state)  # the CPU generator where the augmentation left it
            _micro_step(run, imgs, labels, sync=a == cfg.grad_accum - 1)
        opt.step()
        run.step += 1
        if not math.isfinite(float(run.sums[0])):
            raise CodedResNeXtError(f"loss became non-finite at step {run.step}; lower --lr")
        if bar is not None:
            seen = float(run.sums[3])
            bar.update(1)
            bar.set_postfix(
                ce=f"{float(run.sums[0]) / seen:.3f}",
                acc=f"{float(run.sums[2]) / seen:.3f}",
                lr=f"{opt.param_groups[0]['lr']:.4f}",
            )
        end_of_epoch = run.step % run.steps_per_epoch == 0 or run.step == run.total
        if cfg.save_every and run.step % cfg.save_every == 0 and not end_of_epoch:
            total_sums = dist.all_reduce(run.sums)
            if dist.main:
                save_checkpoint(
                    run.last,
                    run.model,
                    optimizer=opt.state_dict(),
                    epoch_sums=total_sums.tolist(),
                    **run.ckpt_extra(),
                )
    if bar is not None:
        bar.close()


def _micro_step(run: Run, imgs: torch.Tensor, labels: torch.Tensor, *, sync: bool) -> None:
    """Forward + backward of one micro-batch (gradients accumulate), adding to run.sums."""
    cfg, dist = run.cfg, run.dist
    x = to_input(imgs.to(dist.device, non_blocking=True), run.model_cfg.mean, run.model_cfg.std)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = labels.to(dist.device, non_blocking=True)
    # with path training the path pass's backward is the synced one (it all-reduces both)
    last = sync and not cfg.path_fraction
    ctx = run.net.no_sync() if (dist.world > 1 and not last) else contextlib.nullcontext()
    with ctx:
        with _autocast(dist.device):
            o = run.net(x, targets=y)
            ce = F.cross_entropy(o.logits.float(), y, label_smoothing=cfg.label_smoothing)
            code = torch.stack(o.coding_loss).sum() if o.coding_loss else ce.new_zeros(())
            loss = ce + cfg.mu * code
        (loss / cfg.grad_accum).backward()
    if cfg.path_fraction:
        _path_step(run, x, y, o.logits.detach(), sync=sync)
    with torch.no_grad():  # one host sync per micro-batch
        correct = (o.logits.argmax(1) == y).sum().float()
        vals = torch.stack([ce.float(), code.float(), correct, *[c.float() for c in o.coding_loss]])
    vals = vals.double().cpu()
    n = len(labels)
    s = run.sums
    s[0] += vals[0] * n
    s[1] += vals[1] * n
    s[2] += vals[2]
    s[3] += n
    s[4:] += vals[3:] * n


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _path_step(run: Run, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, *, sync: bool) -> None:
    """Path training: forward + backward of class paths alone, as the pruned class graphs run.

    The first `path_fraction` of the micro-batch runs again, each image through one class's path
    (its own class or another, half each), with cross-entropy on that path's logits weighted by
    `path_weight`. The model is in eval mode for it, so the path is exactly the graph export cuts:
    BatchNorm uses (and leaves) its running statistics and no branch is dropped. Slimmable networks
    train their sub-networks the same way; the paper's recipe trains only the whole network.
    """
    cfg = run.cfg
    P = max(1, round(cfg.path_fraction * len(y)))
    hard = cfg.path_negatives == "hardest"
    cls = _draw_paths(y[:P], logits[:P] if hard else None, run.model_cfg.num_classes)
    ctx = run.net.no_sync() if (run.dist.world > 1 and not sync) else contextlib.nullcontext()
    run.model.eval()
    try:
        with ctx, _autocast(run.dist.device):
            logits = run.net(x[:P], paths=cls).logits.float()
            loss = F.cross_entropy(logits, y[:P], label_smoothing=cfg.label_smoothing)
            (cfg.path_weight * loss / cfg.grad_accum).backward()
    finally:
        run.model.train()


def _draw_paths(y: torch.Tensor, logits: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """(P,) per sample the class whose path runs: its own or, as often, another one.

    The other class is the full model's strongest wrong class when `logits` are given (the
    negatives a detector confuses), else uniform over the other classes. Drawn from the
    micro-batch's seeded generator.
    """
    own = torch.rand(len(y), device=y.device) < 0.5
    if logits is not None:
        other = logits.scatter(1, y[:, None], float("-inf")).argmax(1)
    else:
        other = (y + torch.randint(1, num_classes, y.shape, device=y.device)) % num_classes
    return torch.where(own, y, other)


# --- end of an epoch --------------------------------------------------------------------------


def validate(run: Run) -> dict:
    """Test-split metrics of the model (FolderDataset splits decoded by the run's workers)."""
    return classifier_metrics(
        run.model,
        run.test_ds,
        device=run.dist.device,
        flip_tta=run.cfg.flip_tta,
        size=augmentation(run.cfg).size,  # as the in-memory path stores it
        workers=run.cfg.workers,
    )


def end_epoch(run: Run, epoch: int) -> None:
    """Sum the epoch's train metrics over processes; on rank 0 validate, log and checkpoint."""
    epoch_sums = run.dist.all_reduce(run.sums)
    run.sums = torch.zeros_like(run.sums)
    if not run.dist.main:
        return
    n = max(1.0, float(epoch_sums[3]))
    test = validate(run)
    spe = run.steps_per_epoch
    rec = {
        "epoch": epoch + (run.step % spe or spe) / spe,
        "step": run.step,
        "lr": run.opt.param_groups[0]["lr"],
        "train_accuracy": float(epoch_sums[2]) / n,
        "train_cross_entropy": float(epoch_sums[0]) / n,
        "train_coding_loss": (epoch_sums[4:] / n).tolist(),
        "test_accuracy": test["accuracy"],
        "test_cross_entropy": test["cross_entropy"],
        "test_coding_loss": test["coding_loss"],
        "early_decoder_accuracy": test["early_decoder_accuracy"],
        "test_images": len(run.test_ds),
        "elapsed_s": round(time.time() - run.t0, 1),
    }
    run.history.append(rec)
    write_text(run.out / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in run.history))
    if test["accuracy"] > run.best:
        run.best = test["accuracy"]
        save_checkpoint(run.out / "best.pt", run.model, metrics=rec, **run.ckpt_extra())
    save_checkpoint(run.last, run.model, optimizer=run.opt.state_dict(), metrics=rec, **run.ckpt_extra())
    if run.cfg.progress:
        print(
            f"epoch {rec['epoch']:.2f} step {run.step}: test acc {rec['test_accuracy']:.4f} "
            f"(train {rec['train_accuracy']:.4f}), early decoders "
            f"{[round(a, 3) for a in rec['early_decoder_accuracy']]}",
            flush=True,
        )


def _bar(cfg: TrainConfig, dist: Dist, run: Run, epoch: int):
    if not (cfg.progress and dist.main):
        return None
    from tqdm import tqdm

    spe = run.steps_per_epoch
    epochs = -(-run.total // spe)
    return tqdm(total=spe, initial=run.step % spe, desc=f"epoch {epoch + 1}/{epochs}", unit="step")
