"""The one way to open a manifest entry's graph file: contained, matching, unmodified.

A manifest lists each graph by a plain file name beside manifest.json. Every loader (the runtime API,
bench, calibrate, evaluate --graphs, TensorRT builds, the Triton repository writer, the threshold
write-back) goes through `verified_graph` / `graph_file`, so a swapped graph (class_cat.onnx replaced
by class_dog.onnx), a file pointing outside the export (`../other/x.onnx`, an absolute path, a
symlink out) or a graph edited after export is refused with a ManifestError naming the file and the
fix, instead of answering for another class. The sha256 check reads the whole file (its cost is
measured by benchmarks/safety_costs.py); `verify_hash=False` skips it for callers that verified the
directory already, the containment and metadata checks always run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from .._io import sha256_file
from ..errors import GraphError, ManifestError
from .keys import GRAPH_SUFFIX, META_CLASSES, META_GRAPH, META_KIND
from .onnxfile import read_metadata

FIX = "restore the file from the original export, or re-export with `codedresnext export`"


def check_plain_name(name: Any, where: str) -> str:
    """`name` if it is a plain file name (no directory part, not absolute, not '.'/'..'), else
    ManifestError: manifest paths must stay inside the export directory."""
    if not isinstance(name, str):
        raise ManifestError(f"{where}: expected a file name (str), got {name!r}")
    plain = (
        name not in ("", ".", "..")
        and "\x00" not in name
        and PurePosixPath(name).name == name
        and PureWindowsPath(name).name == name
    )
    if not plain:
        raise ManifestError(
            f"{where}: {name!r} is not a plain file name; a manifest lists files inside its export "
            "directory only (no '/', '\\', '..' or absolute paths): re-export, or fix manifest.json"
        )
    return name


@dataclass
class VerifiedGraph:
    """A graph file that passed the checks, with the codedresnext metadata read while checking."""

    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)


def contained_path(directory: str | os.PathLike, file_name: str, where: str) -> Path:
    """DIR/file_name, refused if the name is not plain, the file is missing, or it resolves (through
    symlinks) outside DIR."""
    directory = Path(directory)
    check_plain_name(file_name, where)
    path = directory / file_name
    if not path.is_file():
        raise ManifestError(f"{where}: the manifest lists {file_name} but {path} is missing; {FIX}")
    if path.resolve().parent != directory.resolve():
        raise ManifestError(
            f"{where}: {path} resolves to {path.resolve()}, outside the export directory {directory}; "
            f"a manifest's files must live in its directory: {FIX}"
        )
    return path


def verified_graph(directory: str | os.PathLike, entry: Any, *, verify_hash: bool = True) -> VerifiedGraph:
    """Check a ManifestEntry's file (containment, sha256 unless verify_hash=False, the graph's own
    kind/classes/precision/blocks metadata against the entry) and return it with its metadata."""
    where = f"graph {entry.name!r}"
    path = contained_path(directory, entry.file, where)
    if verify_hash:
        check_hash(path, entry, where)
    meta = _metadata(path)
    check_metadata(path, meta, entry)
    return VerifiedGraph(path, meta)


def graph_file(directory: str | os.PathLike, entry: Any, *, verify_hash: bool = True) -> Path:
    """The path of a ManifestEntry's graph after `verified_graph`'s checks."""
    return verified_graph(directory, entry, verify_hash=verify_hash).path


def check_hash(path: Path, entry: Any, where: str) -> None:
    """ManifestError unless the file's sha256 is the one the manifest recorded at export."""
    if not entry.sha256:
        raise ManifestError(
            f"{where}: the manifest records no sha256 for {path.name}, so the file cannot be verified; "
            "re-export, or open it with verify_hash=False"
        )
    got = sha256_file(path)
    if got != entry.sha256:
        raise ManifestError(
            f"{where}: {path} has sha256 {got[:12]}..., the manifest recorded {entry.sha256[:12]}...: "
            f"the file was replaced or modified after export; {FIX}"
        )


def check_metadata(path: Path, meta: dict[str, Any], entry: Any) -> None:
    """ManifestError when the graph's own metadata (written at export) disagrees with its entry."""
    if not meta:
        return  # not a codedresnext graph: the sha256 is the only check there is
    graph = meta.get(META_GRAPH) if isinstance(meta.get(META_GRAPH), dict) else {}
    found = {
        "kind": meta.get(META_KIND),
        "classes": meta.get(META_CLASSES),
        "precision": graph.get("precision"),
        "blocks": _blocks(graph),
    }
    want = {
        "kind": entry.kind.value if hasattr(entry.kind, "value") else entry.kind,
        "classes": list(entry.classes),
        "precision": entry.precision,
        "blocks": entry.blocks,
    }
    bad = [k for k in found if found[k] is not None and want[k] is not None and found[k] != want[k]]
    if bad:
        diff = "; ".join(f"{k}: graph {found[k]!r}, manifest {want[k]!r}" for k in bad)
        raise ManifestError(
            f"graph {entry.name!r}: {path.name} is not the graph the manifest lists ({diff}); "
            f"another graph was copied over it: {FIX}"
        )


def _blocks(graph: dict[str, Any]) -> list[int] | None:
    """[first, last] block index from the graph metadata (stop_block is exclusive there)."""
    start, stop = graph.get("start_block"), graph.get("stop_block")
    if isinstance(start, int) and isinstance(stop, int):
        return [start, stop - 1]
    return None


def _metadata(path: Path) -> dict[str, Any]:
    if path.suffix != GRAPH_SUFFIX:
        return {}
    try:
        return read_metadata(path, missing_ok=True)
    except GraphError as e:
        raise ManifestError(f"{e}; {FIX}") from e
