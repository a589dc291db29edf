"""The comparisons a benchmark report is read for, all within one run and one batch size: each
graph against the fp32 full graph (speedup, FLOP ratio, the share of the FLOP saving realised),
masked graphs, ONNX Runtime vs PyTorch eager, and the INT8 twins (precision.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...artifact import FP32, GraphKind
from .precision import int8_ratios

PEER_TORCH_KIND = "peer-torch"  # the PyTorch eager run of source.pt (a runner kind, not a graph kind)


def fp32_full(graphs: list[dict]) -> dict | None:
    """The reference of every ratio: the fp32 full graph (other precisions are compared with it)."""
    return next(
        (g for g in graphs if g["kind"] == GraphKind.FULL and g.get("precision") in (None, FP32)), None
    )


def add_ratios(graphs: list[dict]) -> None:
    """speedup = full median latency / graph median latency (same batch, same run); flop_ratio =
    full FLOPs / graph FLOPs; efficiency = speedup / flop_ratio (1.0 = the FLOP saving fully realised).
    "full" is the fp32 full graph, whatever the graph's own precision."""
    full = fp32_full(graphs)
    if full is None:
        return
    by_batch = {r["batch"]: r for r in full["results"]}
    for g in graphs:
        fr = (full["flops"] / g["flops"]) if full.get("flops") and g.get("flops") else None
        g["flop_ratio_vs_full"] = fr
        for r in g["results"]:
            ref = by_batch.get(r["batch"])
            if ref is None:
                continue
            sp = ref["latency_ms"]["median"] / r["latency_ms"]["median"]
            r["speedup_vs_full"] = sp
            r["speedup_over_flop_ratio"] = sp / fr if fr else None
            # min latencies: the contention-robust estimate when the machine is shared
            sp_min = ref["latency_ms"]["min"] / r["latency_ms"]["min"]
            r["speedup_vs_full_min"] = sp_min
            r["speedup_over_flop_ratio_min"] = sp_min / fr if fr else None


def ratios(graphs: list[dict], batch: int) -> dict[str, Any]:
    """The comparisons a reader looks for, at `batch`: class graphs' speedup / FLOP ratio, masked
    graphs' speedup, ONNX Runtime vs PyTorch eager throughput on the full model (all fp32), and
    the INT8 graphs' throughput vs the fp32 full graph (bench_precision.int8_ratios)."""

    def res(g):
        return next((r for r in g["results"] if r["batch"] == batch), None)

    out: dict[str, Any] = {"batch": batch}
    cls = [
        g
        for g in graphs
        if g["kind"] == GraphKind.CLASS
        and g.get("precision") in (None, FP32)
        and res(g)
        and res(g).get("speedup_over_flop_ratio")
    ]
    if cls:
        eff = [res(g)["speedup_over_flop_ratio"] for g in cls]
        eff_min = [res(g)["speedup_over_flop_ratio_min"] for g in cls]
        out["class_speedup_over_flop_ratio"] = {"min": min(eff), "median": float(np.median(eff))}
        out["class_speedup_over_flop_ratio_min_latency"] = {
            "min": min(eff_min),
            "median": float(np.median(eff_min)),
        }
    masked = [
        g for g in graphs if g["kind"] == GraphKind.MASKED and g.get("precision") in (None, FP32) and res(g)
    ]
    if masked:
        out["masked_speedup"] = [res(g)["speedup_vs_full"] for g in masked]
    full = fp32_full(graphs)
    peer = next((g for g in graphs if g["kind"] == PEER_TORCH_KIND), None)
    if full and peer and res(full) and res(peer):
        out["ort_over_torch_full"] = {
            "throughput_ratio": res(full)["throughput_sps"] / res(peer)["throughput_sps"]
        }
    out.update(int8_ratios(graphs, batch))
    return out
