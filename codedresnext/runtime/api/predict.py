"""`codedresnext predict`: decode image files, run one graph, describe the answer in words."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...artifact import OUTPUT_LOGITS, GraphKind
from ...errors import DataError, GraphError
from ..backends import DEFAULT_BACKEND, require
from .detector import THRESHOLD_FIX, GraphModel, SubsetDetector
from .graphs import resolve_graph
from .postprocess import softmax

# graphs whose output is not a decision predict can print: what each is for instead
NOT_PREDICTABLE = {
    GraphKind.SEGMENT: "a block range of the early-exit cascade; run the export through "
    "EarlyExitClassifier (Python API) or `codedresnext bench --data`",
    GraphKind.REJECT: "one half of an early-reject pair; run the pair through RejectDetector (Python API)",
    GraphKind.REJECT_PROBE: "a reject probe: it reports codeword distances at every coded block for "
    "`codedresnext calibrate`, not a decision",
    GraphKind.MASKED: "the paper's masked per-class graph, kept for comparison; its logit has no "
    "decision threshold",
}


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
    """One line per image: top classes (full / multi-exit graphs) or per-class YES / no (class and
    subset graphs; without a fitted threshold: the logits and a line saying how to fit one). A graph
    of an export directory is verified against its manifest (verify_hash=False: no sha256)."""
    v = verify_hash
    ref = resolve_graph(directory, graph, verify_hash=v) if directory else resolve_graph(graph, verify_hash=v)
    if not (ref.kind.is_head or ref.kind.is_detector):
        what = NOT_PREDICTABLE.get(ref.kind, "a graph predict cannot interpret")
        raise GraphError(
            f"{ref.name} is {what}; predict takes a full, multi-exit, class or subset graph "
            "(e.g. --graph class_cat or --graph full with --dir)"
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
    """Per image and class: YES / no at the class's threshold, or the logit and why no decision."""
    with SubsetDetector(graph, backend=backend, verify_hash=verify_hash) as det:
        scores = det.score(x)
        try:
            th = det.thresholds
        except GraphError:
            th = None
        classes = list(det.classes)
    lines = []
    for p, s in zip(paths, scores):
        if th is None:
            parts = [f"{c} logit {s[j]:.3f}" for j, c in enumerate(classes)]
        else:
            parts = [
                f"{c} {'YES' if s[j] > th[j] else 'no'} (logit {s[j]:.3f}, threshold {th[j]:.3f})"
                for j, c in enumerate(classes)
            ]
        lines.append(f"{p}: " + "; ".join(parts))
    if th is None:
        lines.append(
            f"no decision: {graph.name} has no threshold yet; fit it with `{THRESHOLD_FIX}` "
            "(a trained export), then predict prints YES / no"
        )
    return lines
