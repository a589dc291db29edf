"""The training loop: SGD Nesterov + cosine (paper) or one-cycle, coding loss, dropSubNN, DDP.

`train` = `_setup` (data, model, optimizer, resume) then, per epoch, `train_one_epoch` and
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
import dataclasses
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import __version__
from .._io import write_json, write_text
from ..checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from ..data import ArrayDataset, FolderDataset
from ..errors import CodedResNeXtError
from ..model import CodedResNeXt, to_input
from ..model_config import ModelConfig, build_config
from .config import AUTO_EVAL_LIMIT, TRAJECTORY, TrainConfig
from .dist import Dist
from .evaluation import classifier_metrics
from .pipeline import augmentation, load_splits, micro_seed, train_batches
from .schedule import lr_at

Dataset = ArrayDataset | FolderDataset


@dataclass
class Run:
    """One training run: its settings, data, model and where it stands."""

    cfg: TrainConfig
    dist: Dist
    out: Path
    model_cfg: ModelConfig
    model: CodedResNeXt
    net: torch.nn.Module  # the model, or its DDP wrapper
    opt: torch.optim.Optimizer
    train_ds: Dataset
    test_ds: Dataset
    micro_size: int  # images per micro-batch
    steps_per_epoch: int
    total: int  # optimizer steps in the run
    step: int = 0
    best: float = -1.0
    history: list[dict] = dataclasses.field(default_factory=list)
    sums: torch.Tensor | None = None  # this epoch's train sums: ce, coding, correct, seen, coding/block
    t0: float = 0.0

    @property
    def micro_batches(self) -> int:
        return self.dist.world * self.cfg.grad_accum

    @property
    def last(self) -> Path:
        return self.out / "last.pt"

    def ckpt_extra(self) -> dict:
        return {
            "step": self.step,
            "best_accuracy": self.best,
            "train_config": dataclasses.asdict(self.cfg),
            "micro_batches": self.micro_batches,
            "elapsed_s": round(time.time() - self.t0, 1),
            "torch_version": str(torch.__version__),
            "version": __version__,
        }


def train(cfg: TrainConfig) -> dict:
    """Train per `cfg`; writes config.json, metrics.jsonl, last.pt and best.pt under cfg.out."""
    cfg.validate()
    dist = Dist(cfg.device)
    try:
        run = _setup(cfg, dist, Path(cfg.out))
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


# --- setup ------------------------------------------------------------------------------------


def _setup(cfg: TrainConfig, dist: Dist, out: Path) -> Run:
    last = out / "last.pt"
    if cfg.resume and not last.exists():
        raise CodedResNeXtError(f"--resume: no checkpoint at {last}; start without --resume or fix --out")
    if not cfg.resume and dist.main and last.exists():
        raise CodedResNeXtError(
            f"{out} already holds a run; pass --resume to continue it or choose another --out"
        )
    train_ds, test_ds = load_splits(cfg, dist)
    model_cfg = build_config(cfg.preset, class_names=train_ds.class_names, control=cfg.control)
    micro_size, steps_per_epoch, total = _plan(cfg, dist, len(train_ds))
    torch.manual_seed(cfg.seed)
    model = CodedResNeXt(model_cfg)
    state = None
    if cfg.resume:
        model, state = load_checkpoint(last, expect=model_cfg)
        old = state.get("train_config")
        if isinstance(old, dict) and old.get("init"):
            cfg.init = old["init"]  # provenance only: the weights come from last.pt
    elif cfg.init:
        model = _init_from(cfg.init, model_cfg)
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
    net: torch.nn.Module = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[dist.device] if dist.device.type == "cuda" else None)
    run = Run(
        cfg, dist, out, model_cfg, model, net, opt, train_ds, test_ds, micro_size, steps_per_epoch, total
    )
    run.sums = torch.zeros(4 + len(model.coded_blocks), dtype=torch.float64)
    if state is not None:
        _restore(run, state)
    run.t0 = time.time() - (float(state.get("elapsed_s", 0.0)) if state else 0.0)
    if dist.main:
        _write_config(run)
    return run


def _init_from(path: str, model_cfg) -> CodedResNeXt:
    """A warm restart: the weights of a trained run (same architecture and classes), nothing else."""
    model, _ = load_checkpoint(path, expect=model_cfg)
    if list(model.cfg.class_names) != list(model_cfg.class_names):
        raise CodedResNeXtError(
            f"--init {path} was trained on classes {list(model.cfg.class_names)}, but --data has "
            f"{list(model_cfg.class_names)}; use a checkpoint trained on this dataset"
        )
    model.exit_heads = None  # fitted to the old weights: refit them after training (fit-exits)
    return model


def _plan(cfg: TrainConfig, dist: Dist, n: int) -> tuple[int, int, int]:
    """(images per micro-batch, steps per epoch, total steps); refuses batches that do not split."""
    micro_batches = dist.world * cfg.grad_accum
    micro_size, rem = divmod(cfg.batch_size, micro_batches)
    if rem or micro_size == 0:
        raise CodedResNeXtError(
            f"batch size {cfg.batch_size} must be a multiple of processes x grad_accum "
            f"({dist.world} x {cfg.grad_accum})"
        )
    steps_per_epoch = n // cfg.batch_size
    if steps_per_epoch == 0:
        raise CodedResNeXtError(
            f"batch size {cfg.batch_size} exceeds the {n} training images; lower --batch-size"
        )
    epochs = cfg.epochs
    if epochs is None:  # --max-steps alone runs that many steps, over as many epochs as it takes
        epochs = -(-cfg.max_steps // steps_per_epoch) if cfg.max_steps is not None else 1
    total = epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    return micro_size, steps_per_epoch, total


def _restore(run: Run, state: dict) -> None:
    """Continue from last.pt: optimizer, step, best accuracy, the epoch's partial sums, history."""
    if "optimizer" not in state:
        raise CodedResNeXtError(f"{run.last} has no optimizer state (a best.pt?); resume needs last.pt")
    _warn_changed(run.cfg, state, run.dist, run.micro_batches)
    run.opt.load_state_dict(state["optimizer"])
    run.step, run.best = int(state["step"]), float(state["best_accuracy"])
    partial = state.get("epoch_sums")
    if partial is not None and run.dist.main and run.step % run.steps_per_epoch:
        run.sums = torch.tensor(partial, dtype=torch.float64)
    run.history = [m for m in _read_metrics(run.out) if m["step"] <= run.step]


def _warn_changed(cfg: TrainConfig, state: dict, dist: Dist, micro_batches: int) -> None:
    """Say which trajectory settings differ from the checkpoint's run (the result will differ)."""
    old = state.get("train_config")
    if not isinstance(old, dict) or not dist.main:
        return
    new = dataclasses.asdict(cfg)
    norm = lambda v: tuple(v) if isinstance(v, list | tuple) else v  # noqa: E731
    diff = [
        f"{k} {old.get(k)!r} -> {new[k]!r}" for k in TRAJECTORY if k in old and norm(old[k]) != norm(new[k])
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


def _write_config(run: Run) -> None:
    run.out.mkdir(parents=True, exist_ok=True)
    write_json(
        run.out / "config.json",
        {
            "train": dataclasses.asdict(run.cfg),
            "model": run.model_cfg.to_dict(),
            "version": __version__,
            "torch": str(torch.__version__),
            "world_size": run.dist.world,
            "micro_batch": run.micro_size,
            "test_images": len(run.test_ds),
            "streamed": isinstance(run.train_ds, FolderDataset),
        },
    )


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


def _read_metrics(out: Path) -> list[dict]:
    f = out / "metrics.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.exists() else []


def _bar(cfg: TrainConfig, dist: Dist, run: Run, epoch: int):
    if not (cfg.progress and dist.main):
        return None
    from tqdm import tqdm

    spe = run.steps_per_epoch
    epochs = -(-run.total // spe)
    return tqdm(total=spe, initial=run.step % spe, desc=f"epoch {epoch + 1}/{epochs}", unit="step")


__all__ = ["AUTO_EVAL_LIMIT", "TrainConfig", "train", "lr_at", "read_checkpoint", "ArrayDataset"]
