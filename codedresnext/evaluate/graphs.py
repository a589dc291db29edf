"""Per-class logits from the exported, physically pruned class graphs (what actually ships).

Each class graph of an export directory runs through `runtime.Detector`, the code users deploy:
same graph resolution, same input preparation (uint8 frames are normalised by the runtime for an
"images" graph, passed as they are to a "frames" graph), same ONNX Runtime session settings.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import artifact
from .._io import sha256_file
from ..errors import GraphError
from ..runtime import Detector
from ..runtime.backends import DEFAULT_BACKEND


def class_graphs(
    export_dir: str | os.PathLike, class_names: tuple[str, ...], *, precision: str = artifact.FP32
) -> dict[str, Path]:
    """{class name: graph file} of `precision` for every class, or GraphError saying what is missing."""
    export_dir = Path(export_dir)
    manifest = artifact.load_manifest(export_dir)
    found: dict[str, Path] = {}
    for g in manifest.of_kind(artifact.GraphKind.CLASS, precision=precision):
        if len(g.classes) == 1:
            if g.classes[0] not in found:
                found[g.classes[0]] = artifact.graph_file(export_dir, g)
    missing = [c for c in class_names if c not in found]
    if missing:
        how = {artifact.FP32: "", artifact.FP16: " --fp16"}.get(precision, " --int8 DATA")
        more = "..." if len(missing) > 5 else ""
        raise GraphError(
            f"{export_dir} has no {precision} class graph for {missing[:5]}{more}; "
            f"export them with `codedresnext export CKPT --classes all{how}`"
        )
    for c, p in found.items():
        if not p.is_file():
            raise GraphError(f"manifest lists {p.name} for class {c!r} but the file is missing; re-export")
    return {c: found[c] for c in class_names}


def check_same_checkpoint(graph: Path, checkpoint: str | os.PathLike) -> None:
    """Refuse an export made from another checkpoint (its metadata records the sha256)."""
    meta = artifact.read_metadata(graph)
    want = meta.get(artifact.META_CHECKPOINT_SHA256)
    if want and want != sha256_file(checkpoint):
        raise GraphError(
            f"{graph} was exported from another checkpoint (sha256 {str(want)[:12]}...), not {checkpoint}; "
            "pass the checkpoint it came from or re-export"
        )


def _detector_scores(det, x: np.ndarray, batch_size: int) -> np.ndarray:
    """(M,) logits of one detector over uint8 images, in batches (a fixed-batch graph gets padded chunks)."""
    fixed = det.input.shape[0]
    bs = fixed or batch_size
    out = np.zeros(len(x), np.float32)
    for i in range(0, len(x), bs):
        chunk = x[i : i + bs]
        n = len(chunk)
        if fixed and n < fixed:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - n, 0)])
        out[i : i + n] = det.score(np.ascontiguousarray(chunk))[:n]
    return out


def onnx_class_logits(
    graphs: dict[str, Path],
    images: dict[str, np.ndarray],
    *,
    batch_size: int = 250,
    progress: bool = False,
    backend: str = DEFAULT_BACKEND,
) -> dict[str, np.ndarray]:
    """For every image set (uint8 (M, H, W, 3)): (M, K) logits, column k from class k's graph."""
    out = {name: np.zeros((len(x), len(graphs)), np.float32) for name, x in images.items()}
    items = list(graphs.items())
    if progress:
        items = tqdm(items, desc="class graphs (runtime.Detector)", unit="graph", leave=False)
    for k, (_name, path) in enumerate(items):
        with Detector(path, backend=backend) as det:  # scores only: evaluate fits the thresholds
            if det.input.name not in artifact.IMAGE_INPUTS:
                raise GraphError(
                    f"{path} input is {det.input.name!r}; expected one of {artifact.IMAGE_INPUTS}"
                )
            for name, x in images.items():
                out[name][:, k] = _detector_scores(det, x, batch_size)
    return out
