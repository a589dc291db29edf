"""`make demo` without ../shared: the demo falls back to torchvision's CIFAR-10 and says so.

The download itself needs internet, which the test machines lack: torchvision's dataset class is
replaced by one that records how it was asked and holds a few real CIFAR-10 images, so the test
checks the demo's choice, its message, the paths, and that the arrays the demo reads are the
dataset's own.
"""

from __future__ import annotations

import numpy as np
import pytest

from codedresnext import data, demo

pytest.importorskip("torchvision")


class FakeCIFAR10:
    """Stands in for torchvision.datasets.CIFAR10: records each call, holds real images."""

    calls: list[tuple[str, bool, bool]] = []
    images: np.ndarray
    labels: list[int]
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

    def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
        FakeCIFAR10.calls.append((root, train, download))
        self.data, self.targets = FakeCIFAR10.images, FakeCIFAR10.labels


@pytest.fixture
def no_shared(tmp_path, monkeypatch, real_images):
    """An empty SHARED folder, a fresh cache, torchvision's CIFAR-10 faked (no download)."""
    import torchvision.datasets

    monkeypatch.setenv("CODEDRESNEXT_CACHE", str(tmp_path / "cache"))
    FakeCIFAR10.calls = []
    FakeCIFAR10.images = real_images.images[:8].copy()
    FakeCIFAR10.labels = [int(v) for v in real_images.labels[:8]]
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    (tmp_path / "shared").mkdir()
    return tmp_path / "shared"


def test_without_offline_data_the_demo_downloads_cifar10_and_says_so(no_shared, tmp_path):
    source, download, notice = demo.resolve_data(None, str(no_shared))
    assert (source, download) == ("cifar10", True)
    local = no_shared / "datasets" / "cifar10-jpeg.tar.gz"
    assert f"no offline CIFAR-10 at {local}" in notice
    assert str(tmp_path / "cache" / "torchvision") in notice and "170 MB" in notice
    assert "--data PATH" in notice and "make demo DATA=PATH" in notice
    # what the demo then reads is torchvision's dataset, converted to arrays, from the cache
    for split in ("test", "train"):
        ds = data.load_dataset(source, split, download=download)
        np.testing.assert_array_equal(ds.images, FakeCIFAR10.images)
        np.testing.assert_array_equal(ds.labels, FakeCIFAR10.labels)
        assert ds.images.dtype == np.uint8 and ds.class_names == tuple(FakeCIFAR10.classes)
    root = str(tmp_path / "cache" / "torchvision")
    assert FakeCIFAR10.calls == [(root, False, True), (root, True, True)]


def test_offline_data_is_preferred_and_data_overrides(no_shared):
    assert demo.resolve_data(None, None)[:2] == ("cifar10", True)  # installed package, no SHARED
    assert "CODEDRESNEXT_SHARED unset" in demo.resolve_data(None, None)[2]
    archive = no_shared / "datasets" / "cifar10-jpeg.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(b"")
    assert demo.resolve_data(None, str(no_shared)) == (str(archive), False, None)
    assert demo.resolve_data("my/tree", str(no_shared)) == ("my/tree", False, None)
    assert demo.resolve_data("cifar100", None) == ("cifar100", True, None)
    assert FakeCIFAR10.calls == []  # choosing downloads nothing


def test_demo_main_passes_the_fallback_on(no_shared, monkeypatch, capsys):
    """`python -m codedresnext.demo --shared EMPTY` (what `make demo` runs on a fresh clone)."""
    seen = {}
    monkeypatch.setattr(demo, "run", lambda args: seen.update(vars(args)))
    model = demo.default_model()
    if model is None or not model.is_file():
        pytest.skip("the demo model ships with the source checkout (models/demo/model.pt)")
    assert demo.main(["--shared", str(no_shared), "--model", str(model), "--out", "unused"]) == 0
    assert seen["data"] == "cifar10" and seen["download"] is True
    assert "using torchvision's CIFAR-10" in capsys.readouterr().out
    assert demo.main(["--shared", str(no_shared), "--model", str(model), "--data", "x.tar.gz"]) == 0
    assert seen["data"] == "x.tar.gz" and seen["download"] is False
    assert "torchvision" not in capsys.readouterr().out
