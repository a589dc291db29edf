"""codedresnext train: train a preset on a dataset (torchrun for several processes/GPUs).

Every option's destination is a `TrainConfig` field and its default is that field's default, so
the CLI and the Python API cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses


def _pair(s: str) -> tuple[int, int]:
    try:
        a, b = s.split(",")
        return int(a), int(b)
    except ValueError as e:
        raise argparse.ArgumentTypeError("expected NUM_OPS,MAGNITUDE, e.g. 3,4") from e


def register(sub: argparse._SubParsersAction) -> None:
    from ..train.config import TrainConfig

    d = TrainConfig()  # the defaults
    p = sub.add_parser(
        "train",
        help="train a Coded ResNeXt (or the --control baseline)",
        description="Train a preset on CIFAR or an ImageFolder tree; writes config.json, "
        "metrics.jsonl, last.pt and best.pt to --out. Several processes/GPUs/nodes: "
        "torchrun --nproc-per-node G -m codedresnext.cli train ... (a W-process run "
        "equals one process with --grad-accum W).",
    )
    _run_options(p, d)
    _optimizer_options(p.add_argument_group("optimisation"), d)
    _data_options(p.add_argument_group("data and augmentation"), d)
    p.set_defaults(func=run)


def _run_options(p: argparse.ArgumentParser, d) -> None:
    from ..model_config import PRESETS

    p.add_argument("--preset", default=d.preset, help=f"{' | '.join(PRESETS)} (default {d.preset})")
    p.add_argument(
        "--data",
        required=True,
        help="cifar10 | cifar100 (torchvision) | official CIFAR root | ImageFolder root | .tar.gz",
    )
    p.add_argument(
        "--out", required=True, help="run directory (config.json, metrics.jsonl, last.pt, best.pt)"
    )
    p.add_argument("--control", action="store_true", help="plain ResNeXt baseline (every block r = 1)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    p.add_argument(
        "--init",
        metavar="CKPT",
        default=d.init,
        help="start from a trained checkpoint's weights (same preset and classes) with a fresh "
        "optimizer and schedule: a warm restart or fine-tune",
    )
    p.add_argument("--save-every", type=int, default=d.save_every, help="also checkpoint every N steps")
    p.add_argument("--seed", type=int, default=d.seed, help=f"(default {d.seed})")
    p.add_argument("--device", default=d.device, help="cpu | cuda | cuda:N (default: cuda if available)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bar")


def _optimizer_options(g: argparse._ArgumentGroup, d) -> None:
    from ..train.config import PATH_NEGATIVES

    g.add_argument(
        "--epochs", type=int, default=d.epochs, help="(default 1, or as many as --max-steps needs)"
    )
    g.add_argument(
        "--max-steps",
        type=int,
        default=d.max_steps,
        help="stop after this many optimizer steps (and end the schedule there)",
    )
    g.add_argument(
        "--batch-size", type=int, default=d.batch_size, help=f"global batch (default {d.batch_size})"
    )
    g.add_argument("--grad-accum", type=int, default=d.grad_accum, help=f"(default {d.grad_accum})")
    g.add_argument("--lr", type=float, default=d.lr, help="peak LR (default 0.1 x batch/512, the paper's)")
    g.add_argument("--min-lr", type=float, default=d.min_lr, help=f"final LR (default {d.min_lr})")
    g.add_argument("--momentum", type=float, default=d.momentum, help=f"Nesterov (default {d.momentum})")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"(default {d.weight_decay})")
    g.add_argument(
        "--schedule", choices=("cosine", "onecycle"), default=d.schedule, help=f"(default {d.schedule})"
    )
    g.add_argument("--warmup-frac", type=float, default=d.warmup_frac, help=f"(default {d.warmup_frac})")
    g.add_argument(
        "--mu",
        type=float,
        default=d.mu,
        help=f"coding loss weight (default {d.mu}; paper: 6 CIFAR, 1 ImageNet)",
    )
    g.add_argument(
        "--p-drop", type=float, default=d.p_drop, help=f"dropSubNN probability (default {d.p_drop})"
    )
    g.add_argument(
        "--path-fraction",
        type=float,
        default=d.path_fraction,
        metavar="F",
        help="path training, beyond the paper: F of each batch runs again through one class's path "
        "alone (its own class or another), training the per-class detectors export cuts "
        f"(default {d.path_fraction}: off, the paper's recipe)",
    )
    g.add_argument(
        "--path-negatives",
        choices=PATH_NEGATIVES,
        default=d.path_negatives,
        help="which other class's path an image runs: the full model's strongest wrong class "
        f"(hardest) or any (uniform) (default {d.path_negatives})",
    )
    g.add_argument(
        "--path-weight",
        type=float,
        default=d.path_weight,
        help=f"weight of the path cross-entropy (default {d.path_weight})",
    )
    g.add_argument(
        "--label-smoothing", type=float, default=d.label_smoothing, help=f"(default {d.label_smoothing})"
    )


def _data_options(g: argparse._ArgumentGroup, d) -> None:
    from ..model_config import PRESETS
    from ..train.config import AUTO_EVAL_LIMIT

    ra = ", ".join(
        f"{k} {','.join(map(str, v.randaugment)) if v.randaugment else 'none'}" for k, v in PRESETS.items()
    )
    g.add_argument("--randaugment", type=_pair, default=d.randaugment, metavar="OPS,MAG",
                   help=f"RandAugment (default: the preset's: {ra})")  # fmt: skip
    g.add_argument("--no-randaugment", action="store_true", help="only the crop and flip")
    g.add_argument("--download", action="store_true", help="let torchvision download CIFAR (internet)")
    g.add_argument(
        "--image-size",
        type=int,
        default=d.image_size,
        metavar="N",
        help="ImageFolder images as N x N (shorter side resized, centre crop; the crop size for "
        "random-resized-crop presets); needed when image sizes differ",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        metavar="N",
        help=f"DataLoader processes that decode and augment (default {d.workers}: batched in the "
        "main process, on the training device); N > 0 streams ImageFolder trees from disk",
    )
    g.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=d.stream,
        help="read ImageFolder images from disk per batch instead of decoding the split into memory "
        "(default: stream with --workers > 0 or when the split would not fit in memory)",
    )
    g.add_argument(
        "--eval-limit",
        type=int,
        default=d.eval_limit,
        metavar="N",
        help="evaluate on a fixed random subset of N test images; 0 = all (default: all, "
        f"or {AUTO_EVAL_LIMIT} when --max-steps is given)",
    )
    g.add_argument("--flip-tta", action="store_true", help="test-time flip averaging in evaluation")


def config_kwargs(args: argparse.Namespace) -> dict:
    """The TrainConfig fields among the parsed options (every option is one)."""
    from ..train.config import TrainConfig

    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}


def run(args: argparse.Namespace) -> int:
    from ..train import TrainConfig
    from ..train.loop import train

    cfg = TrainConfig(**config_kwargs(args))
    res = train(cfg)
    print(f"done: {res['step']} steps, best test accuracy {res['best_accuracy']:.4f}, run in {res['out']}")
    return 0
