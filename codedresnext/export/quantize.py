"""INT8 twins of exported graphs: ranges calibrated once on real images, Q/DQ by ONNX Runtime's quantizer.

Library, not hand-written Q/DQ: `onnxruntime.quantization` calibrates (its MinMax / Percentile /
Entropy calibrators on the full graph's tensors) and inserts QuantizeLinear/DequantizeLinear pairs
(`quantize_static`, QuantFormat.QDQ). What this module adds is the project's policy:

- One calibration, every graph. The ranges are measured once, on the fp32 *full* graph, and saved
  in ONNX Runtime's calibration-cache format (`int8_calibration.json` in the export). Every other
  graph (class, subset, masked, multi-exit, segments, reject pairs) is quantized from that cache:
  tensor names are stable across graphs (builder.py), so a pruned graph's activation scales are the
  full graph's scales for the channels it keeps, and a class graph equals the masked model quantized
  the same way. Weights are handled alike (`weight_overrides`: a pruned expand conv keeps the full
  graph's per-channel weight scales). The few tensors only derived graphs have get their source
  tensor's range: a segment's `features` input is the previous block's output,
  `block{i}/masked` / `block{i}/kept_h` are channel subsets of `block{i}/conv_relu`, and the expand
  conv's input `block{i}/normalised` has the range of the full graph's zero-padded
  `block{i}/expand_align` where the fp32 full graph pads it (builder._expand). INT8 graphs drop that
  channel alignment (`without_alignment`): it serves fp32 kernels and cost the quantized ones time.
- Two precisions, both per-channel symmetric int8 weights (scales on the output-channel axis, 0 for
  Conv) calibrated from the same ranges:
  `int8`     the TensorRT form (explicit quantization, what `build --precision int8` uses):
             symmetric int8 activations (every zero point 0, dtype int8), Q/DQ on the inputs of every
             convolution (activation + weight) and on the residual (shortcut) input of every
             residual Add, float bias, outputs of weighted ops not quantized: TensorRT's placement
             rules. ONNX Runtime's quantizer also puts a Q/DQ on the Add's conv-branch input; it is
             removed (`int8_surgery.drop_branch_qdq`): one per-tensor scale over a conv output with
             per-channel BN offsets cost most of this form's accuracy loss
             (benchmarks/results/int8_calibration.md).
  `int8-cpu` the fast ONNX Runtime CPU form: uint8 asymmetric activations (a ReLU output uses all
             256 levels, the ReLU folds into the zero point), int32 bias and quantized conv outputs,
             so ONNX Runtime fuses every DQ-Conv-Q into QLinearConv (U8S8 kernels), with 7-bit
             weights (reduce_range): without VNNI the U8S8 kernels saturate 16-bit pair sums, which
             8-bit weights overflow and 7-bit weights do not. TensorRT rejects uint8 Q/DQ: never
             build engines from it.
- What stays float, and why: the energy path (Gram conv, h * Gram(h), the reductions), the
  normalisation (sum, mean, sqrt, divide), the early decoders / coding distance and the classifier
  Gemm. Energies are sums of squares over a whole feature map (a range no 8-bit scale covers for
  both small and large inputs) and the normalisation divides by them, so quantizing them moves
  every branch at once; together with the 1-row-per-class Gemm they are a small share of the FLOPs. The
  expand conv's input is the normalised h / sqrt(n2) (builder.py), so its Q/DQ scale does not
  have to cover the per-sample scale the normalisation removes. In `int8` the 3x3 conv's output h is
  float (only float ops read it), so energies come from unquantized h; in `int8-cpu` conv outputs
  are uint8 and the energies read the dequantized h.

torch-free (onnx, numpy, onnxruntime): a device holding the fp32 graphs and the calibration cache
can quantize the graphs it cuts itself.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifact import INPUT_FEATURES_MIDDLE, META_GRAPH, OUTPUT_FEATURES
from ..errors import CodedResNeXtError, GraphError
from . import groups
from .int8_surgery import drop_branch_qdq, relaid, weight_overrides, without_alignment

PRECISION_TRT = "int8"
PRECISION_CPU = "int8-cpu"
INT8_PRECISIONS = (PRECISION_TRT, PRECISION_CPU)
METHODS = ("minmax", "percentile", "entropy")
DEFAULT_METHOD = "minmax"  # chosen by benchmarks/int8_calibration.py (docs/int8.md says why)
DEFAULT_PERCENTILE = 99.999
CALIBRATION_FILE = "int8_calibration.json"
CALIBRATED_OPS = ("Conv", "Add", "Relu", "Gemm")  # tensors around these ops get ranges


@dataclass(frozen=True)
class Recipe:
    """How one INT8 precision is quantized (passed to onnxruntime.quantization.quantize_static)."""

    precision: str
    activation_uint8: bool  # False: symmetric int8 activations (zero point 0)
    quantize_bias: bool  # int32 bias (DequantizeLinear of int32): ORT only, TensorRT takes float bias
    quantize_outputs: bool  # Q/DQ on conv/add outputs too (lets ORT fuse QLinearConv / QLinearAdd)
    fold_relu: bool  # quantize ReLU nodes (removed into an asymmetric zero point)
    reduce_range: bool  # 7-bit weights: U8S8 kernels without VNNI saturate int16 pair sums otherwise
    branch_qdq: bool  # keep the Q/DQ ONNX Runtime puts on the conv-branch input of residual Adds


RECIPES = {
    PRECISION_TRT: Recipe(PRECISION_TRT, False, False, False, False, False, False),
    PRECISION_CPU: Recipe(PRECISION_CPU, True, True, True, True, True, True),
}


# -- calibration ---------------------------------------------------------------------------------------


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}
    if name not in table:
        raise CodedResNeXtError(f"calibration method must be one of {METHODS}, not {name!r}")
    return CalibrationMethod[table[name]]


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over a list of ready input batches."""

    def __init__(self, name: str, batches: list[np.ndarray]) -> None:
        self.name, self.batches = name, list(batches)

    def get_next(self):
        return {self.name: self.batches.pop(0)} if self.batches else None


def calibrate(
    full_model,
    batches: Iterable[np.ndarray],
    *,
    method: str = DEFAULT_METHOD,
    percentile: float = DEFAULT_PERCENTILE,
    chunk: int = 4,
):
    """Ranges of the full graph's tensors on `batches` (ready graph inputs) -> onnxruntime TensorsData.

    Batches are fed `chunk` at a time so that memory stays bounded (the calibrators hold the
    intermediate outputs of what they are fed); MinMax merges chunks exactly, the histogram methods
    extend their histograms.
    """
    import onnx
    from onnxruntime.quantization import create_calibrator

    options = {"symmetric": False}  # int8 symmetrises later (ActivationSymmetric); uint8 needs the true range
    if method == "percentile":
        options.update(num_bins=2048, percentile=float(percentile))
    elif method == "entropy":  # TensorRT's own entropy calibrator uses 2048 bins -> 128 levels
        options.update(num_bins=2048, num_quantized_bins=128)
    batches = list(batches)
    if not batches:
        raise CodedResNeXtError("no calibration images")
    full_model = relaid(full_model, groups.model_layout)  # ranges of the model's own channels
    input_name = full_model.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="codedresnext-calib-") as tmp:
        src = Path(tmp) / "full.onnx"
        onnx.save_model(full_model, str(src))
        cal = create_calibrator(
            src,
            list(CALIBRATED_OPS),
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=_method(method),
            extra_options=options,
        )
        for i in range(0, len(batches), chunk):
            cal.collect_data(_Reader(input_name, batches[i : i + chunk]))
        ranges = cal.compute_data()
    return ranges


def save_ranges(ranges, path: str | Path) -> None:
    """Write ONNX Runtime's calibration-cache JSON (quantize_static(calibration_cache_path=...) reads it)."""
    from onnxruntime.quantization.calibrate import save_tensors_data

    save_tensors_data(ranges, Path(path))


def load_ranges(path: str | Path):
    from onnxruntime.quantization.calibrate import load_tensors_data

    path = Path(path)
    if not path.is_file():
        raise GraphError(f"no calibration cache {path}; export with --int8 DATA")
    try:
        return load_tensors_data(path)
    except (ValueError, KeyError, json.JSONDecodeError) as e:
        raise GraphError(f"{path} is not an ONNX Runtime calibration cache: {e}") from e


# -- which nodes, which ranges ---------------------------------------------------------------------------


def quantized_nodes(model, recipe: Recipe) -> list[str]:
    """Main-path convolutions (not the Gram conv of the energies) and residual Adds; ReLUs for int8-cpu."""
    out = []
    for n in model.graph.node:
        if n.op_type == "Conv" and not n.name.endswith("/gram_conv"):
            out.append(n.name)
        elif n.op_type == "Add" and n.name.endswith("/residual"):
            out.append(n.name)
        elif recipe.fold_relu and n.op_type == "Relu" and not n.name.endswith("/clamp"):
            out.append(n.name)  # the energy clamp stays float
    return out


_ALIAS = re.compile(r"^(block\d+)/(masked|kept_h)$")
_NORMALISED = re.compile(r"^(block\d+)/normalised$")
# INT8 graphs' expand convs read the normalised h unpadded (without_alignment); where the fp32 full
# graph padded it, its calibrated tensor is the Pad's output `expand_align`: the same values plus zeros


def ranges_for(ranges, model):
    """The full graph's ranges plus aliases for the tensors only `model` has (see module docstring)."""
    from onnxruntime.quantization.calibrate import TensorsData

    data = dict(ranges.data)
    meta = {p.key: p.value for p in model.metadata_props}
    start = json.loads(meta.get(META_GRAPH, "{}")).get("start_block", 0)
    tensors = {t for n in model.graph.node for t in (*n.input, *n.output)}
    tensors |= {i.name for i in model.graph.input}
    for t in sorted(tensors - set(data)):
        m, e = _ALIAS.match(t), _NORMALISED.match(t)
        if m and f"{m.group(1)}/conv_relu" in data:
            data[t] = data[f"{m.group(1)}/conv_relu"]
        elif e and f"{e.group(1)}/expand_align" in data:
            data[t] = data[f"{e.group(1)}/expand_align"]
        elif t in (INPUT_FEATURES_MIDDLE, OUTPUT_FEATURES) and start > 0 and f"block{start - 1}/out" in data:
            data[t] = data[f"block{start - 1}/out"]
    return TensorsData(ranges.calibration_method, data)


# -- quantize one graph -----------------------------------------------------------------------------------


def quantize(model, ranges, precision: str, *, full: dict[str, np.ndarray] | None = None):
    """The `precision` twin of one fp32 graph, quantized with `ranges` (the full graph's, aliased);
    `full`: full_weights(full graph), so that pruned weights get the full graph's weight scales."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    if precision not in RECIPES:
        raise CodedResNeXtError(f"INT8 precision must be one of {INT8_PRECISIONS}, not {precision!r}")
    r = RECIPES[precision]
    model = without_alignment(model)
    rng = ranges_for(ranges, model)
    nodes = quantized_nodes(model, r)
    extra = {
        "ActivationSymmetric": not r.activation_uint8,
        "WeightSymmetric": True,
        "QuantizeBias": r.quantize_bias,
        "DedicatedQDQPair": False,
        "OpTypesToExcludeOutputQuantization": [] if r.quantize_outputs else ["Conv", "Add", "Relu"],
    }
    overrides = weight_overrides(model, full or {})
    if overrides:
        extra["TensorQuantOverrides"] = overrides
    log = logging.getLogger()
    level = log.level
    with tempfile.TemporaryDirectory(prefix="codedresnext-q-") as tmp:
        cache, out = Path(tmp) / "ranges.json", Path(tmp) / "q.onnx"
        save_tensors_data(rng, cache)
        log.setLevel(logging.ERROR)  # quantize_static logs advice ("consider pre-processing") as warnings
        try:
            quantize_static(
                model,
                str(out),
                None,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=r.reduce_range,
                activation_type=QuantType.QUInt8 if r.activation_uint8 else QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=nodes,
                calibrate_method=rng.calibration_method,
                calibration_cache_path=str(cache),
                extra_options=extra,
            )
        finally:
            log.setLevel(level)
        q = onnx.load(str(out))
    if not r.branch_qdq:
        q = drop_branch_qdq(q)
    _set_precision(q, precision)
    q.graph.name = f"{model.graph.name}_{precision}"
    return q


def _set_precision(model, precision: str) -> None:
    for p in model.metadata_props:
        if p.key == META_GRAPH:
            g = json.loads(p.value)
            g["precision"] = precision
            p.value = json.dumps(g, sort_keys=True)
