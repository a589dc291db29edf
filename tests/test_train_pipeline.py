"""The training input pipeline (train/pipeline.py, train/augment.py) on real CIFAR-10 JPEGs.

The pin: on the in-memory path with crop + flip, the batches (pixels, labels, order) and the RNG
state the trainer continues from are bit-identical to the implementation the demo run started
with (copied below as it was), so that run can be resumed with this code. Then: the same batches
with DataLoader workers, streaming a folder == holding it in memory, batched RandAugment
semantics, random-resized crops.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codedresnext import data
from codedresnext.model import to_input
from codedresnext.model_config import CIFAR10_MEAN, CIFAR10_STD
from codedresnext.train.augment import (
    RANDAUGMENT_OPS,
    _apply_op,
    rand_augment,
    random_resized_crop,
    resized_crop_params,
)
from codedresnext.train.pipeline import Augment, BatchMaker, MicroBatchSampler, eval_images, loader

# --- the implementation the running demo training started with (commit 456a96f), verbatim -----


def _old_crop_flip(images, pad=4):
    B, H, W, _ = images.shape
    padded = torch.nn.functional.pad(images, (0, 0, pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (B,))
    ox = torch.randint(0, 2 * pad + 1, (B,))
    flip = torch.rand(B) < 0.5
    rows = oy[:, None] + torch.arange(H)
    cols = ox[:, None] + torch.arange(W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    b = torch.arange(B)[:, None, None]
    return padded[b, rows[:, :, None], cols[:, None, :]]


def _old_to_input(images, mean, std):
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


def _old_micro_seed(seed, step, micro):
    return (seed * 1_000_003 + step * 10_007 + micro) % (2**63 - 1)


def _old_batches(ds, *, seed, batch_size, grad_accum, world, rank, steps):
    """The old loop's micro-batches: (step, micro, x, y, CPU RNG state before the forward pass)."""
    spe = len(ds) // batch_size
    micro_per_rank = batch_size // (world * grad_accum)
    for step in range(steps):
        perm = np.random.default_rng([seed, step // spe]).permutation(len(ds))
        i = step % spe
        idx = perm[i * batch_size : (i + 1) * batch_size]
        for a in range(grad_accum):
            micro = rank * grad_accum + a
            mb = idx[micro * micro_per_rank : (micro + 1) * micro_per_rank]
            torch.manual_seed(_old_micro_seed(seed, step, micro))
            imgs = torch.from_numpy(ds.images[mb])
            x = _old_to_input(_old_crop_flip(imgs), CIFAR10_MEAN, CIFAR10_STD)
            yield step, micro, x, torch.from_numpy(ds.labels[mb]), torch.get_rng_state()


def _new_batches(ds, *, seed, batch_size, grad_accum, world, rank, steps, workers=0, start=0):
    micros = [rank * grad_accum + a for a in range(grad_accum)]
    n_micro = world * grad_accum
    sampler = MicroBatchSampler(
        len(ds),
        batch_size=batch_size,
        micro_batches=n_micro,
        micros=micros,
        seed=seed,
        start=start,
        stop=steps,
    )
    keys = list(sampler)
    maker = BatchMaker(ds, Augment(crop="pad"), seed=seed)
    for key, (imgs, y, state) in zip(keys, loader(maker, sampler, workers, pin=False)):
        yield key.step, key.micro, to_input(imgs, CIFAR10_MEAN, CIFAR10_STD), y, state


@pytest.fixture(scope="module")
def train_arrays(small_tree):
    return data.load_dataset(small_tree, "train")  # 200 real images, 20 per class


@pytest.mark.parametrize(
    "seed, batch_size, grad_accum, world, rank",
    [(0, 128, 1, 1, 0), (3, 40, 2, 1, 0), (7, 40, 1, 2, 1), (1, 48, 2, 2, 0)],
)
def test_in_memory_crop_flip_batches_are_bit_identical_to_the_old_loop(
    train_arrays, seed, batch_size, grad_accum, world, rank
):
    """Over several epochs (200 images / batch: 1-5 steps per epoch), with accumulation and ranks."""
    steps = 7
    kw = dict(seed=seed, batch_size=batch_size, grad_accum=grad_accum, world=world, rank=rank, steps=7)
    old = list(_old_batches(train_arrays, **kw))
    new = list(_new_batches(train_arrays, **kw))
    assert len(new) == len(old) == steps * grad_accum
    for (s0, m0, x0, y0, r0), (s1, m1, x1, y1, r1) in zip(old, new):
        assert (s0, m0) == (s1, m1)
        assert torch.equal(x0, x1) and x1.dtype == torch.float32
        assert torch.equal(y0, y1)
        assert torch.equal(r0, r1)  # dropSubNN masks continue from the same generator state
    # not vacuous: the batches really are augmented and differ from step to step
    raw = _old_to_input(torch.from_numpy(train_arrays.images[:1]), CIFAR10_MEAN, CIFAR10_STD)
    assert not torch.equal(new[0][2][:1], raw) and not torch.equal(new[0][2], new[1][2][: len(new[0][2])])


def test_resume_start_and_workers_give_the_same_batches(train_arrays):
    """Starting mid-run (resume) or making batches in 2 DataLoader workers changes nothing."""
    kw = dict(seed=5, batch_size=40, grad_accum=2, world=1, rank=0, steps=8)
    ref = list(_new_batches(train_arrays, **kw))
    resumed = list(_new_batches(train_arrays, **kw, start=3))
    workers = list(_new_batches(train_arrays, **kw, workers=2))
    assert len(resumed) == len(ref) - 3 * 2 and len(workers) == len(ref)
    for a, b in zip(ref[6:], resumed):
        assert a[:2] == b[:2] and all(torch.equal(u, v) for u, v in zip(a[2:], b[2:]))
    for a, b in zip(ref, workers):
        assert a[:2] == b[:2] and all(torch.equal(u, v) for u, v in zip(a[2:], b[2:]))


def test_ranks_share_out_every_global_batch(train_arrays):
    """Like DistributedSampler: per step, the ranks' micro-batches are disjoint and cover the batch."""
    n, B = len(train_arrays), 40
    per_rank = [
        list(
            MicroBatchSampler(
                n, batch_size=B, micro_batches=4, micros=[2 * r, 2 * r + 1], seed=0, start=0, stop=5
            )
        )
        for r in range(2)
    ]
    single = list(
        MicroBatchSampler(n, batch_size=B, micro_batches=4, micros=[0, 1, 2, 3], seed=0, start=0, stop=5)
    )
    for step in range(5):
        got = np.concatenate([mb.indices for r in per_rank for mb in r if mb.step == step])
        want = np.concatenate([mb.indices for mb in single if mb.step == step])
        assert sorted(got.tolist()) == sorted(want.tolist()) and len(set(got.tolist())) == B
    epoch0 = np.concatenate([mb.indices for mb in single if mb.step < 5])
    assert sorted(epoch0.tolist()) == list(range(n))  # 5 steps x 40 = one epoch: each image once


# --- streaming == in memory -------------------------------------------------------------------


def test_streamed_folder_batches_equal_in_memory_batches(small_tree, train_arrays):
    folder = data.open_dataset(small_tree, "train", stream=True)
    assert isinstance(folder, data.FolderDataset) and len(folder) == len(train_arrays)
    assert (
        np.array_equal(folder.labels, train_arrays.labels) and folder.class_names == train_arrays.class_names
    )
    for aug in (Augment(crop="pad"), Augment(crop="pad", randaugment=(2, 9))):
        sampler = MicroBatchSampler(
            len(folder), batch_size=40, micro_batches=1, micros=[0], seed=2, start=0, stop=3
        )
        mem = list(loader(BatchMaker(train_arrays, aug, seed=2), sampler, 0, pin=False))
        disk = list(loader(BatchMaker(folder, aug, seed=2), sampler, 2, pin=False))
        for a, b in zip(mem, disk, strict=True):
            assert all(torch.equal(u, v) for u, v in zip(a, b))
    # evaluation batches decode the same pixels as the stored arrays
    test_mem, test_disk = (
        data.load_dataset(small_tree, "test"),
        data.open_dataset(small_tree, "test", stream=True),
    )
    got = torch.cat(list(eval_images(test_disk, 30, workers=2)))
    assert torch.equal(got, torch.from_numpy(test_mem.images))


def test_open_dataset_streams_automatically_when_the_split_would_not_fit(small_tree, tmp_path, monkeypatch):
    first = data.load_dataset(small_tree, "train").images[0].nbytes
    auto = data.open_dataset(small_tree, "train", max_bytes=200 * first - 1)
    assert isinstance(auto, data.FolderDataset)
    assert isinstance(data.open_dataset(small_tree, "train", max_bytes=200 * first), data.ArrayDataset)
    monkeypatch.setenv("CODEDRESNEXT_CACHE", str(tmp_path))  # no cached arrays: it must decode
    with pytest.raises(data.DataError, match='"stream": true in a --config recipe'):
        data.open_dataset(small_tree, "train", stream=False, max_bytes=200 * first - 1)


# --- RandAugment, batched ---------------------------------------------------------------------


def test_rand_augment_gives_each_sample_its_own_ops(train_arrays):
    imgs = torch.from_numpy(train_arrays.images[::3][:64])  # (64, 32, 32, 3) real images, all classes
    torch.manual_seed(0)
    out = rand_augment(imgs.clone(), 1, 9)
    assert out.shape == imgs.shape and out.dtype == torch.uint8
    # replay the draws: every sample equals its own op applied to it alone
    torch.manual_seed(0)
    ops = torch.randint(len(RANDAUGMENT_OPS), (64,))
    neg = torch.rand(64) < 0.5
    names = list(RANDAUGMENT_OPS)
    for i in range(64):
        peak, signed = RANDAUGMENT_OPS[names[ops[i]]]
        mag = peak * 9 / 30 * (-1 if signed and neg[i] else 1)
        want = _apply_op(imgs[i : i + 1].permute(0, 3, 1, 2).contiguous(), names[ops[i]], mag)
        assert torch.equal(out[i], want[0].permute(1, 2, 0)), names[ops[i]]
    assert len(set(ops.tolist())) >= 10  # many different ops in one batch
    changed = (out != imgs).flatten(1).any(1)
    assert 0.7 < changed.float().mean() < 1.0  # identity (1/14) and no-op cases stay unchanged
    # the same seed gives the same batch; magnitude 0 leaves the signed geometric ops the identity
    torch.manual_seed(0)
    assert torch.equal(rand_augment(imgs.clone(), 1, 9), out)
    x = imgs[:4].permute(0, 3, 1, 2).contiguous()
    for op in ("shear_x", "translate_y", "rotate", "brightness", "contrast"):
        assert torch.equal(_apply_op(x, op, 0.0), x), op
    with pytest.raises(ValueError, match="magnitude"):
        rand_augment(imgs, 2, 31)


def test_rand_augment_ops_do_what_they_say(train_arrays):
    x = torch.from_numpy(train_arrays.images[::25]).permute(0, 3, 1, 2).contiguous()
    assert torch.equal(_apply_op(x, "solarize", 1.0), 255 - x)  # threshold 0: every pixel inverted
    assert torch.equal(_apply_op(x, "posterize", 4.0), x & 0xF0)  # 4 bits kept
    bright = _apply_op(x, "brightness", 0.5).float()
    assert torch.allclose(bright, (x.float() * 1.5).clamp(0, 255), atol=1.0)
    shifted = _apply_op(x, "translate_x", 0.25)  # 8 of 32 columns
    assert torch.equal(shifted[..., 8:], x[..., :-8]) and (shifted[..., :8] == 0).all()


def test_random_resized_crop(train_arrays):
    img = torch.from_numpy(train_arrays.images[0]).permute(2, 0, 1)  # (3, 32, 32)
    torch.manual_seed(0)
    params = [resized_crop_params(256, 192) for _ in range(500)]
    areas = np.array([h * w / (256 * 192) for _, _, h, w in params])
    ratios = np.array([w / h for _, _, h, w in params])
    # area fraction uniform in [0.08, 1] before the crops that do not fit are redrawn
    assert areas.min() >= 0.075 and areas.max() <= 1.0 and 0.3 < np.median(areas) < 0.6
    assert ratios.min() > 0.73 and ratios.max() < 1.36  # [3/4, 4/3] up to rounding to pixels
    assert all(0 <= t and 0 <= lft and t + h <= 256 and lft + w <= 192 for t, lft, h, w in params)
    out = random_resized_crop(img, 64)
    assert out.shape == (3, 64, 64) and out.dtype == torch.uint8


def test_resized_crop_batches_from_disk(small_tree):
    """The imagenet preset's policy (random-resized crop + flip, then RandAugment) on a streamed tree:
    full-resolution decode, any output size, the same batches from the main process and workers."""
    folder = data.open_dataset(small_tree, "train", stream=True)
    aug = Augment(crop="resized", randaugment=(2, 10), size=24)
    sampler = MicroBatchSampler(
        len(folder), batch_size=32, micro_batches=2, micros=[0, 1], seed=4, start=0, stop=2
    )
    here = list(loader(BatchMaker(folder, aug, seed=4), sampler, 0, pin=False))
    there = list(loader(BatchMaker(folder, aug, seed=4), sampler, 2, pin=False))
    assert len(here) == 4 and all(b[0].shape == (16, 24, 24, 3) and b[0].dtype == torch.uint8 for b in here)
    for a, b in zip(here, there, strict=True):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    # crops differ between samples and steps (not one fixed crop)
    assert not torch.equal(here[0][0], here[2][0]) and len({bytes(im.numpy()) for im in here[0][0]}) == 16
