"""`export --int8`: calibration data, the INT8 twins of every fp32 graph, their checks and accuracy.

The exporter calls `load_int8_data` before it writes anything (a bad --int8 DATA path fails
first, with nothing written) and `add_int8_twins` once the fp32 graphs and their manifest exist in
its temp directory. How graphs are quantized, and why, is in `quantize.py`.

Data: calibration images are a seeded sample of DATA's training split (any source
`codedresnext.data.load_dataset` takes); accuracy is measured on a seeded sample of its test split,
so the figures do not depend on the images the ranges came from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from tqdm import tqdm

from .._io import sha256_file
from ..artifact import FP32, precision_suffix
from ..data import load_dataset
from ..errors import CodedResNeXtError, DataError
from ..runtime.api.graphs import prepare_batch
from ..runtime.bench.accuracy import graph_accuracy
from . import quantize as Q
from .int8_checks import check_quantized
from .int8_surgery import full_weights
from .ops import check_graph
from .options import Int8Options
from .record import io_specs


@dataclass
class Int8Data:
    calib: np.ndarray  # uint8 (n, H, W, 3) training images
    test: np.ndarray | None  # uint8 test images for the accuracy figures (None: not measured)
    labels: np.ndarray | None
    description: dict = field(default_factory=dict)


def _split(path: str, split: str, size: int):
    try:
        ds = load_dataset(path, split)
    except DataError as e:
        raise DataError(f"--int8 {path}: {e}") from e
    if len(ds) == 0:
        raise DataError(f"--int8 {path}: its {split} split holds no images")
    if ds.images.shape[1:3] != (size, size):
        raise DataError(
            f"--int8 {path}: {split} images are {ds.images.shape[1]}x{ds.images.shape[2]}, the model "
            f"takes {size}x{size}; give a dataset of the model's input size"
        )
    return ds


def load_int8_data(opts: Int8Options, cfg) -> Int8Data:
    """Seeded calibration sample (train split) and evaluation sample (test split); clear errors."""
    if opts.images < 1:
        raise CodedResNeXtError(f"Int8Options.images must be >= 1, not {opts.images}")
    if opts.method not in Q.METHODS:
        raise CodedResNeXtError(f"Int8Options.method must be one of {Q.METHODS}, not {opts.method!r}")
    bad = [p for p in opts.precisions if p not in Q.INT8_PRECISIONS]
    if bad or not opts.precisions:
        raise CodedResNeXtError(
            f"INT8 precisions must be among {Q.INT8_PRECISIONS}, got {list(opts.precisions)}"
        )
    src = str(opts.calibration)
    if src not in ("cifar10", "cifar100") and not Path(src).expanduser().exists():
        raise DataError(
            f"--int8 {src} does not exist; give a dataset (an ImageFolder tree with train/ and "
            "test/, a .tar.gz of one, an official CIFAR root, or cifar10/cifar100)"
        )
    train = _split(src, "train", cfg.input_size)
    rng = np.random.default_rng(opts.seed)
    idx = np.sort(rng.permutation(len(train))[: opts.images])
    calib = train.images[idx]
    desc = {
        "data": src,
        "calibration_images": int(len(calib)),
        "calibration_split": "train",
        "calibration_sample": f"seeded (seed {opts.seed}) random sample of the training split",
    }
    test = labels = None
    if opts.eval_images > 0:
        ts = _split(src, "test", cfg.input_size)
        tidx = np.sort(np.random.default_rng(opts.seed + 1).permutation(len(ts))[: opts.eval_images])
        test, labels = ts.images[tidx], ts.labels[tidx]
        desc["accuracy_images"] = int(len(test))
        desc["accuracy_sample"] = f"seeded (seed {opts.seed + 1}) random sample of the test split"
    return Int8Data(calib, test, labels, desc)


def _twin(tmp: Path, entry, ranges, full: dict, precision: str, method: str):
    """Quantize one fp32 graph of `tmp` into its `precision` twin; returns the twin's ManifestEntry."""
    model = onnx.load(str(tmp / entry.file))
    q = Q.quantize(model, ranges, precision, full=full)
    summary = check_quantized(q, precision)
    data = q.SerializeToString()
    check_graph(q, data)
    sfx = precision_suffix(precision)
    name = entry.name + sfx
    (tmp / f"{name}.onnx").write_bytes(data)
    ins, outs = io_specs(q)
    seg, rej = entry.segment, entry.reject  # links point at the same precision's twins
    if seg is not None:
        seg = dataclasses.replace(seg, next=seg.next + sfx if seg.next else None)
    if rej is not None:
        rej = dataclasses.replace(rej, a=rej.a + sfx, b=rej.b + sfx)
    return dataclasses.replace(
        entry,
        name=name,
        file=f"{name}.onnx",
        precision=precision,
        fp32_twin=entry.name,
        inputs=ins,
        outputs=outs,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        verification=None,
        thresholds=None,
        segment=seg,
        reject=rej,
        quantization={"calibration_method": method, "ranges": Q.CALIBRATION_FILE, **summary},
    )


def add_int8_twins(tmp: Path, manifest, full_model, data: Int8Data, opts: Int8Options, *, progress: bool):
    """Calibrate on the full graph, write every fp32 graph's twins + ranges into `tmp`, measure them;
    returns the manifest with their entries and an "int8" section added."""
    inp = full_model.graph.input[0].name
    shape = (None, *[d.dim_value or None for d in full_model.graph.input[0].type.tensor_type.shape.dim[1:]])
    batches = [
        prepare_batch(data.calib[i : i + opts.batch], inp, shape, manifest.preprocessing)
        for i in range(0, len(data.calib), opts.batch)
    ]
    t0 = time.perf_counter()
    ranges = Q.calibrate(full_model, batches, method=opts.method, percentile=opts.percentile)
    calibration_s = time.perf_counter() - t0
    Q.save_ranges(ranges, tmp / Q.CALIBRATION_FILE)
    full = full_weights(full_model)
    twins = []
    for g in tqdm([g for g in manifest.graphs if g.precision == FP32], desc="int8", disable=not progress):
        twins += [_twin(tmp, g, ranges, full, p, opts.method) for p in opts.precisions]
    manifest.graphs += twins
    manifest.int8 = {
        **data.description,
        "calibration_method": opts.method,
        **({"percentile": opts.percentile} if opts.method == "percentile" else {}),
        "calibration_s": calibration_s,
        "precisions": list(opts.precisions),
        "ranges": Q.CALIBRATION_FILE,
        "ranges_sha256": sha256_file(tmp / Q.CALIBRATION_FILE),
        "ranges_from": "full",
        "recipes": {p: vars(Q.RECIPES[p]) for p in opts.precisions},
    }
    if data.test is not None:
        manifest.save(tmp)  # graph_accuracy reads the directory's manifest
        _measure(tmp, twins, data, progress)
    return manifest


def _measure(tmp: Path, twins: Sequence, data: Int8Data, progress: bool) -> None:
    """Each twin vs its fp32 twin on the test sample (segments / reject b behind their own chain)."""
    for t in tqdm(twins, desc="int8 accuracy", unit="graph", disable=not progress):
        t.accuracy = graph_accuracy(tmp, t.name, data.test, data.labels, reference=t.fp32_twin)
