"""Precision comparisons of a benchmark run: the INT8 throughput goals (issue "INT8 for the edge").

Evaluated on the graphs of one interleaved run at one batch size: the fastest full graph whose
precision starts with "int8" (int8 = the TensorRT Q/DQ form, int8-cpu = the ONNX Runtime CPU
form) against the fp32 full graph, and the fastest such class graph against the same fp32 full
graph. Throughput ratios come from median latencies (samples/s = batch / median).
"""

from __future__ import annotations

INT8_FULL_GOAL = 1.5  # INT8 full graph vs FP32 full graph, throughput, batch 32, cifar10 preset on CPU
INT8_CLASS_GOAL = 2.4  # INT8 class graph vs FP32 full graph


def _sps(g: dict, batch: int) -> float | None:
    r = next((r for r in g.get("results", []) if r["batch"] == batch), None)
    return batch * 1e3 / r["latency_ms"]["median"] if r else None


def int8_goals(graphs: list[dict], batch: int) -> dict:
    """{"int8": {...}} when the run has an fp32 full graph and INT8 graphs, else {}."""
    full = next((g for g in graphs if g["kind"] == "full" and g.get("precision", "fp32") == "fp32"), None)
    base = _sps(full, batch) if full else None
    if not base:
        return {}
    out: dict = {}
    for kind, goal in (("full", INT8_FULL_GOAL), ("class", INT8_CLASS_GOAL)):
        cands = [
            (s, g)
            for g in graphs
            if g["kind"] == kind and str(g.get("precision", "")).startswith("int8") and (s := _sps(g, batch))
        ]
        if not cands:
            continue
        s, g = max(cands, key=lambda t: t[0])
        per = {p["name"]: _sps(p, batch) / base for _, p in cands}
        out[kind] = {
            "fastest": g["name"],
            "precision": g["precision"],
            "throughput_sps": s,
            "fp32_full_throughput_sps": base,
            "ratio_vs_fp32_full": s / base,
            "ratios": per,
            "goal": goal,
            "met": bool(s / base >= goal),
        }
    return {"int8": out} if out else {}


def int8_goal_lines(goals: dict) -> list[str]:
    """Markdown lines for the goals section."""
    lines = []
    for kind, v in (goals.get("int8") or {}).items():
        lines.append(
            f"- fastest INT8 {kind} graph ({v['fastest']}, {v['precision']}): "
            f"{v['throughput_sps']:.1f} samples/s = {v['ratio_vs_fp32_full']:.2f}x the fp32 full graph "
            f"(goal >= {v['goal']}: {'met' if v['met'] else 'NOT met'})"
        )
    return lines
