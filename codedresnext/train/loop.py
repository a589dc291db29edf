"""The training loop: SGD Nesterov + cosine (paper) or one-cycle, coding loss, dropSubNN, DDP.

Determinism: the data order of epoch e is a permutation seeded by (seed, e), and every micro-batch
seeds torch's RNG from (seed, step, micro-batch index) before augmenting and drawing dropSubNN
masks. Checkpoints hold the optimizer state, the step and the running sums of the current epoch's
train metrics, so a run killed after a checkpoint and resumed reaches the same weights and the same
metrics.jsonl as an uninterrupted one (bit-exact on CPU). A torchrun job with W processes
reproduces a single process with `grad_accum=W`: each process runs micro-batch `rank` of every
step, BatchNorm statistics are per micro-batch in both (no SyncBatchNorm, which CPU/gloo lacks),
gradients are averaged, and the epoch's train metrics are summed over processes. The parameters
then agree up to the float rounding of the gradient all-reduce; BatchNorm running statistics
differ slightly, because DDP keeps rank 0's (its micro-batches only) while the single process
folds in every micro-batch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__
from .._io import write_json, write_text
from ..checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from ..config import PRESETS, build_config
from ..data import ArrayDataset, load_dataset
from ..errors import CodedResNeXtError, DataError
from ..model import CodedResNeXt
from .augment import crop_flip, rand_augment, to_input
from .evaluation import classifier_metrics

AUTO_EVAL_LIMIT = 2000  # test images evaluated by default in --max-steps runs

# settings that shape the trajectory: resuming with other values cannot match an uninterrupted run
_TRAJECTORY = (
    "epochs",
    "max_steps",
    "batch_size",
    "lr",
    "min_lr",
    "momentum",
    "weight_decay",
    "mu",
    "p_drop",
    "label_smoothing",
    "schedule",
    "warmup_frac",
    "randaugment",
    "no_randaugment",
    "seed",
    "image_size",
    "channels_last",
)


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
    # evaluate on a fixed random subset of N test images; 0: all; None: all, or
    # AUTO_EVAL_LIMIT when max_steps is set (short runs should not wait for a full test pass)
    eval_limit: int | None = None
    image_size: int | None = None  # store ImageFolder images as N x N (needed for mixed sizes)
    flip_tta: bool = False  # average logits over the image and its mirror at evaluation
    channels_last: bool = True
    resume: bool = False
    device: str | None = None  # default: cuda if available
    progress: bool = True

    def validate(self) -> None:
        """Reject settings that cannot train, before any data is read."""
        if self.preset not in PRESETS:
            raise CodedResNeXtError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        checks = [
            (self.epochs >= 1, f"--epochs must be >= 1, not {self.epochs}"),
            (
                self.max_steps is None or self.max_steps >= 1,
                f"--max-steps must be >= 1, not {self.max_steps}",
            ),
            (self.batch_size >= 1, f"--batch-size must be >= 1, not {self.batch_size}"),
            (self.grad_accum >= 1, f"--grad-accum must be >= 1, not {self.grad_accum}"),
            (self.lr is None or self.lr > 0, f"--lr must be > 0, not {self.lr}"),
            (0.0 <= self.p_drop < 1.0, f"--p-drop must be in [0, 1), not {self.p_drop}"),
            (self.mu >= 0, f"--mu must be >= 0, not {self.mu}"),
            (
                0.0 <= self.label_smoothing < 1.0,
                f"--label-smoothing must be in [0, 1), not {self.label_smoothing}",
            ),
            (0.0 <= self.warmup_frac < 1.0, f"--warmup-frac must be in [0, 1), not {self.warmup_frac}"),
            (
                self.schedule in ("cosine", "onecycle"),
                f"unknown schedule {self.schedule!r}; use cosine or onecycle",
            ),
            (self.save_every >= 0, f"--save-every must be >= 0, not {self.save_every}"),
            (
                self.eval_limit is None or self.eval_limit >= 0,
                f"--eval-limit must be >= 0, not {self.eval_limit}",
            ),
            (
                self.image_size is None or self.image_size >= 8,
                f"--image-size must be >= 8, not {self.image_size}",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise CodedResNeXtError(msg)

    def resolved_eval_limit(self) -> int | None:
        if self.eval_limit is None:
            return AUTO_EVAL_LIMIT if self.max_steps is not None else None
        return self.eval_limit or None

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else 0.1 * self.batch_size / 512

    def resolved_randaugment(self, num_classes: int) -> tuple[int, int] | None:
        if self.no_randaugment:
            return None
        if self.randaugment is not None:
            return tuple(self.randaugment)
        if self.preset in ("tiny", "small"):  # CPU presets: per-sample RandAugment would triple its step time
            return None
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
        elif device == "cuda":  # one GPU per process under torchrun
            device = f"cuda:{local}"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise CodedResNeXtError(f"--device {device}: CUDA is not available here; use --device cpu")
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

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of `t` over processes (a copy; `t` itself for one process)."""
        if self.world == 1:
            return t
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            t = t.to(self.device)
        t = t.clone()
        dist.all_reduce(t)
        return t.cpu()

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def train(cfg: TrainConfig) -> dict:
    """Train per `cfg`; writes config.json, metrics.jsonl, last.pt and best.pt under cfg.out."""
    cfg.validate()
    dist = _Dist(cfg.device)
    out = Path(cfg.out)
    try:
        return _train(cfg, dist, out)
    finally:
        dist.close()


def _load_data(cfg: TrainConfig, dist: _Dist) -> tuple[ArrayDataset, ArrayDataset]:
    """Both splits; under torchrun rank 0 extracts/decodes into the cache first, the others reuse it."""
    if not dist.main:
        dist.barrier()
    try:
        train_ds = load_dataset(cfg.data, "train", download=cfg.download, size=cfg.image_size)
        test_ds = load_dataset(cfg.data, "test", download=cfg.download, size=cfg.image_size)
    finally:
        if dist.main:
            dist.barrier()
    if test_ds.class_names != train_ds.class_names:
        only_train = sorted(set(train_ds.class_names) - set(test_ds.class_names))
        only_test = sorted(set(test_ds.class_names) - set(train_ds.class_names))
        raise DataError(
            f"{cfg.data}: train/ and test/ have different class folders (only in train: {only_train[:5]}, "
            f"only in test: {only_test[:5]}); both splits need the same classes"
        )
    if len(train_ds.class_names) < 2:
        raise DataError(f"{cfg.data}: needs at least 2 classes, found {list(train_ds.class_names)}")
    if train_ds.images.shape[1:] != test_ds.images.shape[1:]:
        raise DataError(
            f"{cfg.data}: train images are {train_ds.images.shape[1:3]} but test images "
            f"{test_ds.images.shape[1:3]}; pass --image-size N to store both as N x N"
        )
    limit = cfg.resolved_eval_limit()
    if limit and limit < len(test_ds):
        # a fixed random subset: the first N images of a sorted folder are all one class
        test_ds = test_ds.subset(np.sort(np.random.default_rng(0).permutation(len(test_ds))[:limit]))
    return train_ds, test_ds


def _warn_changed(cfg: TrainConfig, state: dict, dist: _Dist, micro_batches: int) -> None:
    """Say which trajectory settings differ from the checkpoint's run (the result will differ)."""
    old = state.get("train_config")
    if not isinstance(old, dict) or not dist.main:
        return
    new = dataclasses.asdict(cfg)
    norm = lambda v: tuple(v) if isinstance(v, list | tuple) else v  # noqa: E731
    diff = [
        f"{k} {old.get(k)!r} -> {new[k]!r}" for k in _TRAJECTORY if k in old and norm(old[k]) != norm(new[k])
    ]
    if state.get("micro_batches", micro_batches) != micro_batches:
        diff.append(f"processes x grad_accum {state['micro_batches']} -> {micro_batches}")
    if diff:
        print(
            f"warning: resuming with changed settings ({'; '.join(diff)}); the result will differ "
            "from an uninterrupted run",
            file=sys.stderr,
            flush=True,
        )


def _train(cfg: TrainConfig, dist: _Dist, out: Path) -> dict:
    last = out / "last.pt"
    if cfg.resume and not last.exists():
        raise CodedResNeXtError(f"--resume: no checkpoint at {last}; start without --resume or fix --out")
    if not cfg.resume and dist.main and last.exists():
        raise CodedResNeXtError(
            f"{out} already holds a run; pass --resume to continue it or choose another --out"
        )
    train_ds, test_ds = _load_data(cfg, dist)
    model_cfg = build_config(cfg.preset, class_names=train_ds.class_names, control=cfg.control)
    torch.manual_seed(cfg.seed)
    model = CodedResNeXt(model_cfg)
    micro_batches = dist.world * cfg.grad_accum
    micro_per_rank, rem = divmod(cfg.batch_size, micro_batches)
    if rem or micro_per_rank == 0:
        raise CodedResNeXtError(
            f"batch size {cfg.batch_size} must be a multiple of processes x grad_accum "
            f"({dist.world} x {cfg.grad_accum})"
        )
    steps_per_epoch = len(train_ds) // cfg.batch_size
    if steps_per_epoch == 0:
        raise CodedResNeXtError(
            f"batch size {cfg.batch_size} exceeds the {len(train_ds)} training images; lower --batch-size"
        )
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    n_coded = len(model.coded_blocks)
    step, best, history, elapsed = 0, -1.0, [], 0.0
    # this epoch's train sums so far: ce, coding loss, correct, seen, coding loss per coded block
    sums = torch.zeros(4 + n_coded, dtype=torch.float64)
    if cfg.resume:
        model, state = load_checkpoint(last, expect=model_cfg)
        _warn_changed(cfg, state, dist, micro_batches)
        step, best = int(state["step"]), float(state["best_accuracy"])
        elapsed = float(state.get("elapsed_s", 0.0))
        partial = state.get("epoch_sums")
        if partial is not None and dist.main and step % steps_per_epoch:
            sums = torch.tensor(partial, dtype=torch.float64)
        history = [m for m in _read_metrics(out) if m["step"] <= step]
    model.p_drop = cfg.p_drop
    model.to(dist.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(
        model.parameters(),
        lr=cfg.resolved_lr(),
        momentum=cfg.momentum,
        nesterov=True,
        weight_decay=cfg.weight_decay,
    )
    if cfg.resume:
        if "optimizer" not in state:
            raise CodedResNeXtError(f"{last} has no optimizer state (a best.pt?); resume needs last.pt")
        opt.load_state_dict(state["optimizer"])
    net: torch.nn.Module = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[dist.device] if dist.device.type == "cuda" else None)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(
            out / "config.json",
            {
                "train": dataclasses.asdict(cfg),
                "model": model_cfg.to_dict(),
                "version": __version__,
                "torch": str(torch.__version__),
                "world_size": dist.world,
                "micro_batch": micro_per_rank,
                "test_images": len(test_ds),
            },
        )
    ra = cfg.resolved_randaugment(model_cfg.num_classes)
    amp = dist.device.type == "cuda"
    accum = cfg.grad_accum
    t0 = time.time() - elapsed

    def ckpt_extra() -> dict:
        return {
            "step": step,
            "best_accuracy": best,
            "train_config": dataclasses.asdict(cfg),
            "micro_batches": micro_batches,
            "elapsed_s": round(time.time() - t0, 1),
            "torch_version": str(torch.__version__),
            "version": __version__,
        }

    while step < total:
        epoch = step // steps_per_epoch
        perm = np.random.default_rng([cfg.seed, epoch]).permutation(len(train_ds))
        bar = _bar(cfg, dist, steps_per_epoch, epoch, step % steps_per_epoch)
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
                with ctx:
                    with torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=amp):
                        o = net(x, targets=y)
                        ce = F.cross_entropy(o.logits.float(), y, label_smoothing=cfg.label_smoothing)
                        code = torch.stack(o.coding_loss).sum() if o.coding_loss else ce.new_zeros(())
                        loss = (ce + cfg.mu * code) / accum
                    loss.backward()
                with torch.no_grad():  # one host sync per micro-batch
                    correct = (o.logits.argmax(1) == y).sum().float()
                    vals = torch.stack(
                        [ce.float(), code.float(), correct, *[c.float() for c in o.coding_loss]]
                    )
                vals = vals.double().cpu()
                n = len(mb)
                sums[0] += vals[0] * n
                sums[1] += vals[1] * n
                sums[2] += vals[2]
                sums[3] += n
                sums[4:] += vals[3:] * n
            opt.step()
            step += 1
            if not math.isfinite(float(sums[0])):
                raise CodedResNeXtError(f"loss became non-finite at step {step}; lower --lr")
            if bar is not None:
                seen = float(sums[3])
                bar.update(1)
                bar.set_postfix(
                    ce=f"{float(sums[0]) / seen:.3f}",
                    acc=f"{float(sums[2]) / seen:.3f}",
                    lr=f"{opt.param_groups[0]['lr']:.4f}",
                )
            end_of_epoch = step % steps_per_epoch == 0 or step == total
            if cfg.save_every and step % cfg.save_every == 0 and not end_of_epoch:
                total_sums = dist.all_reduce(sums)
                if dist.main:
                    save_checkpoint(
                        last,
                        model,
                        optimizer=opt.state_dict(),
                        epoch_sums=total_sums.tolist(),
                        **ckpt_extra(),
                    )
        if bar is not None:
            bar.close()
        epoch_sums = dist.all_reduce(sums)
        sums = torch.zeros_like(sums)
        if dist.main:
            n = max(1.0, float(epoch_sums[3]))
            test = classifier_metrics(model, test_ds, device=dist.device, flip_tta=cfg.flip_tta)
            rec = {
                "epoch": epoch + (step % steps_per_epoch or steps_per_epoch) / steps_per_epoch,
                "step": step,
                "lr": opt.param_groups[0]["lr"],
                "train_accuracy": float(epoch_sums[2]) / n,
                "train_cross_entropy": float(epoch_sums[0]) / n,
                "train_coding_loss": (epoch_sums[4:] / n).tolist(),
                "test_accuracy": test["accuracy"],
                "test_cross_entropy": test["cross_entropy"],
                "test_coding_loss": test["coding_loss"],
                "early_decoder_accuracy": test["early_decoder_accuracy"],
                "test_images": len(test_ds),
                "elapsed_s": round(time.time() - t0, 1),
            }
            history.append(rec)
            write_text(out / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in history))
            if test["accuracy"] > best:
                best = test["accuracy"]
                save_checkpoint(out / "best.pt", model, metrics=rec, **ckpt_extra())
            save_checkpoint(last, model, optimizer=opt.state_dict(), metrics=rec, **ckpt_extra())
            if cfg.progress:
                print(
                    f"epoch {rec['epoch']:.2f} step {step}: test acc {rec['test_accuracy']:.4f} "
                    f"(train {rec['train_accuracy']:.4f}), early decoders "
                    f"{[round(a, 3) for a in rec['early_decoder_accuracy']]}",
                    flush=True,
                )
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
