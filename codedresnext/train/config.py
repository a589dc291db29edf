"""TrainConfig: every training setting in one typed place (the CLI takes its defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import CodedResNeXtError
from ..model_config import PRESETS

PATH_NEGATIVES = ("hardest", "uniform")  # how path training picks a class path for another class's image
AUTO_EVAL_LIMIT = 2000  # test images evaluated by default in --max-steps runs
PRECISE_BN_IMAGES = 5000  # training images precise-bn averages over (here: its parser needs no torch)

# settings that shape the trajectory: resuming with other values cannot match an uninterrupted run
TRAJECTORY = (
    "epochs",
    "max_steps",
    "batch_size",
    "lr",
    "min_lr",
    "momentum",
    "weight_decay",
    "mu",
    "p_drop",
    "path_fraction",
    "path_negatives",
    "path_weight",
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
    epochs: int | None = None  # None: 1, or as many as --max-steps needs
    max_steps: int | None = None  # stop (and end the schedule) after this many optimizer steps
    batch_size: int = 128  # global batch, over all processes and accumulation micro-batches
    lr: float | None = None  # default: 0.1 * batch_size / 512 (paper: 0.1 at 512)
    min_lr: float = 1e-5
    momentum: float = 0.9
    weight_decay: float = 5e-4
    mu: float = 6.0  # coding-loss weight
    p_drop: float = 0.1  # dropSubNN probability
    # path training (beyond the paper; 0 = the paper's recipe): this fraction of each micro-batch
    # runs again through one class's path alone, its own class or (as often) another, so that the
    # per-class detectors export cuts learn to reject other classes; see train/loop._path_step
    path_fraction: float = 0.0
    path_negatives: str = "hardest"  # the other class: the full model's top wrong one, or "uniform"
    path_weight: float = 0.3  # weight of the path cross-entropy beside the whole network's
    label_smoothing: float = 0.0
    schedule: str = "cosine"  # "cosine" (paper) or "onecycle" (linear warm-up, linear decay)
    warmup_frac: float = 0.0  # fraction of steps spent warming up
    randaugment: tuple[int, int] | None = None  # (num_ops, magnitude); None = the preset's default
    no_randaugment: bool = False
    seed: int = 0
    control: bool = False
    download: bool = False
    grad_accum: int = 1
    save_every: int = 0  # also checkpoint every N steps (0: only at epoch ends)
    # evaluate on a fixed random subset of N test images; 0: all; None: all, or
    # AUTO_EVAL_LIMIT when max_steps is set (short runs should not wait for a full test pass)
    eval_limit: int | None = None
    image_size: int | None = None  # ImageFolder images as N x N (needed for mixed sizes)
    flip_tta: bool = False  # average logits over the image and its mirror at evaluation
    channels_last: bool = True
    # input pipeline (not trajectory settings: the batches are the same for any value)
    workers: int = 0  # DataLoader processes that decode/augment; 0: batched in the main process
    stream: bool | None = None  # ImageFolder from disk; None: when workers > 0 or the split won't fit
    resume: bool = False
    init: str | None = None  # start from this checkpoint's weights (new optimizer and schedule)
    device: str | None = None  # default: cuda if available
    progress: bool = True

    def validate(self) -> None:
        """Reject settings that cannot train, before any data is read."""
        if self.preset not in PRESETS:
            raise CodedResNeXtError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        checks = [
            (self.epochs is None or self.epochs >= 1, f"--epochs must be >= 1, not {self.epochs}"),
            (
                self.max_steps is None or self.max_steps >= 1,
                f"--max-steps must be >= 1, not {self.max_steps}",
            ),
            (self.batch_size >= 1, f"--batch-size must be >= 1, not {self.batch_size}"),
            (self.grad_accum >= 1, f"grad_accum must be >= 1, not {self.grad_accum}"),
            (self.lr is None or self.lr > 0, f"--lr must be > 0, not {self.lr}"),
            (0.0 <= self.p_drop < 1.0, f"p_drop must be in [0, 1), not {self.p_drop}"),
            (self.mu >= 0, f"mu must be >= 0, not {self.mu}"),
            (
                0.0 <= self.path_fraction < 1.0,
                f"path_fraction must be in [0, 1), not {self.path_fraction}",
            ),
            (self.path_weight >= 0, f"path_weight must be >= 0, not {self.path_weight}"),
            (
                self.path_negatives in PATH_NEGATIVES,
                f"path_negatives must be one of {', '.join(PATH_NEGATIVES)}, not {self.path_negatives!r}",
            ),
            (
                0.0 <= self.label_smoothing < 1.0,
                f"label_smoothing must be in [0, 1), not {self.label_smoothing}",
            ),
            (0.0 <= self.warmup_frac < 1.0, f"warmup_frac must be in [0, 1), not {self.warmup_frac}"),
            (
                self.schedule in ("cosine", "onecycle"),
                f"unknown schedule {self.schedule!r}; use cosine or onecycle",
            ),
            (self.save_every >= 0, f"save_every must be >= 0, not {self.save_every}"),
            (
                self.eval_limit is None or self.eval_limit >= 0,
                f"eval_limit must be >= 0, not {self.eval_limit}",
            ),
            (
                self.image_size is None or self.image_size >= 8,
                f"--image-size must be >= 8, not {self.image_size}",
            ),
            (self.workers >= 0, f"--workers must be >= 0, not {self.workers}"),
            (
                not (self.init and self.resume),
                "--init starts a new run from a checkpoint's weights; --resume continues one: pass one",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise CodedResNeXtError(msg)
        if self.init and not Path(self.init).is_file():
            raise CodedResNeXtError(f"--init: no checkpoint at {self.init}; pass a trained run's best.pt")

    def resolved_eval_limit(self) -> int | None:
        if self.eval_limit is None:
            return AUTO_EVAL_LIMIT if self.max_steps is not None else None
        return self.eval_limit or None

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else 0.1 * self.batch_size / 512

    def resolved_randaugment(self) -> tuple[int, int] | None:
        """randaugment, else the preset's default (docs/method.md section 4); None: crop + flip only."""
        if self.no_randaugment:
            return None
        if self.randaugment is not None:
            return (int(self.randaugment[0]), int(self.randaugment[1]))
        return PRESETS[self.preset].randaugment
