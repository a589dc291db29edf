"""Build any of our ONNX graphs directly with onnx.helper from a config + BN-folded weights.

numpy + onnx only (no torch): the exporter calls it with weights folded from a checkpoint, the
pruner with weights read back from full.onnx. Every node and initializer has a stable name derived
from the block index ("block3/reduce", "block3/gram"), so graphs are byte-identical for the same
weights. A block whose kept branches are given is *physically* pruned: reduce / 3x3 / Gram rows and
expand columns of the other branches are sliced away and `group` is the kept count, while the energy
normalisation still divides by the full N (docs/method.md section 5).

Coded block, as ONNX (B = batch, C = c_out, nk = kept branches, d = width):
    h  = Relu(Conv3x3_g(Relu(Conv1x1(x))))                     (B, nk*d, H', W')
    e  = Relu(ReduceSum_d(Reshape(ReduceSum_hw(h * Conv1x1_g(h, Gram))))) / (C H' W')   (B, nk)
    n2 = ReduceSum(e) / N + eps                                 (B, 1), N = ALL branches
    y  = Conv1x1(h / sqrt(n2), W_expand * bn_scale, bn_bias)     (B, C, H', W')
    out = Relu(y + shortcut(x))
Energies and normalisation are float32 even in an FP16 graph (only h / sqrt(n2) is in FP16 there).
Dividing h (nk*d channels) instead of the expand output (C channels) is the same function up to
float rounding and cheaper, most of all in pruned graphs, whose h shrinks while C does not. Where
nk*d is not a multiple of EXPAND_ALIGN, h is zero-padded to one before the expand (`_expand`). In
fp32 graphs the shared trunk's narrow groups are re-laid with zero channels (groups.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper

from .. import __version__
from ..artifact import (
    INPUT_FLOAT,
    INPUT_UINT8,
    OUTPUT_EXIT_SCORES,
    OUTPUT_FEATURES,
    OUTPUT_LOGITS,
    exit_energies_name,
    exit_scores_name,
    features_input_name,
)
from ..errors import CodedResNeXtError
from ..model_config import ModelConfig
from . import groups, names
from .emit import F32, Graph, channels, i64, value_info
from .kinds import EXITS_EVERY, EXITS_LAST, GraphKindDef, GraphSpec, kind_of
from .layout import EXPAND_ALIGN, BlockGeom, block_layout


def _expand(g: Graph, W: Mapping[str, np.ndarray], i: int, h: str, we: np.ndarray) -> str:
    """Block i's expand conv on h with weight `we` (the full weight's columns of h's channels, as
    sliced by the caller: the pruner's weights may carry padding), channel-aligned.

    ONNX Runtime's CPU layout optimisation (NCHWc) takes a 1x1 conv only when its input channel
    count is a multiple of EXPAND_ALIGN; otherwise the conv runs in plain NCHW and its (B, C_out,
    H, W) output is reordered for the residual Add, which cost the class graphs more than their
    share (benchmarks/results/profile_graphs.md). So h is zero-padded (Pad, a copy of nk*d
    channels) and the weight gets as many zero input columns: the same function, exactly.
    counting.py leaves the padding out of parameters and FLOPs.
    """
    pad = -we.shape[1] % EXPAND_ALIGN
    if pad:
        pads = g.const(names.expand_align(i) + "_pads", i64(0, 0, 0, 0, 0, pad, 0, 0))
        h = g.op("Pad", [h, pads], names.expand_align(i))
        we = np.concatenate([we, np.zeros((we.shape[0], pad, *we.shape[2:]), we.dtype)], axis=1)
    bias = W[names.b(i, "expand")].reshape(-1)
    return g.conv(h, f"block{i}/expand", we, bias, wname=names.w(i, "expand"), bname=names.b(i, "expand"))


def _decoder(g: Graph, en: str, words: np.ndarray, b: BlockGeom, prefix: str) -> str:
    """(B, N) normalised energies -> (B, K') distances ||v - w_k||, v = en * N_act / N."""
    v = g.op(
        "Mul", [en, g.const(f"{prefix}/rescale", np.array(b.active / b.branches, np.float32))], f"{prefix}/v"
    )
    v3 = g.op("Unsqueeze", [v, g.shared("const/axes_1", i64(1))], f"{prefix}/v3")  # (B, 1, N)
    diff = g.op("Sub", [v3, g.const(f"{prefix}/codewords", words.astype(np.float32))], f"{prefix}/diff")
    sq = g.op("Mul", [diff, diff], f"{prefix}/sq")
    ss = g.op("ReduceSum", [sq, g.shared("const/axes_2", i64(2))], f"{prefix}/sum", keepdims=0)
    return g.op("Sqrt", [ss], f"{prefix}/distance")  # (B, K')


def _scores(g: Graph, dist: str, prefix: str, out: str) -> str:
    neg = g.op("Neg", [dist], f"{prefix}/neg")
    return g.op("Softmax", [neg], f"{prefix}/softmax", out, axis=1)


def _exit_scores(g: Graph, W: Mapping[str, np.ndarray], b: BlockGeom, x: str, en: str, out: str) -> str:
    """Block b's exit scores (B, K): its fitted head on the block output x (B, C, H', W') when the
    weights carry one (exit_heads.py: AveragePool to pool x pool cells -> Flatten -> Gemm ->
    Softmax, float32), else the codeword decoder on the normalised energies (docs/method.md section 6)."""
    p = f"block{b.index}/exit"
    wname, bname = names.w(b.index, "exit_head"), names.b(b.index, "exit_head")
    if wname not in W:
        return _scores(g, _decoder(g, en, b.codewords, b, p), p, out)
    w = W[wname]
    pool = int(round((w.shape[1] / b.c_out) ** 0.5))
    if pool < 1 or b.c_out * pool * pool != w.shape[1] or b.size_out % pool:
        raise CodedResNeXtError(
            f"exit head of block {b.index} has shape {w.shape}: it does not fit this model"
        )
    k = b.size_out // pool
    cells = g.op("AveragePool", [x], f"{p}/pool", kernel_shape=[k, k], strides=[k, k])  # (B, C, pool, pool)
    f = g.to_f32(g.op("Flatten", [cells], f"{p}/flatten", axis=1), f"{p}/f32")
    z = g.op(
        "Gemm", [f, g.const(wname, w.astype(np.float32)), g.const(bname, W[bname])], f"{p}/head", transB=1
    )
    return g.op("Softmax", [z], f"{p}/softmax", out, axis=1)


def _trunk(
    g: Graph, cfg: ModelConfig, b: BlockGeom, W: Mapping[str, np.ndarray], x: str, computed: tuple[int, ...]
) -> tuple[str, str, np.ndarray]:
    """Block b's reduce -> grouped 3x3 -> Relu on the `computed` branches and its shortcut:
    (h, shortcut, expand weight of h's channels). fp32 re-lays the shared trunk's groups (groups.py)."""
    i, p = b.index, f"block{b.index}"
    ch = channels(computed, b.width)
    wr, br, wc, bc = parts = (
        names.w(i, "reduce"),
        names.b(i, "reduce"),
        names.w(i, "conv"),
        names.b(i, "conv"),
    )
    t = {k: W[k][ch] for k in parts}
    t[names.w(i, "expand")] = W[names.w(i, "expand")][:, ch]
    layout = groups.model_layout(b) if g.fp16 else groups.layouts(cfg)[i]
    if layout != groups.model_layout(b):
        t = groups.block_tensors(t, b, groups.model_layout(b), layout)
    h = g.conv(x, f"{p}/reduce", t[wr], t[br], wname=wr, bname=br)
    h = g.op("Relu", [h], f"{p}/reduce_relu")
    group = len(computed) // layout[0]
    h = g.conv(h, f"{p}/conv", t[wc], t[bc], wname=wc, bname=bc, stride=b.stride, group=group)
    h = g.op("Relu", [h], f"{p}/conv_relu")  # (B, nc*d, H', W') in the model's layout
    sc = x
    if b.projection:
        ws, bs = names.w(i, "shortcut"), names.b(i, "shortcut")
        sc = g.conv(x, f"{p}/shortcut", W[ws], W[bs], wname=ws, bname=bs, stride=b.stride)
    return h, sc, t[names.w(i, "expand")]


def _mask(g: Graph, b: BlockGeom, h: str, kept: tuple[int, ...]) -> str:
    """Masked kinds: zero the branches outside `kept` with a constant 0/1 Mul (nothing sliced)."""
    mask = np.zeros((1, b.branches * b.width, 1, 1), g.act)
    mask[0, channels(kept, b.width)] = 1
    return g.op("Mul", [h, g.const(f"block{b.index}/keep_mask", mask)], f"block{b.index}/masked")


def _energies(
    g: Graph, cfg: ModelConfig, b: BlockGeom, W: Mapping[str, np.ndarray], h: str, computed: tuple[int, ...]
) -> str:
    """(B, nc) raw branch energies in float32 (Gram conv, h * Gram(h), reductions); also defines the
    constants `_normalise` reads (the FULL branch count N and eps)."""
    i, d, nc, p = b.index, b.width, len(computed), f"block{b.index}"
    hf = g.to_f32(h, f"{p}/h_f32")
    gw = W[names.gram(i)][channels(computed, d)]
    gh = g.conv(hf, f"{p}/gram_conv", gw, None, wname=names.gram(i), bname=None, group=nc, dtype=np.float32)
    prod = g.op("Mul", [hf, gh], f"{p}/h_gram_h")
    s = g.op("ReduceSum", [prod, g.shared("const/axes_hw", i64(2, 3))], f"{p}/sum_hw", keepdims=0)
    # 0 (not -1) keeps the symbolic batch dimension through shape inference: with an unknown batch
    # ONNX Runtime cannot prove the residual Add's inputs equal and leaves Conv + Add + Relu unfused
    s = g.op("Reshape", [s, g.const(f"{p}/branch_shape", i64(0, nc, d))], f"{p}/per_branch")
    e = g.op("ReduceSum", [s, g.shared("const/axes_2", i64(2))], f"{p}/sum_d", keepdims=0)
    e = g.op("Relu", [e], f"{p}/clamp")
    scale = np.array(b.c_out * b.size_out * b.size_out, np.float32)
    e = g.op("Div", [e, g.const(f"{p}/energy_scale", scale)], f"{p}/energy")  # (B, nc) raw energies
    g.const(f"{p}/branches", np.array(b.branches, np.float32))  # always the FULL N
    g.shared("const/energy_eps", np.array(cfg.energy_eps, np.float32))
    return e


def _normalise(g: Graph, b: BlockGeom, e: str, tag: str, energies: bool = True) -> tuple[str, str | None]:
    """(n2 = mean energy over the FULL N + eps (B, 1), normalised energies or None if nothing reads them)."""
    p = f"block{b.index}"
    tot = g.op("ReduceSum", [e, g.shared("const/axes_1", i64(1))], f"{p}/{tag}sum", keepdims=1)
    n2 = g.op("Div", [tot, f"{p}/branches"], f"{p}/{tag}mean")
    n2 = g.op("Add", [n2, "const/energy_eps"], f"{p}/{tag}norm2")  # (B, 1)
    if not energies:  # nothing reads them (no exit here): emit no dead node
        return n2, None
    return n2, g.op("Div", [e, n2], f"{p}/{tag}energies")  # (B, n) sums to N when n = N


def _probe(
    g: Graph,
    b: BlockGeom,
    e: str,
    h: str,
    spec: GraphSpec,
    kd: GraphKindDef,
    kept: tuple[int, ...],
    outputs: list,
) -> tuple[str, str]:
    """Reject kinds at a probed block (all branches computed): output the reject distance of class
    rows[0] and the normalised energies, then continue on the class path's (e, h) only."""
    p, d, k = f"block{b.index}", b.width, spec.rows[0]
    _, en_all = _normalise(g, b, e, "all_")
    dist_name, en_name = kd.probe_names(spec, b.index)
    dist = _decoder(g, en_all, b.codewords[k : k + 1], b, f"{p}/reject")
    g.op("Identity", [dist], f"{p}/reject_out", dist_name)
    outputs.append((dist_name, (1,)))
    g.op("Identity", [en_all], f"{p}/reject_energies_out", en_name)
    outputs.append((en_name, (b.branches,)))
    if len(kept) != b.branches:  # continue on the class path only
        pos = g.const(f"{p}/kept_branches", np.array(kept, np.int64))
        e = g.op("Gather", [e, pos], f"{p}/kept_energy", axis=1)
        h = g.op("Gather", [h, g.const(f"{p}/kept_channels", channels(kept, d))], f"{p}/kept_h", axis=1)
    return e, h


def _block(
    g: Graph,
    cfg: ModelConfig,
    b: BlockGeom,
    W: Mapping[str, np.ndarray],
    x: str,
    spec: GraphSpec,
    outputs: list[tuple[str, tuple]],
) -> tuple[str, str | None]:
    """Emit block b on input x; returns (output, normalised energies (B, nk) float32 or None)."""
    kd, i, N, p = kind_of(spec), b.index, b.branches, f"block{b.index}"
    keep, probe = spec.keep[i], i in spec.probe
    kept = tuple(range(N)) if keep is None else keep
    computed = tuple(range(N)) if (kd.masked or probe or keep is None) else kept
    h, sc, we = _trunk(g, cfg, b, W, x, computed)
    if not b.coded:
        s = g.op("Add", [_expand(g, W, i, h, we), sc], f"{p}/residual")
        return g.op("Relu", [s], f"{p}/out"), None
    if kd.masked and keep is not None:
        h = _mask(g, b, h, kept)
    e = _energies(g, cfg, b, W, h, computed)
    if probe:
        e, h = _probe(g, b, e, h, spec, kd, kept, outputs)
        computed = kept
    exit_here = kd.exits == EXITS_EVERY or (kd.exits == EXITS_LAST and i == spec.last_block)
    n2, en = _normalise(g, b, e, "", energies=exit_here)
    # normalise the expand conv's INPUT (nk*d channels) rather than its output (c_out channels):
    # the expand is linear and bias-free before BN, so Conv(h / s) + b == Conv(h) / s + b, the
    # divide touches fewer elements, the BN bias folds into the Conv and Conv + Add + Relu fuse
    sq = g.op("Sqrt", [n2], f"{p}/norm")
    sq = g.op("Unsqueeze", [sq, g.shared("const/axes_23", i64(2, 3))], f"{p}/norm4")  # (B, 1, 1, 1)
    hs = g.op("Div", [h, g.to_act(sq, f"{p}/norm_act")], f"{p}/normalised")
    y = _expand(g, W, i, hs, W[names.w(i, "expand")][:, channels(computed, b.width)])
    s = g.op("Add", [y, sc], f"{p}/residual")
    return g.op("Relu", [s], f"{p}/out"), en


def _stem(g: Graph, cfg: ModelConfig, weights: Mapping[str, np.ndarray], uint8: bool, inputs: list) -> str:
    """The image input (uint8 frames with preprocessing inside, or normalised float images) and the stem."""
    S = cfg.input_size
    if uint8:
        inputs.append(helper.make_tensor_value_info(INPUT_UINT8, TensorProto.UINT8, ["batch", S, S, 3]))
        x = g.cast(INPUT_UINT8, F32, "pre/cast")
        x = g.op("Transpose", [x], "pre/nchw", perm=[0, 3, 1, 2])
        std, mean = np.asarray(cfg.std, np.float64), np.asarray(cfg.mean, np.float64)
        scale = (1.0 / (255.0 * std)).astype(np.float32).reshape(1, 3, 1, 1)
        offset = (-mean / std).astype(np.float32).reshape(1, 3, 1, 1)
        x = g.op("Mul", [x, g.const("pre/scale", scale)], "pre/scale_mul")
        x = g.op("Add", [x, g.const("pre/offset", offset)], "pre/normalised")
    else:
        inputs.append(value_info(INPUT_FLOAT, F32, (3, S, S)))
        x = INPUT_FLOAT
    x = g.to_act(x, "pre/to_act")
    stride = 2 if cfg.stem == "imagenet" else 1
    x = g.conv(
        x,
        "stem/conv",
        weights[names.STEM_W],
        weights[names.STEM_B],
        wname=names.STEM_W,
        bname=names.STEM_B,
        stride=stride,
    )
    x = g.op("Relu", [x], "stem/relu")
    if cfg.stem == "imagenet":
        x = g.op("MaxPool", [x], "stem/maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)
    return x


def _end(
    g: Graph, weights: Mapping[str, np.ndarray], spec: GraphSpec, last: BlockGeom, x: str, outputs: list
) -> None:
    """The classifier head ("logits", first output) or, for a graph that stops early, "features"."""
    if spec.stop is None:
        pooled = g.op("GlobalAveragePool", [x], "head/pool")
        f = g.op("Flatten", [pooled], "head/flatten", axis=1)
        f = g.to_f32(f, "head/f32")
        fc = weights[names.FC_W][list(spec.rows)].astype(np.float32)
        g.op("Gemm", [f, g.const(names.FC_W, fc)], "head/fc", OUTPUT_LOGITS, transB=1)
        outputs.insert(0, (OUTPUT_LOGITS, (len(spec.rows),)))
    else:
        xf = g.to_f32(x, "features_f32")
        g.op("Identity", [xf], "features_out", OUTPUT_FEATURES)
        outputs.append((OUTPUT_FEATURES, (last.c_out, last.size_out, last.size_out)))


def build_graph(
    cfg: ModelConfig,
    weights: Mapping[str, np.ndarray],
    spec: GraphSpec,
    *,
    metadata: Mapping[str, str],
    opset: int = 17,
    graph_name: str = "codedresnext",
) -> onnx.ModelProto:
    """Build the graph `spec` describes; `weights` are float32 BN-folded arrays under names.*."""
    if opset < 17:
        raise CodedResNeXtError(f"opset {opset} is too old; use 17 or newer")
    layout = block_layout(cfg)
    stop = len(layout) if spec.stop is None else spec.stop
    if not 0 <= spec.start < stop <= len(layout) or len(spec.keep) != len(layout):
        raise CodedResNeXtError(f"invalid block range {spec.start}..{stop} for {len(layout)} blocks")
    kd = kind_of(spec)
    coded_index = {bi: j for j, bi in enumerate(cfg.coded_blocks)}
    g = Graph(spec.fp16)
    inputs: list[onnx.ValueInfoProto] = []
    outputs: list[tuple[str, tuple]] = []
    if spec.start == 0:
        x = _stem(g, cfg, weights, spec.uint8, inputs)
    else:
        b0 = layout[spec.start]
        in_name = features_input_name(head=spec.stop is None)  # SSA: a name is input or output, not both
        inputs.append(value_info(in_name, F32, (b0.c_in, b0.size_in, b0.size_in)))
        x = g.to_act(in_name, "features_act")
    en = None
    for b in layout[spec.start : stop]:
        x, en = _block(g, cfg, b, weights, x, spec, outputs)
        if kd.exits == EXITS_EVERY and en is not None:
            j = coded_index[b.index]
            _exit_scores(g, weights, b, x, en, exit_scores_name(j))
            g.op("Identity", [en], f"block{b.index}/exit_energies", exit_energies_name(j))
            outputs += [(exit_scores_name(j), (cfg.num_classes,)), (exit_energies_name(j), (b.branches,))]
    last = layout[stop - 1]
    _end(g, weights, spec, last, x, outputs)
    if kd.exits == EXITS_LAST and en is not None:
        if spec.keep[last.index] is not None and not kd.masked:
            raise CodedResNeXtError("segment exits need all branches of their last block")
        _exit_scores(g, weights, last, x, en, OUTPUT_EXIT_SCORES)
        outputs.append((OUTPUT_EXIT_SCORES, (cfg.num_classes,)))
    graph = helper.make_graph(
        g.nodes,
        graph_name,
        inputs,
        [value_info(n, F32, s) for n, s in outputs],
        initializer=list(g.inits.values()),
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        graph, opset_imports=opsets, producer_name="codedresnext", producer_version=__version__
    )
    model.ir_version = helper.find_min_ir_version_for(opsets)
    helper.set_model_props(model, dict(metadata))
    return model
