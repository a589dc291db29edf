"""Precisions side by side in a benchmark run: INT8 graphs' throughput against the fp32 full graph.

At one batch size: the fastest full graph whose precision is int8 or int8-<form> (int8 = the
TensorRT Q/DQ form, int8-cpu = the ONNX Runtime CPU form) against the fp32 full graph, and the
fastest such class graph against the same fp32 full graph, from median latencies
(samples/s = batch / median). The goals these are held to live in benchmarks/goals.py.
"""

from __future__ import annotations

from ...artifact import FP32, GraphKind, is_int8


def _sps(g: dict, batch: int) -> float | None:
    r = next((r for r in g.get("results", []) if r["batch"] == batch), None)
    return batch * 1e3 / r["latency_ms"]["median"] if r else None


def int8_ratios(graphs: list[dict], batch: int) -> dict:
    """{"int8": {"full": {...}, "class": {...}}} when the run has an fp32 full graph and INT8 graphs."""
    full = next(
        (g for g in graphs if g["kind"] == GraphKind.FULL and g.get("precision") in (None, FP32)), None
    )
    base = _sps(full, batch) if full else None
    if not base:
        return {}
    out: dict = {}
    for kind in (GraphKind.FULL, GraphKind.CLASS):
        cands = [
            (s, g)
            for g in graphs
            if g["kind"] == kind and is_int8(str(g.get("precision") or "")) and (s := _sps(g, batch))
        ]
        if not cands:
            continue
        s, g = max(cands, key=lambda t: t[0])
        out[str(kind)] = {
            "fastest": g["name"],
            "precision": g["precision"],
            "throughput_sps": s,
            "fp32_full_throughput_sps": base,
            "ratio_vs_fp32_full": s / base,
            "ratios": {p["name"]: v / base for v, p in cands},
        }
    return {"int8": out} if out else {}


def int8_ratio_lines(ratios: dict) -> list[str]:
    """Markdown lines for the ratios section."""
    return [
        f"- fastest INT8 {kind} graph ({v['fastest']}, {v['precision']}): "
        f"{v['throughput_sps']:.1f} samples/s = {v['ratio_vs_fp32_full']:.2f}x the fp32 full graph"
        for kind, v in (ratios.get("int8") or {}).items()
    ]
