"""codedresnext fit-exits: fit learned early-exit heads (exit_heads.py) on a trained checkpoint."""

from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from .._optional import lazy
from ..data import load_dataset
from ..errors import CodedResNeXtError, DataError
from . import _args

# all of CIFAR's training split: more images fit more accurate heads (recipes/README.md)
DEFAULT_IMAGES = 50000
POOL = 2  # cells per side of the pooled block output; exit_heads.fit_exit_heads(pool=...) for other values
SEED = 0  # picks the images; the L2 penalty is chosen per block on held-out images (l2=None)

NEEDS = ("torch",)

# the command needs torch (NEEDS, checked by cli.py before it runs): its modules bind lazily
checkpoints = lazy("codedresnext.checkpoint")
exit_heads = lazy("codedresnext.exit_heads")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit-exits",
        help="fit a linear exit head per coded block (pooled block output) into a checkpoint",
        description="Beyond the paper: the early decoder of docs/method.md section 6 reads only the branch "
        "energies; this fits, with the network frozen, a linear classifier on each coded block's output "
        "average-pooled to 2 x 2 cells (multinomial logistic regression, L2) on training images, "
        "and writes a checkpoint that carries them. `export --segments` / `--multi-exit` then use "
        "them as the exits (graphs built by `prune` from full.onnx keep the codeword decoder).",
    )
    p.add_argument(
        "checkpoint", type=_args.existing_file, help="trained checkpoint (e.g. models/demo/model.pt)"
    )
    p.add_argument(
        "--data",
        required=True,
        type=_args.dataset,
        help="the dataset the model was trained on (its train split)",
    )
    p.add_argument("--out", required=True, help="checkpoint to write (atomically; may be the input)")
    p.add_argument(
        "--images", type=_args.positive_int, default=DEFAULT_IMAGES,
        help=f"training images to fit on, a seeded sample (default {DEFAULT_IMAGES})",
    )  # fmt: skip
    p.add_argument(
        "--evaluate", type=_args.non_negative_int, default=2000, metavar="N",
        help="report each head's accuracy on N test images, recorded in the checkpoint "
        "(default 2000; 0: skip)",
    )  # fmt: skip
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR (internet)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model, state = checkpoints.load_checkpoint(args.checkpoint)  # errors first: no data read
    if not model.coded_blocks:
        raise CodedResNeXtError(f"{args.checkpoint} has no coded blocks: there is no exit to fit a head for")
    train = load_dataset(args.data, "train", download=args.download)
    if list(train.class_names) != list(model.cfg.class_names):
        raise DataError(
            f"--data has classes {list(train.class_names)[:5]}..., the checkpoint was trained on "
            f"{list(model.cfg.class_names)[:5]}...; pass the dataset it was trained on"
        )
    pick = np.sort(np.random.default_rng(SEED).permutation(len(train))[: args.images])
    fit_on = train.subset(pick)
    with tqdm(total=len(fit_on), desc="block outputs", unit="img", disable=args.quiet) as bar:
        heads = exit_heads.fit_exit_heads(
            model, fit_on.images, fit_on.labels, pool=POOL, l2=None, seed=SEED, progress=bar.update
        )
    heads.fitted.update(seed=SEED, data=str(args.data))
    if args.evaluate:
        test = load_dataset(args.data, "test", download=args.download)
        idx = np.sort(np.random.default_rng(SEED).permutation(len(test))[: args.evaluate])
        t = test.subset(idx)
        heads.fitted["test_images"] = len(t)
        heads.fitted["test_accuracy"] = {
            str(i): a for i, a in exit_heads.head_accuracy(model, heads, t.images, t.labels).items()
        }
    model.exit_heads = heads
    extra = {k: v for k, v in state.items() if k not in ("format", "model_config", "model", "exit_heads")}
    checkpoints.save_checkpoint(args.out, model, **extra)
    per = heads.fitted.get("test_accuracy") or heads.fitted["train_accuracy"]
    which = "test" if "test_accuracy" in heads.fitted else "training"
    print(
        f"exit heads ({POOL}x{POOL} cells, {len(fit_on)} training images) -> {args.out}; "
        f"{which} accuracy per coded block: " + ", ".join(f"block {i} {a:.4f}" for i, a in per.items())
    )
    return 0
