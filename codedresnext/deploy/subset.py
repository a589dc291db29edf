"""A self-contained piece of an export: some graphs, copied, with a manifest that lists only them.

Triton Python-backend models and device bundles both ship such a piece, so that the project's own
loaders (Detector, EarlyExitClassifier, load_manifest) open it exactly as they open the full export.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from .._io import atomic_path
from ..artifact import FP32, GraphKind, Manifest, ManifestEntry, load_manifest, save_manifest
from ..errors import GraphError
from ..runtime.api.cascade import segment_entries


def subset_manifest(manifest: Manifest, names: list[str]) -> Manifest:
    """`manifest` with only the entries `names` (manifest order); cross references kept where whole."""
    manifest.select(names)  # GraphError naming any unknown graph
    keep = set(names)
    graphs = [g for g in manifest.graphs if g.name in keep]
    segments = manifest.segments
    if segments is not None and not set(segments.order) <= keep:
        segments = None
    reject = [r for r in manifest.reject or [] if {r.a, r.b} <= keep] or None
    return dataclasses.replace(manifest, graphs=graphs, segments=segments, reject=reject)


def write_subset(directory: str | os.PathLike, names: list[str], out: str | os.PathLike) -> list[Path]:
    """Copy the graphs `names` of the export `directory` into `out` with their manifest subset."""
    directory, out = Path(directory), Path(out)
    manifest = load_manifest(directory)
    sub = subset_manifest(manifest, names)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for g in sub.graphs:
        src = directory / g.file
        if not src.is_file():
            raise GraphError(f"{src} is listed in {directory}/manifest.json but missing; re-export")
        with atomic_path(out / g.file) as tmp:
            shutil.copyfile(src, tmp)
        written.append(out / g.file)
    save_manifest(out, sub)
    return written


def detector_entries(manifest: Manifest, classes: list[str] | None = None) -> list[ManifestEntry]:
    """Class and subset detector graphs (any precision), optionally only those covering `classes`."""
    found = manifest.of_kind(GraphKind.CLASS, GraphKind.SUBSET, precision=None)
    if classes:
        unknown = sorted(set(classes) - {c for g in found for c in g.classes})
        if unknown:
            raise GraphError(
                f"no detector graph for class(es) {unknown}; detectors exist for "
                f"{sorted({c for g in found for c in g.classes})} (export with --classes)"
            )
        found = [g for g in found if set(g.classes) <= set(classes)]
    return found


def segment_names(manifest: Manifest, precision: str = FP32) -> list[str]:
    """The cascade's segment graph names in order, or [] when the export has none at `precision`."""
    if not manifest.of_kind(GraphKind.SEGMENT, precision=precision):
        return []
    return [g.name for g in segment_entries(manifest, precision)]
