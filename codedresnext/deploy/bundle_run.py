"""Run a device bundle's detectors on ONNX Runtime (copied as BUNDLE/run.py by `codedresnext bundle`).

    python run.py frames.npy            uint8 (N, H, W, 3) RGB frames
    python run.py a.png b.jpg ...       image files (resized to the graphs' input size)

Needs only the torch-free install (`pip install codedresnext`: numpy, onnx, onnxruntime, pillow).
Prints one JSON object: {"graphs": {graph: {"classes": [...], "scores": [[...]], "decisions": [[...]]}}}
for the fp32 detector graphs in this folder, decided at the thresholds in its manifest.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from codedresnext.artifact import DETECTOR_KINDS, FP32, load_manifest
from codedresnext.runtime import SubsetDetector

HERE = Path(__file__).resolve().parent


def load_frames(paths: list[str], size: int) -> np.ndarray:
    if len(paths) == 1 and paths[0].endswith(".npy"):
        return np.load(paths[0])
    from PIL import Image

    frames = [np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)) for p in paths]
    return np.stack(frames).astype(np.uint8)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    manifest = load_manifest(HERE)
    frames = load_frames(argv, manifest.preprocessing.size if manifest.preprocessing else 32)
    out = {}
    for g in manifest.of_kind(*DETECTOR_KINDS, precision=FP32):
        with SubsetDetector(HERE, g.name, threads=1) as det:
            scores = det.score(frames)
            out[g.name] = {
                "classes": det.classes,
                "scores": scores.tolist(),
                "decisions": (scores > det.thresholds).tolist(),
            }
    json.dump({"graphs": out}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
