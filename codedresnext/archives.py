"""Safe, atomic, one-time extraction of dataset archives (.tar, .tar.gz) into the cache.

Every member is checked before anything is written (no absolute paths, '..', links or devices), and
the extracted folder appears only when complete, so a crash or a malicious archive leaves nothing
half-written or outside the cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

from .errors import DataError


def cache_root() -> Path:
    root = os.environ.get("CODEDRESNEXT_CACHE") or Path.home() / ".cache" / "codedresnext"
    return Path(root)


def _check_member(m: tarfile.TarInfo, dest: Path) -> None:
    """Refuse members that could write outside `dest`: absolute paths, '..', links, devices."""
    name = m.name
    parts = PurePosixPath(name.replace("\\", "/")).parts
    why = None
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        why = "has an absolute path"
    elif ".." in parts:
        why = "contains '..'"
    elif m.issym() or m.islnk():
        why = "is a link"
    elif not (m.isfile() or m.isdir()):
        why = "is not a regular file or folder"
    else:
        target = (dest / name).resolve()
        if not (target == dest or dest in target.parents):
            why = "would land outside the extraction folder"
    if why:
        raise DataError(
            f"archive member {name!r} {why}; refusing to extract this archive (it may be malicious). "
            "Re-create it with only regular files under train/ and test/."
        )


def _extract_into(archive: Path, dest: Path) -> None:
    """Stream-extract `archive` into the empty folder `dest`, checking every member first."""
    dest = dest.resolve()
    made: set[Path] = set()
    with tarfile.open(archive, "r:*") as tar:
        for m in tar:
            _check_member(m, dest)
            target = dest / m.name
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if target.parent not in made:
                target.parent.mkdir(parents=True, exist_ok=True)
                made.add(target.parent)
            src = tar.extractfile(m)
            assert src is not None  # regular file
            with src, open(target, "wb") as f:
                shutil.copyfileobj(src, f)


def extract_archive(archive: Path) -> Path:
    """Extract a .tar(.gz) once into the cache (atomically: a folder appears only when complete)."""
    archive = Path(archive)
    st = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    dest = cache_root() / "extracted" / f"{archive.name.split('.')[0]}-{key}"
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
    try:
        try:
            _extract_into(archive, tmp)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise DataError(
                f"cannot read archive {archive}: {e}. It looks corrupt or truncated; re-download or "
                "re-copy it."
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
