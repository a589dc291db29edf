"""`codedresnext predict`: decode image files, run one graph, describe the answer in words."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...artifact import OUTPUT_LOGITS
from ...errors import DataError, GraphError
from ..backends import DEFAULT_BACKEND, require
from .detector import GraphModel, SubsetDetector
from .graphs import resolve_graph
from .postprocess import softmax


def load_images(paths: list[str | os.PathLike], size: int) -> np.ndarray:
    """RGB uint8 (N, size, size, 3); pillow is needed only here."""
    Image = require("PIL.Image", "pillow", "reading image files")
    out = []
    for p in paths:
        if not Path(p).is_file():
            raise DataError(f"image {p} does not exist")
        try:
            with Image.open(p) as im:
                out.append(np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), np.uint8))
        except OSError as e:
            raise DataError(f"cannot read {p} as an image: {e}") from e
    return np.stack(out)


def predict_files(
    paths: list[str],
    *,
    graph: str,
    directory: str | None = None,
    top: int = 3,
    backend: str = DEFAULT_BACKEND,
    verify_hash: bool = True,
) -> list[str]:
    """One line per image: top classes (full / multi-exit / masked graphs) or per-class decisions.
    A graph of an export directory is verified against its manifest (verify_hash=False: no sha256)."""
    v = verify_hash
    ref = resolve_graph(directory, graph, verify_hash=v) if directory else resolve_graph(graph, verify_hash=v)
    if not ref.kind.standalone:  # segments / reject parts need the cascade / reject APIs
        raise GraphError(
            f"{ref.name} is a {ref.kind} graph; use the Python API (EarlyExitClassifier / "
            "RejectDetector) or pick a full, class or subset graph"
        )
    size = ref.preprocessing.size if ref.preprocessing else 32
    x = load_images(paths, size)
    if ref.kind.is_detector:
        return _detector_lines(paths, x, ref.path, backend, verify_hash)
    with GraphModel(ref, backend) as model:
        probs = softmax(model.run(x)[OUTPUT_LOGITS])
    names = ref.classes or [str(i) for i in range(probs.shape[1])]
    lines = []
    for p, pr in zip(paths, probs):
        idx = np.argsort(-pr)[:top]
        lines.append(f"{p}: " + ", ".join(f"{names[i]} {pr[i]:.3f}" for i in idx))
    return lines


def _detector_lines(
    paths: list[str], x: np.ndarray, graph: Path, backend: str, verify_hash: bool
) -> list[str]:
    lines = []
    with SubsetDetector(graph, backend=backend, verify_hash=verify_hash) as det:
        scores = det.score(x)
        try:
            th = det.thresholds
        except GraphError:
            th = None
        for p, s in zip(paths, scores):
            parts = []
            for j, c in enumerate(det.classes):
                d = "" if th is None else (" -> YES" if s[j] > th[j] else " -> no")
                parts.append(f"{c}: logit {s[j]:.3f}{'' if th is None else f' (threshold {th[j]:.3f})'}{d}")
            lines.append(f"{p}: " + "; ".join(parts))
    return lines
