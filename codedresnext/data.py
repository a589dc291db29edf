"""Datasets: CIFAR-10/100 (torchvision or an official root), ImageFolder trees and .tar.gz of them.

CIFAR-sized data is decoded once into uint8 arrays (N, H, W, 3) and cached as .npy, so an epoch
costs no JPEG decoding; augmentation then runs on uint8 tensors.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm"}


@dataclass
class ArrayDataset:
    """Images as uint8 (N, H, W, 3) RGB and int64 labels, with the class names in label order."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> ArrayDataset:
        return ArrayDataset(self.images[idx], self.labels[idx], self.class_names)


def cache_root() -> Path:
    root = os.environ.get("CODEDRESNEXT_CACHE") or Path.home() / ".cache" / "codedresnext"
    return Path(root)


def _safe_members(tar: tarfile.TarFile, dest: Path) -> list[tarfile.TarInfo]:
    dest = dest.resolve()
    members = []
    for m in tar.getmembers():
        target = (dest / m.name).resolve()
        if m.issym() or m.islnk() or not (target == dest or dest in target.parents):
            raise DataError(
                f"archive member {m.name!r} would land outside the extraction folder or is a link; "
                "refusing to extract this archive"
            )
        if m.isfile() or m.isdir():
            members.append(m)
    return members


def extract_archive(archive: Path) -> Path:
    """Extract a .tar.gz once into the cache (atomically) and return the folder."""
    st = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    dest = cache_root() / "extracted" / f"{archive.name.split('.')[0]}-{key}"
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(tmp, members=_safe_members(tar, tmp), filter="data")
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DataError(
                f"cannot read archive {archive}: {e}. Re-download or re-copy it; it looks corrupt."
            ) from e
        try:
            os.replace(tmp, dest)
        except OSError:  # another process won the race
            if not dest.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _find_split_root(root: Path) -> Path:
    """Accept ROOT/{train,test} or an archive that wraps it in one top folder."""
    if (root / "train").is_dir():
        return root
    subs = [p for p in root.iterdir() if p.is_dir()]
    if len(subs) == 1 and (subs[0] / "train").is_dir():
        return subs[0]
    raise DataError(f"{root} has no train/ folder; expected an ImageFolder tree ROOT/train/<class>/*.jpg")


def _decode_folder(split_dir: Path, size: int | None) -> ArrayDataset:
    from PIL import Image

    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{split_dir} has no class folders")
    images, labels = [], []
    for k, c in enumerate(classes):
        files = sorted(f for f in (split_dir / c).iterdir() if f.suffix.lower() in IMAGE_EXTS)
        for f in files:
            try:
                with Image.open(f) as im:
                    im = im.convert("RGB")
                    if size is not None and im.size != (size, size):
                        im = im.resize((size, size), Image.BILINEAR)
                    images.append(np.asarray(im, dtype=np.uint8))
            except OSError as e:
                raise DataError(f"cannot decode image {f}: {e}") from e
            labels.append(k)
    if not images:
        raise DataError(f"no images found under {split_dir}")
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise DataError(f"images under {split_dir} have different sizes {sorted(shapes)[:3]}; pass a size")
    return ArrayDataset(np.stack(images), np.asarray(labels, np.int64), tuple(classes))


def _cached_folder(split_dir: Path, size: int | None) -> ArrayDataset:
    key = hashlib.sha256(f"{split_dir.resolve()}:{size}".encode()).hexdigest()[:16]
    cdir = cache_root() / "arrays" / key
    files = [cdir / n for n in ("images.npy", "labels.npy", "classes.txt")]
    if all(f.exists() for f in files):
        return ArrayDataset(np.load(files[0]), np.load(files[1]), tuple(files[2].read_text().split("\n")))
    ds = _decode_folder(split_dir, size)
    cdir.mkdir(parents=True, exist_ok=True)
    from ._io import atomic_path, write_text

    for arr, f in ((ds.images, files[0]), (ds.labels, files[1])):
        with atomic_path(f) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
    write_text(files[2], "\n".join(ds.class_names))
    return ds


def _torchvision_cifar(name: str, root: Path, train: bool, download: bool) -> ArrayDataset:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        ds = cls(str(root), train=train, download=download)
    except RuntimeError as e:
        raise DataError(
            f"{name} not found under {root} ({e}). Pass --download to fetch it with torchvision "
            "(needs internet), or point --data at a local copy (an official CIFAR root, an "
            "ImageFolder tree, or a .tar.gz of one)."
        ) from e
    except OSError as e:
        raise DataError(f"could not download {name}: {e}. Without internet, use --data PATH.") from e
    return ArrayDataset(np.asarray(ds.data, np.uint8), np.asarray(ds.targets, np.int64), tuple(ds.classes))


def load_dataset(
    source: str | os.PathLike, split: str = "train", *, download: bool = False, size: int | None = None
) -> ArrayDataset:
    """Load `split` ('train' or 'test') from a name ('cifar10', 'cifar100'), a folder or an archive.

    - 'cifar10' / 'cifar100': torchvision's dataset under the cache (downloaded only if download=True)
    - a folder holding cifar-10-batches-py or cifar-100-python: the official CIFAR release
    - a folder with train/<class>/ and test/<class>/ images: an ImageFolder tree
    - a .tar.gz / .tgz / .tar of such a tree: extracted once into the cache
    """
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', not {split!r}")
    src = str(source)
    if src in ("cifar10", "cifar100"):
        return _torchvision_cifar(src, cache_root() / "torchvision", split == "train", download)
    path = Path(src).expanduser()
    if not path.exists():
        raise DataError(
            f"dataset path {path} does not exist. Use 'cifar10'/'cifar100' with --download, an "
            "official CIFAR root, an ImageFolder tree (train/ and test/) or a .tar.gz of one."
        )
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise DataError(f"{path} is not a tar archive (corrupt or wrong file); expected .tar.gz of an ImageFolder tree")
        path = extract_archive(path)
    if (path / "cifar-10-batches-py").is_dir():
        return _torchvision_cifar("cifar10", path, split == "train", False)
    if (path / "cifar-100-python").is_dir():
        return _torchvision_cifar("cifar100", path, split == "train", False)
    root = _find_split_root(path)
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataError(f"{root} has no {split}/ folder")
    return _cached_folder(split_dir, size)


def load_npz_images(path: str | os.PathLike) -> ArrayDataset:
    """The shared CIFAR-100 sample (images, fine_labels, fine_label_names) as an ArrayDataset."""
    try:
        d = np.load(path)
        return ArrayDataset(d["images"].astype(np.uint8), d["fine_labels"].astype(np.int64),
                            tuple(str(s) for s in d["fine_label_names"]))
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"cannot read {path} as an images/fine_labels .npz: {e}") from e
