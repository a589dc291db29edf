"""codedresnext train: train a preset on a dataset (torchrun for several processes/GPUs)."""

from __future__ import annotations

import argparse


def _pair(s: str) -> tuple[int, int]:
    try:
        a, b = s.split(",")
        return int(a), int(b)
    except ValueError as e:
        raise argparse.ArgumentTypeError("expected NUM_OPS,MAGNITUDE, e.g. 3,4") from e


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a Coded ResNeXt (or the --control baseline)",
        description="Train a preset on CIFAR or an ImageFolder tree; writes config.json, "
        "metrics.jsonl, last.pt and best.pt to --out. Several processes/GPUs/nodes: "
        "torchrun --nproc-per-node G -m codedresnext.cli train ... (a W-process run "
        "equals one process with --grad-accum W).",
    )
    p.add_argument("--preset", default="tiny", help="cifar10 | cifar100 | imagenet | tiny (default tiny)")
    p.add_argument(
        "--data",
        required=True,
        help="cifar10 | cifar100 (torchvision) | official CIFAR root | ImageFolder root | .tar.gz",
    )
    p.add_argument(
        "--out", required=True, help="run directory (config.json, metrics.jsonl, last.pt, best.pt)"
    )
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--batch-size", type=int, default=128, help="global batch (default 128)")
    p.add_argument("--lr", type=float, default=None, help="peak LR (default 0.1 x batch/512, the paper's)")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--mu", type=float, default=6.0, help="coding loss weight (paper: 6 CIFAR, 1 ImageNet)")
    p.add_argument("--p-drop", type=float, default=0.1, help="dropSubNN probability (paper: 0.1)")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--schedule", choices=("cosine", "onecycle"), default="cosine")
    p.add_argument("--warmup-frac", type=float, default=0.0)
    p.add_argument(
        "--randaugment",
        type=_pair,
        default=None,
        metavar="OPS,MAG",
        help="RandAugment (default: 3,4 for 10 classes, 1,2 for 100 as the paper; none for tiny)",
    )
    p.add_argument("--no-randaugment", action="store_true", help="only pad-4 crop and flip")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--save-every", type=int, default=0, help="also checkpoint every N steps")
    p.add_argument(
        "--eval-limit",
        type=int,
        default=None,
        metavar="N",
        help="evaluate on a fixed random subset of N test images; 0 = all (default: all, "
        "or 2000 when --max-steps is given)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        metavar="N",
        help="store ImageFolder images as N x N (shorter side resized, centre crop); needed "
        "when image sizes differ, and to fit large images in memory",
    )
    p.add_argument("--flip-tta", action="store_true", help="test-time flip averaging in evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--control", action="store_true", help="plain ResNeXt baseline (every block r = 1)")
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR (internet)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import TrainConfig, train

    cfg = TrainConfig(
        preset=args.preset,
        data=args.data,
        out=args.out,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        mu=args.mu,
        p_drop=args.p_drop,
        label_smoothing=args.label_smoothing,
        schedule=args.schedule,
        warmup_frac=args.warmup_frac,
        randaugment=args.randaugment,
        no_randaugment=args.no_randaugment,
        grad_accum=args.grad_accum,
        save_every=args.save_every,
        eval_limit=args.eval_limit,
        image_size=args.image_size,
        flip_tta=args.flip_tta,
        seed=args.seed,
        control=args.control,
        download=args.download,
        resume=args.resume,
        device=args.device,
        channels_last=not args.no_channels_last,
        progress=not args.quiet,
    )
    res = train(cfg)
    print(f"done: {res['step']} steps, best test accuracy {res['best_accuracy']:.4f}, run in {res['out']}")
    return 0
