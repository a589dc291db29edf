"""Learning-rate schedules: the paper's cosine decay, and one-cycle (linear warm-up, linear decay)."""

from __future__ import annotations

import math

from ..errors import CodedResNeXtError
from .config import TrainConfig


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
