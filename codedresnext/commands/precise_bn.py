"""codedresnext precise-bn: recompute a checkpoint's BatchNorm statistics without dropSubNN."""

from __future__ import annotations

import argparse

import numpy as np

from .._optional import lazy
from ..data import open_dataset
from ..train.config import PRECISE_BN_IMAGES as DEFAULT_IMAGES  # torch-free: `prune` builds this parser
from . import _args

NEEDS = ("torch",)

# the command needs torch (NEEDS, checked by cli.py before it runs): its modules bind lazily
checkpoints = lazy("codedresnext.checkpoint")
train_evaluation = lazy("codedresnext.train.evaluation")
precise_bn = lazy("codedresnext.train.precise_bn")
BATCH_SIZE = 250  # images per forward pass while averaging (memory, not the result)
SEED = 0  # picks the images

# rewritten by save_checkpoint or by this command; the optimizer state is not needed to deploy
_REPLACED = ("format", "model_config", "model", "optimizer", "precise_bn", "exit_heads")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "precise-bn",
        help="recompute a trained checkpoint's BatchNorm statistics on clean images (dropSubNN off)",
        description="Training statistics of BatchNorm see dropSubNN's dropped branches and augmented "
        "images; this re-estimates them on un-augmented training images with every branch on and "
        "writes a new checkpoint (weights unchanged, optimizer state dropped, `precise_bn` recorded). "
        "Run it once on the checkpoint you deploy, before export.",
    )
    p.add_argument(
        "checkpoint",
        type=_args.existing_file,
        help="checkpoint from `codedresnext train` (e.g. runs/demo/last.pt)",
    )
    p.add_argument(
        "--data",
        required=True,
        type=_args.dataset,
        help="the dataset the model was trained on (its train split)",
    )
    p.add_argument("--out", required=True, help="checkpoint to write (written atomically)")
    p.add_argument(
        "--images", type=_args.positive_int, default=DEFAULT_IMAGES,
        help=f"training images to average over, a seeded sample (default {DEFAULT_IMAGES})",
    )  # fmt: skip
    p.add_argument(
        "--image-size", type=_args.int_at_least(8), default=None, metavar="N",
        help="ImageFolder images as N x N (default: as stored)",
    )  # fmt: skip
    p.add_argument(
        "--evaluate",
        type=_args.positive_int,
        nargs="?",
        const=0,
        default=None,
        metavar="N",
        help="also report test accuracy before and after (on N test images; bare: all) and record it",
    )
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR (internet)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model, state = checkpoints.load_checkpoint(args.checkpoint)  # errors first: no data read
    train_ds = open_dataset(args.data, "train", download=args.download, size=args.image_size)
    kw = {"device": args.device, "size": args.image_size, "workers": 0}
    test_ds = None
    if args.evaluate is not None:
        test_ds = open_dataset(args.data, "test", download=args.download, size=args.image_size)
        if args.evaluate:
            pick = np.random.default_rng(SEED).permutation(len(test_ds))[: args.evaluate]
            test_ds = test_ds.subset(np.sort(pick))
        before = train_evaluation.classifier_metrics(model.to(args.device), test_ds, **kw)["accuracy"]
    n = precise_bn.recalibrate_bn(
        model,
        train_ds,
        images=args.images,
        batch_size=BATCH_SIZE,
        seed=SEED,
        progress=not args.quiet,
        **kw,
    )
    record = {"images": n, "seed": SEED, "source": str(args.checkpoint)}
    if test_ds is not None:
        got = train_evaluation.classifier_metrics(model, test_ds, **kw)
        after = got["accuracy"]
        record.update(
            test_images=len(test_ds),
            test_accuracy_before=before,
            test_accuracy_after=after,
            early_decoder_accuracy_after=got["early_decoder_accuracy"],
        )
    extra = {k: v for k, v in state.items() if k not in _REPLACED}
    model.exit_heads = None  # fitted to the old statistics: refit them (fit-exits)
    checkpoints.save_checkpoint(args.out, model.cpu(), **extra, precise_bn=record)
    line = f"BatchNorm statistics from {n} training images -> {args.out}"
    if test_ds is not None:
        line += f"; test accuracy {before:.4f} -> {after:.4f} on {len(test_ds)} images"
    print(line)
    return 0
