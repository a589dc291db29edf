"""codedresnext train: train a preset on a dataset (torchrun for several processes/GPUs).

The command line takes what changes from run to run (data, output, length, batch, learning rate,
device); every other `TrainConfig` field (schedule, coding-loss weight, dropSubNN, path training,
augmentation, ...) comes from a recipe: `--config FILE`, a TrainConfig JSON such as a run's own
config.json (models/demo/phaseN/config.json). Options given on the command line win over the recipe.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from .._optional import lazy
from ..errors import CodedResNeXtError
from ..model_config import PRESETS
from ..train.config import TrainConfig
from . import _args

NEEDS = ("torch",)

# the command needs torch (NEEDS, checked by cli.py before it runs): the loop binds lazily
loop = lazy("codedresnext.train.loop")

# where a run goes and how it reads its data: the command line's business, not a recipe's
NOT_FROM_RECIPE = ("data", "out", "resume", "init", "progress", "device", "download", "workers")


def register(sub: argparse._SubParsersAction) -> None:
    d = TrainConfig()  # the defaults
    p = sub.add_parser(
        "train",
        help="train a Coded ResNeXt",
        description="Train a preset on CIFAR or an ImageFolder tree; writes config.json, "
        "metrics.jsonl, last.pt and best.pt to --out. Hyper-parameters beyond these options come "
        "from --config (a run's config.json is a recipe). Several processes/GPUs/nodes: "
        "torchrun --nproc-per-node G -m codedresnext.cli train ...",
        argument_default=argparse.SUPPRESS,  # only what is typed overrides the recipe
    )
    p.add_argument(
        "--data",
        required=True,
        type=_args.dataset,
        help="cifar10 | cifar100 (torchvision) | official CIFAR root | ImageFolder root | .tar.gz",
    )
    p.add_argument(
        "--out", required=True, help="run directory (config.json, metrics.jsonl, last.pt, best.pt)"
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        type=_args.existing_file,
        help="recipe: TrainConfig fields as JSON (a run's config.json works: its data, out, init and "
        "device are ignored); options on the command line win",
    )
    p.add_argument("--preset", choices=list(PRESETS), help=f"model preset (default {d.preset})")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    p.add_argument(
        "--init",
        metavar="CKPT",
        type=_args.existing_file,
        help="start from a trained checkpoint's weights with a fresh optimizer and schedule (fine-tune)",
    )
    p.add_argument("--epochs", type=_args.positive_int, help="(default 1, or as many as --max-steps needs)")
    p.add_argument(
        "--max-steps", type=_args.positive_int, help="stop after N optimizer steps (the schedule ends there)"
    )
    p.add_argument("--batch-size", type=_args.positive_int, help=f"global batch (default {d.batch_size})")
    p.add_argument(
        "--lr", type=_args.positive_float, help="peak learning rate (default 0.1 x batch/512, the paper's)"
    )
    p.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda if available)")
    p.add_argument(
        "--workers",
        type=_args.non_negative_int,
        metavar="N",
        help=f"DataLoader processes that decode and augment (default {d.workers}: in the main "
        "process); N > 0 streams ImageFolder trees from disk",
    )
    p.add_argument(
        "--image-size",
        type=_args.int_at_least(8),
        metavar="N",
        help="ImageFolder images as N x N (needed when image sizes differ; default: as stored)",
    )
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR (internet)")
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=run)


def read_recipe(path: str) -> dict:
    """The TrainConfig fields of a recipe file (a run's config.json: its "train" part)."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CodedResNeXtError(
            f"--config {path}: not a JSON recipe ({e}); give a TrainConfig JSON"
        ) from None
    raw = raw.get("train", raw) if isinstance(raw, dict) else raw
    if not isinstance(raw, dict):
        raise CodedResNeXtError(f"--config {path}: expected a JSON object of TrainConfig fields")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise CodedResNeXtError(
            f"--config {path}: unknown fields {', '.join(unknown)}; TrainConfig has {', '.join(fields)}"
        )
    out = {}
    for k, v in raw.items():
        if k in NOT_FROM_RECIPE:
            continue
        if not _fits(str(fields[k].type), v):
            raise CodedResNeXtError(f"--config {path}: {k} must be {fields[k].type}, not {v!r}")
        out[k] = tuple(v) if isinstance(v, list) else v
    return out


def _fits(annotation: str, v: object) -> bool:
    """Whether a JSON value fits a TrainConfig annotation such as 'float', 'int | None',
    'tuple[int, int] | None' (JSON has no tuples: a list of two whole numbers)."""
    for t in annotation.split(" | "):
        if t == "None" and v is None:
            return True
        if isinstance(v, bool):
            if t == "bool":
                return True
            continue
        if (t == "int" and isinstance(v, int)) or (t == "float" and isinstance(v, (int, float))):
            return True
        if t == "str" and isinstance(v, str):
            return True
        if t == "tuple[int, int]" and isinstance(v, list) and len(v) == 2:
            return all(isinstance(x, int) and not isinstance(x, bool) for x in v)
    return False


def config_kwargs(args: argparse.Namespace) -> dict:
    """TrainConfig fields: the recipe's, then the options typed on the command line."""
    kw = read_recipe(args.config) if getattr(args, "config", None) else {}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    kw.update({k: v for k, v in vars(args).items() if k in names})
    return kw


def run(args: argparse.Namespace) -> int:
    cfg = TrainConfig(**config_kwargs(args))
    res = loop.train(cfg)
    print(f"done: {res['step']} steps, best test accuracy {res['best_accuracy']:.4f}, run in {res['out']}")
    return 0
