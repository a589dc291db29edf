"""DeepStream: per detector, a Gst-nvinfer secondary-classifier config, and a deepstream-app sample.

nvinfer feeds a network y = net-scale-factor * (x - offsets[c]) on 0..255 pixels, planar float RGB
(model-color-format=0): ONE scale for all channels. The export normalises (x / 255 - mean[c]) /
std[c] with a per-channel std (CIFAR: 0.2023, 0.1994, 0.2010), which one scale cannot express. So
each detector gets a DeepStream twin of its graph, <graph>_deepstream.onnx, with one Mul node in
front that multiplies channel c by s / std[c]; with net-scale-factor = 1 / (255 s) (s = the mean
std) and offsets = 255 mean[c], nvinfer's preprocessing followed by that Mul is exactly the export's
normalisation. The Mul folds into TensorRT's first convolution. The same twin is made of the
fp16 / int8 (Q/DQ) graphs when the export has them, for network-mode 2 / 1.

Decisions: a class graph outputs one logit; nvinfer's default classifier parser attaches the label
when that output value exceeds classifier-threshold, so classifier-threshold is the detector's
logit threshold and the label file holds the class name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._io import atomic_path, write_text
from ..artifact import FP16, FP32, INPUT_FLOAT, INT8, GraphKind, ManifestEntry, Preprocessing, load_manifest
from ..errors import GraphError
from .subset import detector_entries

NETWORK_MODES = {FP32: 0, INT8: 1, FP16: 2}  # nvinfer network-mode (0=FP32, 1=INT8, 2=FP16)
SCALE_INIT = "deepstream_channel_scale"


def nvinfer_preprocessing(pre: Preprocessing) -> tuple[float, list[float], np.ndarray]:
    """(net-scale-factor, offsets, per-channel factor of the twin's Mul) for the export's mean/std."""
    std = np.asarray(pre.std, np.float64)
    s = float(std.mean())
    return 1.0 / (255.0 * s), [255.0 * m for m in pre.mean], (s / std).astype(np.float32)


def deepstream_graph(src: Path, dst: Path, factor: np.ndarray) -> None:
    """Copy `src` with `images` multiplied per channel by `factor` before any node reads it."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(src)
    g = model.graph
    if [i.name for i in g.input] != [INPUT_FLOAT]:
        raise GraphError(
            f"{src.name}: DeepStream needs a float {INPUT_FLOAT!r} input graph (not --uint8-input)"
        )
    scaled = f"{INPUT_FLOAT}_deepstream"
    for node in g.node:
        node.input[:] = [scaled if n == INPUT_FLOAT else n for n in node.input]
    g.initializer.append(numpy_helper.from_array(factor.reshape(1, 3, 1, 1), SCALE_INIT))
    g.node.insert(0, helper.make_node("Mul", [INPUT_FLOAT, SCALE_INIT], [scaled], name="deepstream_scale"))
    onnx.checker.check_model(model)
    with atomic_path(dst) as tmp:
        onnx.save(model, tmp)


def _twin(entries: list[ManifestEntry], g: ManifestEntry, precision: str) -> ManifestEntry | None:
    if precision == FP32:
        return g
    return next((t for t in entries if t.name == f"{g.name}_{precision}" and t.precision == precision), None)


def nvinfer_config(
    g: ManifestEntry, onnx_file: str, precision: str, pre: Preprocessing, *, batch: int, gie_id: int
) -> str:
    """One [property] group for a secondary classifier on `g` (a one-class detector)."""
    scale, offsets, _ = nvinfer_preprocessing(pre)
    threshold = (g.thresholds or {}).get(g.classes[0])
    if threshold is None:
        raise GraphError(
            f"{g.name} has no decision threshold; run `codedresnext evaluate ... --graphs DIR` first"
        )
    mode = NETWORK_MODES[precision]
    engine = f"{onnx_file}_b{batch}_gpu0_{precision}.engine"  # nvinfer's own name for the engine it builds
    keys = {
        "gpu-id": 0,
        "gie-unique-id": gie_id,
        "process-mode": 2,
        "operate-on-gie-id": 1,
        "operate-on-class-ids": 0,
        "network-type": 1,
        "onnx-file": onnx_file,
        "model-engine-file": engine,
        "network-mode": mode,
        "batch-size": batch,
        "infer-dims": f"3;{pre.size};{pre.size}",
        "model-color-format": 0,
        "net-scale-factor": repr(scale),
        "offsets": ";".join(repr(o) for o in offsets),
        "maintain-aspect-ratio": 0,
        "output-blob-names": "logits",
        "labelfile-path": f"labels_{g.name}.txt",
        "classifier-threshold": repr(float(threshold)),
        "classifier-async-mode": 0,
    }
    head = (
        f"# nvinfer secondary classifier: {g.name} (class {g.classes[0]!r}), {precision} "
        f"(network-mode {mode}).\n"
        "# operate-on-gie-id / operate-on-class-ids: PLACEHOLDERS - set them to the primary detector and\n"
        "# the object class ids this detector should classify.\n"
        "# The label is attached when the logit > classifier-threshold (the detector's threshold).\n"
    )
    return head + "[property]\n" + "".join(f"{k}={v}\n" for k, v in keys.items())


def app_config(secondaries: list[tuple[int, str]], batch: int) -> str:
    """A deepstream-app sample: a file source, a primary detector (placeholder), our secondaries."""
    parts = [
        "# deepstream-app -c deepstream_app.txt ; PLACEHOLDERS: the source uri, the primary detector config",
        "[application]\nenable-perf-measurement=1\nperf-measurement-interval-sec=5\n",
        "[source0]\nenable=1\ntype=3\nuri=file:///PATH/TO/video.mp4\nnum-sources=1\ngpu-id=0\n",
        "[streammux]\ngpu-id=0\nbatch-size=1\nbatched-push-timeout=40000\nwidth=1280\nheight=720\n",
        "[primary-gie]\nenable=1\ngpu-id=0\ngie-unique-id=1\nconfig-file=PRIMARY_DETECTOR_CONFIG.txt\n",
    ]
    for i, (gie_id, cfg) in enumerate(secondaries):
        parts.append(
            f"[secondary-gie{i}]\nenable=1\ngpu-id=0\ngie-unique-id={gie_id}\noperate-on-gie-id=1\n"
            f"operate-on-class-ids=0\nbatch-size={batch}\nconfig-file={cfg}\n"
        )
    parts.append("[osd]\nenable=1\ngpu-id=0\n")
    parts.append("[sink0]\nenable=1\ntype=1\nsync=0\ngpu-id=0\n")
    return "\n".join(parts)


def write_deepstream(
    directory: str | os.PathLike,
    classes: list[str],
    out: str | os.PathLike,
    *,
    precision: str = FP16,
    batch: int = 16,
) -> list[Path]:
    """Per class: <graph>_deepstream.onnx (+ its precision twin), config_<graph>.txt, labels; and
    deepstream_app.txt. GraphError (nothing written) for an unknown class or a missing twin."""
    directory, out = Path(directory), Path(out)
    if precision not in NETWORK_MODES:
        raise GraphError(f"--precision {precision!r}: choose one of {sorted(NETWORK_MODES)}")
    if batch < 1:
        raise GraphError("--batch must be >= 1")
    manifest = load_manifest(directory)
    if manifest.preprocessing is None:
        raise GraphError(f"{directory}/manifest.json has no preprocessing entry; re-export")
    entries = detector_entries(manifest, classes)
    plan = []
    for c in classes:
        g = next(
            (e for e in entries if e.kind == GraphKind.CLASS and e.classes == [c] and e.precision == FP32),
            None,
        )
        if g is None:
            raise GraphError(f"no fp32 class graph for {c!r}; export with --classes {c}")
        twin = _twin(entries, g, precision)
        if twin is None:
            flag = "--fp16" if precision == FP16 else "--int8 --calibration DATA"
            raise GraphError(
                f"no {precision} twin of {g.name}; re-export with {flag} or use --precision fp32"
            )
        plan.append((g, twin))
    out.mkdir(parents=True, exist_ok=True)
    _, _, factor = nvinfer_preprocessing(manifest.preprocessing)
    written, secondaries = [], []
    for i, (g, twin) in enumerate(plan):
        onnx_name = f"{twin.name}_deepstream.onnx"
        deepstream_graph(directory / twin.file, out / onnx_name, factor)
        gie_id = 10 + i
        cfg = f"config_{g.name}.txt"
        text = nvinfer_config(g, onnx_name, precision, manifest.preprocessing, batch=batch, gie_id=gie_id)
        write_text(out / cfg, text)
        write_text(out / f"labels_{g.name}.txt", f"{g.classes[0]}\n")
        secondaries.append((gie_id, cfg))
        written += [out / onnx_name, out / cfg, out / f"labels_{g.name}.txt"]
    write_text(out / "deepstream_app.txt", app_config(secondaries, batch))
    return [*written, out / "deepstream_app.txt"]


def parse_config(text: str) -> dict[str, dict[str, str]]:
    """GLib key file -> {group: {key: value}} (comments and blank lines skipped)."""
    groups: dict[str, dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = groups.setdefault(line[1:-1], {})
        elif current is not None and "=" in line:
            k, _, v = line.partition("=")
            current[k.strip()] = v.strip()
    return groups
