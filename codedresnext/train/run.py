"""A training run's state and its setup: data, model (fresh, warm-started or resumed), optimizer,
the step plan, and config.json. The loop that advances it is loop.py."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__
from .._io import write_json
from ..checkpoint import load_checkpoint
from ..data import ArrayDataset, FolderDataset
from ..errors import CodedResNeXtError
from ..model import CodedResNeXt
from ..model_config import ModelConfig, build_config
from .config import TRAJECTORY, TrainConfig
from .dist import Dist
from .pipeline import load_splits

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


def setup_run(cfg: TrainConfig, dist: Dist, out: Path) -> Run:
    """Data, model (fresh, --init, or resumed from last.pt), optimizer and DDP wrapper of a run."""
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
        model = init_from(cfg.init, model_cfg)
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


def init_from(path: str, model_cfg) -> CodedResNeXt:
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


def _read_metrics(out: Path) -> list[dict]:
    f = out / "metrics.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.exists() else []
