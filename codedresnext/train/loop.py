"""The training loop: SGD Nesterov + cosine (paper) or one-cycle, coding loss, dropSubNN, DDP.

Determinism: the data order of epoch e is a permutation seeded by (seed, e), and every micro-batch
seeds torch's RNG from (seed, step, micro-batch index) before augmenting and drawing dropSubNN
masks. So a resumed run reproduces an uninterrupted one, and a torchrun job with W processes
reproduces a single process with `grad_accum=W` (BatchNorm statistics are per micro-batch in both).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__
from .._io import write_json, write_text
from ..checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from ..config import build_config
from ..data import ArrayDataset, load_dataset
from ..errors import CodedResNeXtError
from ..model import CodedResNeXt
from .augment import crop_flip, rand_augment, to_input
from .evaluation import classifier_metrics


@dataclass
class TrainConfig:
    preset: str = "tiny"
    data: str = "cifar10"
    out: str = "runs/run"
    epochs: int = 1
    max_steps: int | None = None  # stop (and end the schedule) after this many optimizer steps
    batch_size: int = 128  # global batch, over all processes and accumulation micro-batches
    lr: float | None = None  # default: 0.1 * batch_size / 512 (paper: 0.1 at 512)
    min_lr: float = 1e-5
    momentum: float = 0.9
    weight_decay: float = 5e-4
    mu: float = 6.0  # coding-loss weight
    p_drop: float = 0.1  # dropSubNN probability
    label_smoothing: float = 0.0
    schedule: str = "cosine"  # "cosine" (paper) or "onecycle" (linear warm-up, linear decay)
    warmup_frac: float = 0.0  # fraction of steps spent warming up
    randaugment: tuple[int, int] | None = None  # (num_ops, magnitude); None = preset default
    no_randaugment: bool = False
    seed: int = 0
    control: bool = False
    download: bool = False
    grad_accum: int = 1
    save_every: int = 0  # also checkpoint every N steps (0: only at epoch ends)
    eval_limit: int | None = None  # evaluate on the first N test images (None: all)
    flip_tta: bool = False  # average logits over the image and its mirror at evaluation
    channels_last: bool = True
    resume: bool = False
    device: str | None = None  # default: cuda if available
    progress: bool = True

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else 0.1 * self.batch_size / 512

    def resolved_randaugment(self, num_classes: int) -> tuple[int, int] | None:
        if self.no_randaugment:
            return None
        if self.randaugment is not None:
            return tuple(self.randaugment)
        return (1, 2) if num_classes >= 100 else (3, 4)  # METHOD.md section 4


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    base = cfg.resolved_lr()
    warm = int(cfg.warmup_frac * total)
    if step < warm:
        return base * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    if cfg.schedule == "cosine":
        return cfg.min_lr + 0.5 * (base - cfg.min_lr) * (1 + math.cos(math.pi * t))
    if cfg.schedule == "onecycle":
        return cfg.min_lr + (base - cfg.min_lr) * (1 - t)
    raise CodedResNeXtError(f"unknown schedule {cfg.schedule!r}; use 'cosine' or 'onecycle'")


def _micro_seed(seed: int, step: int, micro: int) -> int:
    return (seed * 1_000_003 + step * 10_007 + micro) % (2**63 - 1)


class _Dist:
    """torchrun environment (WORLD_SIZE, RANK, LOCAL_RANK); a no-op for one process."""

    def __init__(self, device: str | None) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device is None:
            device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.world > 1:
            import torch.distributed as dist

            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend)
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def train(cfg: TrainConfig) -> dict:
    """Train per `cfg`; writes config.json, metrics.jsonl, last.pt and best.pt under cfg.out."""
    dist = _Dist(cfg.device)
    out = Path(cfg.out)
    try:
        return _train(cfg, dist, out)
    finally:
        dist.close()


def _train(cfg: TrainConfig, dist: _Dist, out: Path) -> dict:
    train_ds = load_dataset(cfg.data, "train", download=cfg.download)
    test_ds = load_dataset(cfg.data, "test", download=cfg.download)
    if test_ds.class_names != train_ds.class_names:
        raise CodedResNeXtError("train/ and test/ have different class folders")
    if cfg.eval_limit:
        # a fixed random subset: the first N images of a sorted folder are all one class
        test_ds = test_ds.subset(np.random.default_rng(0).permutation(len(test_ds))[: cfg.eval_limit])
    model_cfg = build_config(cfg.preset, class_names=train_ds.class_names, control=cfg.control)
    torch.manual_seed(cfg.seed)
    model = CodedResNeXt(model_cfg)
    micro_per_rank, rem = divmod(cfg.batch_size, dist.world * cfg.grad_accum)
    if rem or micro_per_rank == 0:
        raise CodedResNeXtError(
            f"batch size {cfg.batch_size} must be a multiple of processes x grad_accum "
            f"({dist.world} x {cfg.grad_accum})"
        )
    steps_per_epoch = len(train_ds) // cfg.batch_size
    if steps_per_epoch == 0:
        raise CodedResNeXtError(f"batch size {cfg.batch_size} exceeds the {len(train_ds)} training images")
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.resolved_lr(), momentum=cfg.momentum,
                          nesterov=True, weight_decay=cfg.weight_decay)
    step, best, history = 0, -1.0, []
    last = out / "last.pt"
    if cfg.resume:
        if not last.exists():
            raise CodedResNeXtError(f"--resume: no checkpoint at {last}")
        model, state = load_checkpoint(last, expect=model_cfg)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.resolved_lr(), momentum=cfg.momentum,
                              nesterov=True, weight_decay=cfg.weight_decay)
        opt.load_state_dict(state["optimizer"])
        step, best = state["step"], state["best_accuracy"]
        history = [m for m in _read_metrics(out) if m["step"] <= step]
    elif dist.main and last.exists():
        raise CodedResNeXtError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    model.p_drop = cfg.p_drop
    model.to(dist.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    net: torch.nn.Module = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[dist.device] if dist.device.type == "cuda" else None)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", {"train": dataclasses.asdict(cfg), "model": model_cfg.to_dict(),
                                          "version": __version__, "world_size": dist.world})
    ra = cfg.resolved_randaugment(model_cfg.num_classes)
    amp = dist.device.type == "cuda"
    accum = cfg.grad_accum
    t0 = time.time()
    while step < total:
        epoch = step // steps_per_epoch
        perm = np.random.default_rng([cfg.seed, epoch]).permutation(len(train_ds))
        bar = _bar(cfg, dist, steps_per_epoch, epoch, step % steps_per_epoch)
        sums = {"ce": 0.0, "code": 0.0, "correct": 0, "seen": 0}
        code_blocks = np.zeros(len(model.coded_blocks))
        while step < total and step // steps_per_epoch == epoch:
            i = step % steps_per_epoch
            idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            for g in opt.param_groups:
                g["lr"] = lr_at(cfg, step, total)
            model.train()
            opt.zero_grad(set_to_none=True)
            for a in range(accum):
                micro = dist.rank * accum + a
                mb = idx[micro * micro_per_rank : (micro + 1) * micro_per_rank]
                torch.manual_seed(_micro_seed(cfg.seed, step, micro))
                imgs = torch.from_numpy(train_ds.images[mb])
                if ra is not None:
                    imgs = rand_augment(imgs, *ra)
                x = to_input(crop_flip(imgs), model_cfg.mean, model_cfg.std).to(dist.device)
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = torch.from_numpy(train_ds.labels[mb]).to(dist.device)
                sync = a == accum - 1 or dist.world == 1
                ctx = net.no_sync() if (dist.world > 1 and not sync) else _null()
                with ctx, torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=amp):
                    o = net(x, targets=y)
                    ce = F.cross_entropy(o.logits.float(), y, label_smoothing=cfg.label_smoothing)
                    code = torch.stack(o.coding_loss).sum() if o.coding_loss else ce.new_zeros(())
                    loss = (ce + cfg.mu * code) / accum
                    loss.backward()
                sums["ce"] += ce.item() * len(mb)
                sums["code"] += code.item() * len(mb)
                sums["correct"] += int((o.logits.argmax(1) == y).sum())
                sums["seen"] += len(mb)
                code_blocks += np.array([c.item() for c in o.coding_loss]) * len(mb)
            opt.step()
            step += 1
            if not math.isfinite(sums["ce"]):
                raise CodedResNeXtError(f"loss became non-finite at step {step}; lower --lr")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(ce=f"{sums['ce'] / sums['seen']:.3f}",
                                acc=f"{sums['correct'] / sums['seen']:.3f}", lr=f"{opt.param_groups[0]['lr']:.4f}")
            end_of_epoch = step % steps_per_epoch == 0 or step == total
            if dist.main and cfg.save_every and step % cfg.save_every == 0 and not end_of_epoch:
                save_checkpoint(last, model, optimizer=opt.state_dict(), step=step, best_accuracy=best)
        if bar is not None:
            bar.close()
        dist.barrier()
        if dist.main:
            n = max(1, sums["seen"])
            test = classifier_metrics(model, test_ds, device=dist.device, flip_tta=cfg.flip_tta)
            rec = {
                "epoch": epoch + (step % steps_per_epoch or steps_per_epoch) / steps_per_epoch,
                "step": step,
                "lr": opt.param_groups[0]["lr"],
                "train_accuracy": sums["correct"] / n,
                "train_cross_entropy": sums["ce"] / n,
                "train_coding_loss": (code_blocks / n).tolist(),
                "test_accuracy": test["accuracy"],
                "test_cross_entropy": test["cross_entropy"],
                "test_coding_loss": test["coding_loss"],
                "early_decoder_accuracy": test["early_decoder_accuracy"],
                "elapsed_s": round(time.time() - t0, 1),
            }
            history.append(rec)
            write_text(out / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in history))
            if test["accuracy"] > best:
                best = test["accuracy"]
                save_checkpoint(out / "best.pt", model, step=step, best_accuracy=best, metrics=rec)
            save_checkpoint(last, model, optimizer=opt.state_dict(), step=step, best_accuracy=best,
                            metrics=rec)
            if cfg.progress:
                print(f"epoch {rec['epoch']:.2f} step {step}: test acc {rec['test_accuracy']:.4f} "
                      f"(train {rec['train_accuracy']:.4f}), early decoders "
                      f"{[round(a, 3) for a in rec['early_decoder_accuracy']]}", flush=True)
        dist.barrier()
    return {"step": step, "best_accuracy": best, "history": history, "out": str(out)}


def _read_metrics(out: Path) -> list[dict]:
    f = out / "metrics.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.exists() else []


def _bar(cfg: TrainConfig, dist: _Dist, total: int, epoch: int, initial: int):
    if not (cfg.progress and dist.main):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step")


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


__all__ = ["TrainConfig", "train", "lr_at", "read_checkpoint", "ArrayDataset"]
