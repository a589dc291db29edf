"""The training input pipeline: the splits (`load_splits`: in memory or streamed from disk), which
images each micro-batch holds, and how they are augmented (`train_batches`).

One function, `BatchMaker.__getitem__`, makes a micro-batch from its (step, micro) key: it seeds
torch's CPU generator from (seed, step, micro), gathers or decodes the images, augments them and
returns them with the generator state it left. It runs in the main process (`workers=0`, augmenting
on the training device) or in DataLoader workers; either way a micro-batch's pixels, and the
generator state the trainer continues from (dropSubNN masks), are the same, so resume is exact
whatever the worker count.

Order: epoch e is a permutation of the split seeded by (seed, e); step i takes its global batch as
the i-th slice of it, and micro-batch m (of processes x grad_accum) the m-th slice of that. Under
torchrun, rank r runs micro-batches r * grad_accum ... + grad_accum - 1 of every step. This is the
sharding DistributedSampler does (each rank a disjoint share of the epoch, reshuffled per epoch),
but contiguous within each global batch, so that W processes train on exactly the micro-batches of
one process with grad_accum W, and a run can restart mid-epoch at any step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data import ArrayDataset, FolderDataset, open_dataset
from ..errors import CodedResNeXtError, DataError
from ..model_config import PRESETS
from .augment import crop_flip, hflip, rand_augment, random_resized_crop
from .config import TrainConfig
from .dist import Dist

Dataset = ArrayDataset | FolderDataset


def micro_seed(seed: int, step: int, micro: int) -> int:
    return (seed * 1_000_003 + step * 10_007 + micro) % (2**63 - 1)


@dataclass(frozen=True)
class Augment:
    """The training augmentation (docs/method.md section 4).

    crop "pad": RandAugment, then a pad-4 random crop and a flip (CIFAR; images keep their size).
    crop "resized": a random-resized crop to `size` x `size` and a flip, then RandAugment (ImageNet).
    """

    crop: str = "pad"
    randaugment: tuple[int, int] | None = None
    size: int | None = None  # decode size ("pad") or crop output size ("resized")


@dataclass(frozen=True)
class MicroBatch:
    step: int
    micro: int
    indices: np.ndarray  # positions in the split


class MicroBatchSampler(torch.utils.data.Sampler):
    """This process's micro-batches, from `start` to `stop` (steps), in training order."""

    def __init__(
        self,
        n: int,
        *,
        batch_size: int,
        micro_batches: int,
        micros: list[int],
        seed: int,
        start: int,
        stop: int,
    ) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.micro_size = batch_size // micro_batches
        self.micros, self.start, self.stop = micros, start, stop
        self.steps_per_epoch = n // batch_size

    def epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def __iter__(self) -> Iterator[MicroBatch]:
        step, perm, epoch = self.start, None, -1
        while step < self.stop:
            if step // self.steps_per_epoch != epoch:
                epoch = step // self.steps_per_epoch
                perm = self.epoch_order(epoch)
            i = step % self.steps_per_epoch
            idx = perm[i * self.batch_size : (i + 1) * self.batch_size]
            for m in self.micros:
                yield MicroBatch(step, m, idx[m * self.micro_size : (m + 1) * self.micro_size])
            step += 1

    def __len__(self) -> int:
        return (self.stop - self.start) * len(self.micros)


class BatchMaker(torch.utils.data.Dataset):
    """Micro-batch key -> (uint8 images (B, H, W, 3), int64 labels (B,), CPU generator state)."""

    def __init__(self, ds: Dataset, augment: Augment, *, seed: int, device: str | torch.device = "cpu"):
        self.ds, self.augment, self.seed, self.device = ds, augment, seed, torch.device(device)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, mb: MicroBatch) -> tuple[Tensor, Tensor, Tensor]:
        torch.manual_seed(micro_seed(self.seed, mb.step, mb.micro))
        a = self.augment
        if a.crop == "resized":
            imgs = torch.stack([random_resized_crop(self._chw(i), a.size) for i in mb.indices])
            imgs = hflip(imgs.permute(0, 2, 3, 1).to(self.device))
            if a.randaugment is not None:
                imgs = rand_augment(imgs, *a.randaugment)
        else:
            imgs = self._gather(mb.indices).to(self.device)
            if a.randaugment is not None:
                imgs = rand_augment(imgs, *a.randaugment)
            imgs = crop_flip(imgs)
        labels = torch.from_numpy(self.ds.labels[mb.indices])
        return imgs, labels, torch.get_rng_state()

    def _chw(self, i: int) -> Tensor:
        """Image i at full stored resolution as (3, H, W) uint8."""
        if isinstance(self.ds, ArrayDataset):
            return torch.from_numpy(self.ds.images[i]).permute(2, 0, 1)
        return torch.from_numpy(self.ds.decode(int(i))).permute(2, 0, 1)

    def _gather(self, idx: np.ndarray) -> Tensor:
        if isinstance(self.ds, ArrayDataset):
            return torch.from_numpy(self.ds.images[idx])
        return stack_decoded(self.ds, idx, self.augment.size)


def stack_decoded(ds: FolderDataset, idx: np.ndarray, size: int | None) -> Tensor:
    """Decode files idx of `ds` into one (B, H, W, 3) uint8 tensor (one size required)."""
    ims = [ds.decode(int(i), size) for i in idx]
    first = ims[0].shape
    for i, im in zip(idx, ims):
        if im.shape != first:
            raise DataError(
                f"images differ in size ({ds.files[idx[0]].name}: {first[1]}x{first[0]}, "
                f"{ds.files[i].name}: {im.shape[1]}x{im.shape[0]}); pass --image-size N to resize them"
            )
    return torch.from_numpy(np.stack(ims))


class _WorkerFailure:
    """A project error raised in a DataLoader worker, sent back as an item: torch would re-raise it
    wrapped in the worker's whole traceback; the main process raises it again as it was."""

    def __init__(self, error: CodedResNeXtError) -> None:
        self.error = error


class _Guarded(torch.utils.data.Dataset):
    """`maker` whose project errors (a corrupt image: DataError naming the file) come back as items."""

    def __init__(self, maker: torch.utils.data.Dataset) -> None:
        self.maker = maker

    def __getitem__(self, key: Any) -> Any:
        try:
            return self.maker[key]
        except CodedResNeXtError as e:
            return _WorkerFailure(e)


def _reraise(items: Iterator) -> Iterator:
    for item in items:
        if isinstance(item, _WorkerFailure):
            raise item.error
        yield item


def loader(maker: torch.utils.data.Dataset, sampler, workers: int, pin: bool) -> Iterator:
    """Items of `maker` for the keys of `sampler`, in order; made by `workers` processes (0: here).
    A worker's DataError reaches the caller as the same one-line DataError as with 0 workers."""
    if workers == 0:
        return (maker[key] for key in sampler)
    return _reraise(
        iter(
            torch.utils.data.DataLoader(
                _Guarded(maker),
                sampler=sampler,
                batch_size=None,  # every item is a whole micro-batch already
                num_workers=workers,
                pin_memory=pin,
                prefetch_factor=4,
            )
        )
    )


def load_splits(cfg: TrainConfig, dist: Dist) -> tuple[Dataset, Dataset]:
    """Both splits; under torchrun rank 0 extracts/decodes into the cache first, the others reuse it.

    ImageFolder trees stream from disk with --stream, with --workers N > 0 (the workers decode), or
    when the split would not fit in memory; otherwise they are decoded once into arrays."""
    stream = cfg.stream if cfg.stream is not None else (True if cfg.workers > 0 else None)
    kw = {"stream": stream, "download": cfg.download, "size": cfg.image_size}
    if not dist.main:
        dist.barrier()
    try:
        train_ds = open_dataset(cfg.data, "train", **kw)
        test_ds = open_dataset(cfg.data, "test", **kw)
    finally:
        if dist.main:
            dist.barrier()
    _check_splits(cfg, train_ds, test_ds)
    limit = cfg.resolved_eval_limit()
    if limit and limit < len(test_ds):
        # a fixed random subset: the first N images of a sorted folder are all one class
        test_ds = test_ds.subset(np.sort(np.random.default_rng(0).permutation(len(test_ds))[:limit]))
    return train_ds, test_ds


def _check_splits(cfg: TrainConfig, train_ds: Dataset, test_ds: Dataset) -> None:
    if test_ds.class_names != train_ds.class_names:
        only_train = sorted(set(train_ds.class_names) - set(test_ds.class_names))
        only_test = sorted(set(test_ds.class_names) - set(train_ds.class_names))
        raise DataError(
            f"{cfg.data}: train/ and test/ have different class folders (only in train: {only_train[:5]}, "
            f"only in test: {only_test[:5]}); both splits need the same classes"
        )
    if len(train_ds.class_names) < 2:
        raise DataError(f"{cfg.data}: needs at least 2 classes, found {list(train_ds.class_names)}")
    arrays = isinstance(train_ds, ArrayDataset) and isinstance(test_ds, ArrayDataset)
    if arrays and train_ds.images.shape[1:] != test_ds.images.shape[1:]:
        raise DataError(
            f"{cfg.data}: train images are {train_ds.images.shape[1:3]} but test images "
            f"{test_ds.images.shape[1:3]}; pass --image-size N to store both as N x N"
        )


def augmentation(cfg: TrainConfig) -> Augment:
    """The preset's crop policy with this run's RandAugment and image size."""
    p = PRESETS[cfg.preset]
    size = cfg.image_size if p.train_crop == "pad" else (cfg.image_size or p.input_size)
    return Augment(crop=p.train_crop, randaugment=cfg.resolved_randaugment(), size=size)


def train_batches(
    cfg: TrainConfig,
    ds: Dataset,
    micros: list[int],
    micro_batches: int,
    steps: tuple[int, int],
    device: torch.device,
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Micro-batches `micros` (of `micro_batches` per step) of steps [start, stop): (uint8 images,
    labels, CPU generator state) each. With 0 workers they are made here, augmented on the training
    `device`; else in worker processes on their CPUs (pinned memory towards a GPU)."""
    sampler = MicroBatchSampler(
        len(ds),
        batch_size=cfg.batch_size,
        micro_batches=micro_batches,
        micros=micros,
        seed=cfg.seed,
        start=steps[0],
        stop=steps[1],
    )
    maker = BatchMaker(ds, augmentation(cfg), seed=cfg.seed, device=device if cfg.workers == 0 else "cpu")
    return loader(maker, sampler, cfg.workers, pin=device.type == "cuda")


class EvalBatches(torch.utils.data.Dataset):
    """Batch number -> uint8 images (B, H, W, 3) of a split at its evaluation size (no augmentation)."""

    def __init__(self, ds: Dataset, batch_size: int, size: int | None = None) -> None:
        self.ds, self.batch_size, self.size = ds, batch_size, size

    def __len__(self) -> int:
        return -(-len(self.ds) // self.batch_size)

    def __getitem__(self, b: int) -> Tensor:
        idx = np.arange(b * self.batch_size, min(len(self.ds), (b + 1) * self.batch_size))
        if isinstance(self.ds, ArrayDataset):
            return torch.from_numpy(self.ds.images[idx])
        return stack_decoded(self.ds, idx, self.size)


def eval_images(
    ds: Dataset, batch_size: int, *, size: int | None = None, workers: int = 0
) -> Iterator[Tensor]:
    """The split's images in order, in batches; a FolderDataset is decoded by `workers` processes."""
    batches = EvalBatches(ds, batch_size, size)
    if isinstance(ds, ArrayDataset):
        workers = 0
    return loader(batches, range(len(batches)), workers, pin=False)
