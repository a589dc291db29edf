"""Find a graph (file, manifest entry, metadata) and turn user images into its input tensor."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...artifact import (
    INPUT_FLOAT,
    INPUT_UINT8,
    MANIFEST_NAME,
    META_CLASSES,
    META_KIND,
    META_PREPROCESSING,
    META_THRESHOLDS,
    GraphKind,
    ManifestEntry,
    Preprocessing,
    load_manifest,
    read_metadata,
    verified_graph,
)
from ...errors import GraphError


@dataclass
class GraphRef:
    """A graph file with its manifest entry (if it sits in an export directory) and its metadata."""

    path: Path
    entry: ManifestEntry | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    directory: Path | None = None

    @property
    def name(self) -> str:
        return self.entry.name if self.entry else self.path.stem

    @property
    def kind(self) -> GraphKind:
        if self.entry:
            return self.entry.kind
        return GraphKind.parse(self.metadata.get(META_KIND, GraphKind.FULL), f"{self.path} metadata")

    @property
    def classes(self) -> list[str]:
        return list((self.entry.classes if self.entry else None) or self.metadata.get(META_CLASSES) or [])

    @property
    def flops(self) -> float | None:
        return self.entry.flops if self.entry else None

    @property
    def preprocessing(self) -> Preprocessing | None:
        pre = self.metadata.get(META_PREPROCESSING)
        return Preprocessing.from_dict(pre, f"{self.path} preprocessing metadata") if pre else None

    def thresholds(self) -> dict[str, float]:
        """{class: logit threshold}: the manifest entry wins over the graph metadata."""
        th = (self.entry.thresholds if self.entry else None) or self.metadata.get(META_THRESHOLDS) or {}
        return {str(k): float(v) for k, v in th.items()}


def resolve_graph(
    source: str | os.PathLike, name: str | None = None, *, verify_hash: bool = True
) -> GraphRef:
    """`source` is an export directory (then `name` picks the graph) or an .onnx/.plan file.

    A graph listed in a manifest is opened through artifact.verified_graph (contained in the
    directory, metadata matching its entry, sha256 unless verify_hash=False)."""
    source = Path(source)
    if source.is_dir():
        manifest = load_manifest(source)
        if name is None:
            raise GraphError(f"{source} is an export directory: name a graph (one of {manifest.names})")
        entry = manifest.graph(name)
        checked = verified_graph(source, entry, verify_hash=verify_hash)
        return GraphRef(checked.path, entry, checked.metadata, source)
    if not source.is_file():
        raise GraphError(f"graph {source} does not exist; pass an .onnx file or an export directory")
    if (source.parent / MANIFEST_NAME).is_file():
        for g in load_manifest(source.parent).graphs:
            if g.file == source.name:
                checked = verified_graph(source.parent, g, verify_hash=verify_hash)
                return GraphRef(checked.path, g, checked.metadata, source.parent)
    return GraphRef(source, None, _metadata(source), None)


def _metadata(path: Path) -> dict:
    if path.suffix != ".onnx":
        return {}
    return read_metadata(path, missing_ok=True)


def prepare_batch(
    x: Any, input_name: str, input_shape: tuple[int | None, ...], preprocessing: Preprocessing | None
) -> np.ndarray:
    """Validate a user batch and return what the graph input wants.

    - graph input "frames" (uint8, batch x H x W x 3): accepts uint8 HWC frames only.
    - graph input "images" (float32, batch x 3 x H x W): accepts float32 NCHW tensors (already
      normalised), or uint8 HWC frames that are normalised here with the graph's mean/std.
    """
    if not isinstance(x, np.ndarray):
        raise GraphError(f"expected a numpy array batch, got {type(x).__name__}")
    size = (
        tuple(d for d in input_shape[1:3] if d is not None)
        if input_name == INPUT_UINT8
        else tuple(d for d in input_shape[2:4] if d is not None)
    )
    hw = f"{size[0]}x{size[1]}" if len(size) == 2 else "HxW"
    if x.ndim == 3 and 3 in (x.shape[0], x.shape[-1]):  # one HWC or CHW image
        raise GraphError(f"got one image of shape {x.shape}; pass a batch (add a leading axis: x[None])")
    if x.ndim != 4:
        raise GraphError(
            f"expected a 4-d batch (batch, H, W, 3) uint8 or (batch, 3, H, W) float32, got shape {x.shape}"
        )
    if x.dtype == np.uint8:
        if x.shape[-1] != 3:
            raise GraphError(f"uint8 frames must be (batch, H, W, 3) RGB, got shape {x.shape}")
        if len(size) == 2 and x.shape[1:3] != size:
            raise GraphError(
                f"frames are {x.shape[1]}x{x.shape[2]} but the graph takes {hw}; resize them first"
            )
        if input_name == INPUT_UINT8:
            return np.ascontiguousarray(x)
        if preprocessing is None:
            raise GraphError(
                "this graph has no preprocessing metadata: pass normalised float32 (batch, 3, H, W)"
            )
        return preprocessing.normalize(x)
    if input_name == INPUT_UINT8:
        raise GraphError(
            f"this graph takes uint8 frames (batch, {hw.replace('x', ', ')}, 3); got {x.dtype} "
            "(export without --uint8-input for a float graph)"
        )
    if input_name != INPUT_FLOAT:
        raise GraphError(f"graph input {input_name!r} is neither {INPUT_FLOAT!r} nor {INPUT_UINT8!r}")
    if x.dtype != np.float32:
        raise GraphError(
            f"float tensors must be float32 (batch, 3, H, W), got {x.dtype}; use x.astype(np.float32)"
        )
    if x.shape[1] != 3:
        raise GraphError(f"float tensors must be NCHW (batch, 3, H, W), got shape {x.shape}")
    if len(size) == 2 and x.shape[2:4] != size:
        raise GraphError(f"tensors are {x.shape[2]}x{x.shape[3]} but the graph takes {hw}")
    return np.ascontiguousarray(x)
