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
             removed (`_drop_branch_qdq`): one per-tensor scale over a conv output with per-channel
             BN offsets cost most of this form's accuracy loss (benchmarks/results/int8_calibration.md).
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
from . import groups, names

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
    full_model = groups.relaid(full_model, groups.model_layout)  # ranges of the model's own channels
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
        raise GraphError(f"no calibration cache {path}; export with --int8 --calibration DATA")
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


def without_alignment(model):
    """A copy of `model` without the Pads that align the expand convs' input channels for fp32
    (builder._expand); the same function.

    The padding is for ONNX Runtime's fp32 NCHWc convolutions. In a Q/DQ graph the Pad runs on
    float values between a DequantizeLinear and a QuantizeLinear that nothing can fuse (profiled:
    benchmarks/results/profile_graphs_int8_cpu.md).
    The integer 1x1 convolutions still run faster on an aligned channel count, so where h comes
    straight from the grouped 3x3 conv (uncoded blocks) each group gets zero output channels instead
    (`_widen_groups`: a few more output rows of that conv, no copy); elsewhere (the normalised h of a
    coded block) the Pad and the weight's zero columns are dropped. The fp32 trunk's groups re-laid
    for NCHWc (groups.py) are first put back in the model's layout: the integer kernels do not use
    NCHWc, so the INT8 graph is what it would be without that re-laying.
    """
    import copy

    from onnx import numpy_helper

    from .builder import EXPAND_ALIGN

    widened = groups.model_layouts(model)  # the fp32 trunk's zero channels go (groups.py) ...
    model = copy.deepcopy(groups.relaid(model, groups.model_layout))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, list] = {}
    for n in graph.node:
        for t in n.input:
            readers.setdefault(t, []).append(n)
    for b, _ in widened:  # ... and the block gets what an unwidened graph's expand Pad turns into below
        if b.branches * b.width % EXPAND_ALIGN:
            name = names.w(b.index, "expand")
            w = _widen_groups(
                f"block{b.index}/conv_relu", numpy_helper.to_array(inits[name]), inits, producer, readers
            )
            inits[name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w), name))
    for pad in [n for n in graph.node if n.op_type == "Pad" and names.expand_align_block(n.name) is not None]:
        convs = readers.get(pad.output[0], [])
        widths = numpy_helper.to_array(inits[pad.input[1]]) if pad.input[1] in inits else None
        if len(convs) != 1 or convs[0].op_type != "Conv" or widths is None or convs[0].input[1] not in inits:
            raise GraphError(f"{pad.name}: not an expand conv's channel alignment (builder._expand)")
        conv, extra = convs[0], int(widths[5])
        w = numpy_helper.to_array(inits[conv.input[1]])
        keep = w.shape[1] - extra
        if np.any(w[:, keep:]):
            raise GraphError(f"{pad.name}: the weight columns it pads for are not zero")
        w = _widen_groups(pad.input[0], w[:, :keep], inits, producer, readers)
        inits[conv.input[1]].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w), conv.input[1]))
        conv.input[0] = pad.input[0]
        graph.node.remove(pad)
    used = {t for n in graph.node for t in n.input}
    for t in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(t)
    return model


def _widen_groups(h: str, expand_w: np.ndarray, inits: dict, producer: dict, readers: dict) -> np.ndarray:
    """If h = Relu(grouped Conv) feeds only the expand conv, give each of that conv's G groups q zero
    output channels (zero weight rows and bias: Relu(0) = 0) so that G * (d + q) is aligned, and
    return the expand weight with zero columns at those channels; else return `expand_w` as is."""
    from onnx import numpy_helper

    from .builder import EXPAND_ALIGN

    relu = producer.get(h)
    conv = producer.get(relu.input[0]) if relu is not None and relu.op_type == "Relu" else None
    if conv is None or conv.op_type != "Conv" or len(conv.input) < 3 or conv.input[2] not in inits:
        return expand_w
    if len(readers.get(h, [])) != 1 or len(readers.get(relu.input[0], [])) != 1:
        return expand_w
    n = next((a.i for a in conv.attribute if a.name == "group"), 1)
    w, b = (numpy_helper.to_array(inits[conv.input[k]]) for k in (1, 2))
    d = w.shape[0] // n
    if n * d != expand_w.shape[1]:
        return expand_w
    q = next(q for q in range(1, EXPAND_ALIGN + 1) if n * (d + q) % EXPAND_ALIGN == 0)

    for k, a in ((1, groups.widen(w, 0, n, d, (1, d + q))), (2, groups.widen(b, 0, n, d, (1, d + q)))):
        inits[conv.input[k]].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(a), conv.input[k]))
    return groups.widen(expand_w, 1, n, d, (1, d + q))


def full_weights(full_model) -> dict[str, np.ndarray]:
    """The full graph's convolution weights, by name (for `weight_overrides`), unpadded."""
    from onnx import numpy_helper

    full_model = without_alignment(full_model)
    convs = {n.input[1] for n in full_model.graph.node if n.op_type == "Conv"}
    return {t.name: numpy_helper.to_array(t) for t in full_model.graph.initializer if t.name in convs}


def weight_overrides(model, full: dict[str, np.ndarray]) -> dict[str, list[dict]]:
    """Per-channel weight ranges of the full graph, for weights a derived graph sliced on the input axis.

    A pruned coded block keeps all output channels of its expand conv but only the kept branches'
    input columns, so its per-output-channel max |w| (hence its int8 scales) would differ from the
    full graph's. The full graph's ranges make the pruned weight's int8 values those of the full
    weight's kept columns: the pruned graph then equals the masked graph in int8 too. Weights
    sliced on the output axis (reduce, 3x3) keep their rows' ranges anyway.
    """
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    out: dict[str, list[dict]] = {}
    for n in model.graph.node:
        w = n.input[1] if n.op_type == "Conv" and len(n.input) > 1 else None
        if w is None or w not in full or w not in inits:
            continue
        fw, shape = full[w], tuple(inits[w].dims)
        # unchanged weights keep their own ranges; equal shapes alone do not say so (a graph could
        # slice a weight to as many columns as another's)
        if shape[0] != fw.shape[0] or (
            shape == fw.shape and np.array_equal(numpy_helper.to_array(inits[w]), fw)
        ):
            continue
        m = np.abs(fw.reshape(fw.shape[0], -1)).max(1)
        out[w] = [{"axis": 0, "rmin": float(-v), "rmax": float(v)} for v in m]
    return out


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
        _drop_branch_qdq(q)
    _set_precision(q, precision)
    q.graph.name = f"{model.graph.name}_{precision}"
    return q


def _drop_branch_qdq(model) -> None:
    """Residual Adds: remove the Q/DQ pair on input 0 (the conv branch, builder's `Add(y, shortcut)`)
    where that pair feeds nothing else; the shortcut input keeps its Q/DQ."""
    producer = {o: n for n in model.graph.node for o in n.output}
    uses: dict[str, int] = {}
    for n in model.graph.node:
        for t in n.input:
            uses[t] = uses.get(t, 0) + 1
    drop = []
    for n in model.graph.node:
        if n.op_type != "Add" or not n.name.endswith("/residual"):
            continue
        dq = producer.get(n.input[0])
        if dq is None or dq.op_type != "DequantizeLinear" or uses[dq.output[0]] != 1:
            continue
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or uses[q.output[0]] != 1:
            continue
        n.input[0] = q.input[0]
        drop += [dq, q]
    for n in drop:
        model.graph.node.remove(n)
    used = {t for n in model.graph.node for t in n.input}
    for t in [t for t in model.graph.initializer if t.name not in used]:
        model.graph.initializer.remove(t)


def _set_precision(model, precision: str) -> None:
    for p in model.metadata_props:
        if p.key == META_GRAPH:
            g = json.loads(p.value)
            g["precision"] = precision
            p.value = json.dumps(g, sort_keys=True)


# -- checks ----------------------------------------------------------------------------------------------


def _inits(model) -> dict:
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def check_quantized(model, precision: str) -> dict:
    """Raise GraphError unless `model` is a well-formed `precision` twin; return a summary.

    int8 (TensorRT): every Q/DQ zero point is an int8 zero; every main-path Conv reads a DQ'd
    activation and a per-channel (axis 0, one scale per output channel) DQ'd int8 weight; the
    shortcut input of every residual Add is DQ'd; no int32 (bias) DQ; only allowlisted ops.
    int8-cpu: allowlisted ops, int8 symmetric per-channel weights.
    """
    from .ops import check_ops

    check_ops(model)
    inits = _inits(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    q = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not q:
        raise GraphError(f"{precision} graph has no QuantizeLinear/DequantizeLinear nodes")
    zero_dtypes = set()
    for n in q:
        if len(n.input) < 3 or n.input[2] not in inits:
            raise GraphError(f"{n.name}: zero point missing (TensorRT needs an explicit int8 zero point)")
        zp = inits[n.input[2]]
        zero_dtypes.add(zp.dtype.name)
        weight = n.op_type == "DequantizeLinear" and n.input[0] in inits
        if zp.dtype == np.int32:
            if precision == PRECISION_TRT:
                raise GraphError(f"{n.name}: int32 (bias) DequantizeLinear; TensorRT takes float bias")
            continue
        if (precision == PRECISION_TRT or weight) and (zp.dtype != np.int8 or np.any(zp != 0)):
            raise GraphError(f"{n.name}: zero point {zp.dtype} {zp.ravel()[:4]} is not a symmetric int8 zero")
    convs = 0
    for n in model.graph.node:
        if n.op_type != "Conv" or n.name.endswith("/gram_conv"):
            continue
        convs += 1
        dq_x, dq_w = producer.get(n.input[0]), producer.get(n.input[1])
        if dq_x is None or dq_x.op_type != "DequantizeLinear":
            raise GraphError(f"{n.name}: activation input is not dequantized (no Q/DQ)")
        if dq_w is None or dq_w.op_type != "DequantizeLinear" or dq_w.input[0] not in inits:
            raise GraphError(f"{n.name}: weight is not an int8 initializer behind a DequantizeLinear")
        w, scale = inits[dq_w.input[0]], inits[dq_w.input[1]]
        axis = next((a.i for a in dq_w.attribute if a.name == "axis"), 1)
        if w.dtype != np.int8 or scale.shape != (w.shape[0],) or axis != 0:
            raise GraphError(f"{n.name}: weight scales are not per output channel (axis 0) int8")
    if precision == PRECISION_TRT:
        for n in model.graph.node:
            if n.op_type == "Add" and n.name.endswith("/residual"):
                sc = producer.get(n.input[1])
                if sc is None or sc.op_type != "DequantizeLinear":
                    raise GraphError(f"{n.name}: the residual (shortcut) input must be Q/DQ'd for TensorRT")
    return {
        "quantize_linear": sum(n.op_type == "QuantizeLinear" for n in q),
        "dequantize_linear": sum(n.op_type == "DequantizeLinear" for n in q),
        "quantized_convs": convs,
        "zero_point_dtypes": sorted(zero_dtypes),
    }
