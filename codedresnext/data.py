"""Datasets: CIFAR-10/100 (torchvision or an official root), ImageFolder trees and .tar.gz of them.

Two ways to hold a split. `load_dataset` decodes it once into a uint8 array (N, H, W, 3) cached
as .npy under the cache (CODEDRESNEXT_CACHE, default ~/.cache/codedresnext), so an epoch costs no
image decoding: right for CIFAR-scale data (60k images of 32x32 are 184 MB); a split that would
not fit in memory is refused with a clear error instead of exhausting RAM. `open_dataset` may
instead return a `FolderDataset` (ImageFolder trees only): the file list and labels, decoded per
batch by the training input pipeline (DataLoader workers), for trees of any size and resolution.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ._io import atomic_path, write_text
from .archives import cache_root, extract_archive
from .errors import DataError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm"}
_DECODE_VERSION = "v2"  # part of the array-cache key: bump when decoding changes


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


@dataclass
class FolderDataset:
    """An ImageFolder split listed but not decoded: image files and int64 labels (streaming)."""

    files: tuple[Path, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> FolderDataset:
        return FolderDataset(tuple(self.files[i] for i in idx), self.labels[idx], self.class_names)

    def decode(self, i: int, size: int | None = None) -> np.ndarray:
        """Image i as (H, W, 3) uint8 RGB; with `size` exactly as `load_dataset(..., size=size)`
        stores it (shorter side resized, centre crop), so both paths see the same pixels."""
        return _decode_file(self.files[i], size)


# --- ImageFolder trees ------------------------------------------------------------------------


def _find_split_root(root: Path) -> Path:
    """Accept ROOT/{train,test} or an archive that wraps it in one top folder."""
    if (root / "train").is_dir():
        return root
    subs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subs) == 1 and (subs[0] / "train").is_dir():
        return subs[0]
    raise DataError(
        f"{root} has no train/ folder; expected an ImageFolder tree ROOT/train/<class>/*.jpg and "
        "ROOT/test/<class>/*.jpg (or an official CIFAR root with cifar-10-batches-py/)"
    )


def _list_folder(split_dir: Path) -> tuple[tuple[str, ...], list[list[Path]]]:
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{split_dir} has no class folders; expected {split_dir}/<class>/*.jpg")
    files = []
    for c in classes:
        fs = sorted(
            f
            for f in (split_dir / c).iterdir()
            if f.suffix.lower() in IMAGE_EXTS and not f.name.startswith(".") and f.is_file()
        )
        if not fs:
            raise DataError(
                f"class folder {split_dir / c} has no images ({', '.join(sorted(IMAGE_EXTS))}); "
                "remove it or add images"
            )
        files.append(fs)
    return tuple(classes), files


def _fingerprint(split_dir: Path, files: list[list[Path]], size: int | None) -> str:
    """Cache key: the folder, every file's name, size and mtime, the target size, decoder version."""
    h = hashlib.sha256(f"{_DECODE_VERSION}:{split_dir.resolve()}:{size}".encode())
    for fs in files:
        for f in fs:
            st = f.stat()
            h.update(f"{f.parent.name}/{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _memory_limit() -> int:
    """Bytes one decoded split may take: half the machine's RAM (override: CODEDRESNEXT_MAX_DATA_GB)."""
    env = os.environ.get("CODEDRESNEXT_MAX_DATA_GB")
    if env:
        return int(float(env) * 2**30)
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def _decode_file(f: Path, size: int | None) -> np.ndarray:
    """One image -> (H, W, 3) uint8 RGB; with `size`: shorter side to `size`, centre crop size x size."""
    if size is None:
        try:  # libjpeg-turbo via torchvision: ~10x faster than PIL, same pixels for JPEG
            import torch
            from torchvision.io import ImageReadMode, decode_image

            data = torch.frombuffer(bytearray(f.read_bytes()), dtype=torch.uint8)
            with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders (PIL fallback)
                warnings.simplefilter("ignore", DeprecationWarning)
                return decode_image(data, mode=ImageReadMode.RGB).permute(1, 2, 0).numpy()
        except (RuntimeError, ValueError, ImportError):
            pass  # formats torchvision lacks (BMP, PPM) or odd files: PIL below
    from PIL import Image

    try:
        with Image.open(f) as im:
            if size is not None:
                im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale >= size
                im = im.convert("RGB")
                w, h = im.size
                s = size / min(w, h)
                nw, nh = max(size, round(w * s)), max(size, round(h * s))
                im = im.resize((nw, nh), Image.BILINEAR)
                left, top = (nw - size) // 2, (nh - size) // 2
                im = im.crop((left, top, left + size, top + size))
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot decode image {f}: {e}; delete or replace the file") from e


def _decode_folder(
    split_dir: Path,
    size: int | None,
    listing: tuple[tuple[str, ...], list[list[Path]]] | None = None,
    max_bytes: int | None = None,
) -> ArrayDataset:
    classes, files = listing or _list_folder(split_dir)
    n = sum(len(fs) for fs in files)
    first = _decode_file(files[0][0], size)
    need = n * first.nbytes
    limit = _memory_limit() if max_bytes is None else max_bytes
    if need > limit:
        raise DataError(
            f"{split_dir}: {n} images of {first.shape[1]}x{first.shape[0]} need {need / 2**30:.1f} GiB "
            f"decoded, more than the {limit / 2**30:.1f} GiB allowed in memory. Train from disk instead "
            '(train --workers N, which streams ImageFolder trees, or "stream": true in a --config recipe), '
            "store the images smaller with "
            "--image-size, or raise CODEDRESNEXT_MAX_DATA_GB if the machine has the RAM."
        )
    images = np.empty((n,) + first.shape, np.uint8)  # (N, H, W, 3)
    labels = np.empty(n, np.int64)
    i = 0
    for k, fs in enumerate(files):
        for f in fs:
            im = first if i == 0 else _decode_file(f, size)
            if im.shape != first.shape:
                raise DataError(
                    f"images under {split_dir} have different sizes ({files[0][0].name}: "
                    f"{first.shape[1]}x{first.shape[0]}, {f.name}: {im.shape[1]}x{im.shape[0]}); "
                    "pass --image-size N (size= in Python) to resize them to N x N"
                )
            images[i], labels[i] = im, k
            i += 1
    return ArrayDataset(images, labels, classes)


def _cached_folder(split_dir: Path, size: int | None, max_bytes: int | None = None) -> ArrayDataset:
    listing = _list_folder(split_dir)
    cdir = cache_root() / "arrays" / _fingerprint(split_dir, listing[1], size)
    files = [cdir / n for n in ("images.npy", "labels.npy", "classes.txt")]
    if all(f.exists() for f in files):
        try:
            return ArrayDataset(np.load(files[0]), np.load(files[1]), tuple(files[2].read_text().split("\n")))
        except (OSError, ValueError):
            pass  # unreadable cache entry: decode again and overwrite it
    ds = _decode_folder(split_dir, size, listing, max_bytes)
    for arr, f in ((ds.images, files[0]), (ds.labels, files[1])):
        with atomic_path(f) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
    write_text(files[2], "\n".join(ds.class_names))
    return ds


# --- CIFAR through torchvision ----------------------------------------------------------------


def _torchvision_cifar(name: str, root: Path, train: bool, download: bool) -> ArrayDataset:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        ds = cls(str(root), train=train, download=download)
    except RuntimeError as e:
        raise DataError(
            f"{name} not found or corrupt under {root} ({e}). Pass --download to fetch it with "
            "torchvision (needs internet), or point --data at a local copy (an official CIFAR root, "
            "an ImageFolder tree, or a .tar.gz of one)."
        ) from e
    except OSError as e:
        raise DataError(
            f"could not download {name}: {e}. Without internet, point --data at a local copy "
            "(an official CIFAR root, an ImageFolder tree, or a .tar.gz of one)."
        ) from e
    return ArrayDataset(np.asarray(ds.data, np.uint8), np.asarray(ds.targets, np.int64), tuple(ds.classes))


# --- entry points -----------------------------------------------------------------------------


def _resolve(source: str | os.PathLike, split: str, download: bool) -> ArrayDataset | Path:
    """CIFAR as arrays, or the split folder of an ImageFolder tree (archives extracted first)."""
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', not {split!r}")
    src = str(source)
    if src in ("cifar10", "cifar100"):
        return _torchvision_cifar(src, cache_root() / "torchvision", split == "train", download)
    path = Path(src).expanduser()
    if not path.exists():
        raise DataError(
            f"dataset path {path} does not exist. Use 'cifar10'/'cifar100' (with --download where "
            "there is internet), an official CIFAR root, an ImageFolder tree (train/ and test/) or a "
            ".tar.gz of one."
        )
    if path.is_file():
        try:
            is_tar = tarfile.is_tarfile(path)
        except OSError as e:
            raise DataError(f"cannot read {path}: {e}") from e
        if not is_tar:
            raise DataError(
                f"{path} is not a tar archive (corrupt or another format); expected a .tar.gz of "
                "an ImageFolder tree (train/<class>/*.jpg, test/<class>/*.jpg) or a folder"
            )
        path = extract_archive(path)
    if path.name in ("cifar-10-batches-py", "cifar-100-python"):
        path = path.parent
    for name, sub in (("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")):
        if (path / sub).is_dir():
            return _torchvision_cifar(name, path, split == "train", False)
    root = _find_split_root(path)
    split_dir = root / split
    if split == "test" and not split_dir.is_dir() and (root / "val").is_dir():
        split_dir = root / "val"
    if not split_dir.is_dir():
        raise DataError(f"{root} has no {split}/ folder; an ImageFolder tree needs train/ and test/")
    return split_dir


def load_dataset(
    source: str | os.PathLike,
    split: str = "train",
    *,
    download: bool = False,
    size: int | None = None,
    max_bytes: int | None = None,
) -> ArrayDataset:
    """Load `split` ('train' or 'test') from a name ('cifar10', 'cifar100'), a folder or an archive.

    - 'cifar10' / 'cifar100': torchvision's dataset under the cache (downloaded only if download=True)
    - a folder holding cifar-10-batches-py or cifar-100-python (or that folder itself): the official
      CIFAR release (also as its .tar.gz)
    - a folder with train/<class>/ and test/<class>/ images (test/ may be called val/): an
      ImageFolder tree; labels follow the sorted class-folder names
    - a .tar.gz / .tgz / .tar of such a tree, possibly wrapped in one top folder: extracted once
      into the cache
    `size` stores ImageFolder images as size x size (shorter side resized, centre crop); without
    it all images must share one size. `max_bytes` caps the decoded split (default: half the RAM).
    """
    if size is not None and size < 1:
        raise DataError(f"image size must be positive, not {size}")
    found = _resolve(source, split, download)
    if isinstance(found, ArrayDataset):
        return found
    return _cached_folder(found, size, max_bytes)


def open_dataset(
    source: str | os.PathLike,
    split: str = "train",
    *,
    stream: bool | None = None,
    download: bool = False,
    size: int | None = None,
    max_bytes: int | None = None,
) -> ArrayDataset | FolderDataset:
    """Like `load_dataset`, but an ImageFolder split may stay on disk as a `FolderDataset`.

    stream=True: always, for ImageFolder trees (CIFAR sources are arrays already and stay so);
    False: always decode into memory (refused if it would not fit); None: decode when the split
    fits in the memory limit, else stream. Nothing is decoded for a streamed split except, for
    stream=None, its first image (to size the array it would need).
    """
    if size is not None and size < 1:
        raise DataError(f"image size must be positive, not {size}")
    found = _resolve(source, split, download)
    if isinstance(found, ArrayDataset):
        return found
    classes, files = _list_folder(found)
    if stream is None:
        n = sum(len(fs) for fs in files)
        limit = _memory_limit() if max_bytes is None else max_bytes
        stream = n * _decode_file(files[0][0], size).nbytes > limit
    if not stream:
        return _cached_folder(found, size, max_bytes)
    labels = np.concatenate([np.full(len(fs), k, np.int64) for k, fs in enumerate(files)])
    return FolderDataset(tuple(f for fs in files for f in fs), labels, classes)


def load_npz_images(path: str | os.PathLike) -> ArrayDataset:
    """The shared CIFAR-100 sample (images, fine_labels, fine_label_names) as an ArrayDataset."""
    try:
        d = np.load(path)
        return ArrayDataset(
            d["images"].astype(np.uint8),
            d["fine_labels"].astype(np.int64),
            tuple(str(s) for s in d["fine_label_names"]),
        )
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"cannot read {path} as an images/fine_labels .npz: {e}") from e


def write_subset(
    source: str | os.PathLike, dest: str | os.PathLike, *, train_per_class: int, test_per_class: int
) -> Path:
    """Copy the first N images per class (sorted names) of an ImageFolder tree or .tar.gz of one
    into `dest` as a new tree, bytes unchanged: a small real dataset for smoke runs and tests.

    Reads archives as a stream (no extraction) and writes `dest` atomically (temp folder + rename).
    """
    src, dest = Path(source), Path(dest)
    want = {"train": train_per_class, "test": test_per_class}
    picked: dict[tuple[str, str], dict[str, bytes]] = {}
    if src.is_file():
        try:
            with tarfile.open(src, "r:*") as tar:
                for m in tar:
                    parts = PurePosixPath(m.name).parts
                    if not m.isfile() or len(parts) < 3 or parts[-3] not in want:
                        continue
                    if PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_EXTS:
                        continue
                    f = tar.extractfile(m)
                    assert f is not None
                    picked.setdefault((parts[-3], parts[-2]), {})[parts[-1]] = f.read()
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise DataError(f"cannot read archive {src}: {e}") from e
    else:
        root = _find_split_root(src)
        for split in want:
            classes, files = _list_folder(root / split)
            for c, fs in zip(classes, files):
                picked[(split, c)] = {f.name: f.read_bytes() for f in fs[: want[split]]}
    if not picked:
        raise DataError(f"{src} holds no train/<class>/ or test/<class>/ images")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        for (split, c), files in picked.items():
            (tmp / split / c).mkdir(parents=True)
            for name in sorted(files)[: want[split]]:
                (tmp / split / c / name).write_bytes(files[name])
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
