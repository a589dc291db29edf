"""Per-class logits from the exported, physically pruned class graphs (what actually ships).

Runs each "class" graph of an export directory in ONNX Runtime. Graph input "images" gets the
same normalised float32 NCHW tensor the PyTorch model sees; "frames" gets the raw uint8 NHWC
images (the graph normalises them itself).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import artifact
from .._io import sha256_file
from ..errors import GraphError


def class_graphs(export_dir: str | os.PathLike, class_names: tuple[str, ...]) -> dict[str, Path]:
    """{class name: graph file} for every class, or GraphError saying what is missing."""
    export_dir = Path(export_dir)
    manifest = artifact.load_manifest(export_dir)
    found: dict[str, Path] = {}
    graphs = sorted(manifest.get("graphs", []), key=lambda g: g.get("precision") == "fp16")  # fp32 first
    for g in graphs:
        if g.get("kind") == "class" and len(g.get("classes", [])) == 1:
            found.setdefault(g["classes"][0], export_dir / g["file"])
    missing = [c for c in class_names if c not in found]
    if missing:
        raise GraphError(
            f"{export_dir} has no class graph for {missing[:5]}{'...' if len(missing) > 5 else ''}; "
            "export them with `codedresnext export CKPT --classes all`"
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


def _session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-wait on a shared CPU
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def onnx_class_logits(
    graphs: dict[str, Path],
    images: dict[str, np.ndarray],
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_size: int = 250,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """For every image set (uint8 (M, H, W, 3)): (M, K) logits, column k from class k's graph."""
    import torch

    from ..train.augment import to_input

    out = {name: np.zeros((len(x), len(graphs)), np.float32) for name, x in images.items()}
    items = list(graphs.items())
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="class graphs (onnxruntime)", unit="graph", leave=False)
    for k, (_name, path) in enumerate(items):
        sess = _session(path)
        inp = sess.get_inputs()[0]
        if inp.name not in (artifact.INPUT_FLOAT, artifact.INPUT_UINT8):
            raise GraphError(
                f"{path} input is {inp.name!r}; expected {artifact.INPUT_FLOAT!r} or {artifact.INPUT_UINT8!r}"
            )
        fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
        bs = fixed or batch_size
        for name, x in images.items():
            for i in range(0, len(x), bs):
                chunk = x[i : i + bs]
                n = len(chunk)
                if fixed and n < fixed:  # a static-batch graph: pad the last chunk
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - n, 0)])
                if inp.name == artifact.INPUT_FLOAT:
                    feed = to_input(torch.from_numpy(np.ascontiguousarray(chunk)), mean, std).numpy()
                else:
                    feed = np.ascontiguousarray(chunk)
                lg = sess.run([artifact.OUTPUT_LOGITS], {inp.name: feed})[0]  # (B, 1)
                if lg.ndim != 2 or lg.shape[1] != 1:
                    raise GraphError(
                        f"{path}: output logits has shape {lg.shape}; a class graph gives (batch, 1)"
                    )
                out[name][i : i + n, k] = lg[:n, 0]
    return out
