"""The goals the project's benchmarks are held to, judged on a `run_bench` report.

The library measures and reports (runtime/bench.py: "ratios"); whether a figure is good enough is
the benchmark's business, so the thresholds live here. `judge(report)` returns one row per goal
that the report has a figure for; `add_goals(report)` stores them under report["goals"], which the
Markdown report renders as "goal:" lines.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Goal:
    what: str
    path: tuple[str, ...]  # where the figure sits in report["ratios"]
    minimum: float

    def figure(self, ratios: dict) -> float | None:
        v = ratios
        for key in self.path:
            if not isinstance(v, dict) or key not in v:
                return None
            v = v[key]
        return float(v)


GOALS = (
    # a class graph should realise >= 95% of its FLOP saving (speedup / FLOP ratio). Judged on the
    # median over the class graphs: a preset's class graphs have the same shapes and FLOPs, so their
    # spread in one run is the machine's noise and their minimum the noise's tail; the report still
    # prints the minimum
    Goal(
        "per-class speedup / FLOP ratio (median over classes)",
        ("class_speedup_over_flop_ratio", "median"),
        0.95,
    ),
    # the ONNX Runtime full graph should be at least as fast as PyTorch eager
    Goal(
        "ONNX Runtime / PyTorch eager throughput, full model",
        ("ort_over_torch_full", "throughput_ratio"),
        1.0,
    ),
    # INT8 on a CPU (AVX2, no VNNI), cifar10 preset, batch 32: fastest int8* graph vs the fp32 full graph
    Goal("fastest INT8 full graph / fp32 full, throughput", ("int8", "full", "ratio_vs_fp32_full"), 1.5),
    Goal("fastest INT8 class graph / fp32 full, throughput", ("int8", "class", "ratio_vs_fp32_full"), 2.4),
)


def judge(report: dict, goals: tuple[Goal, ...] = GOALS) -> list[dict]:
    rows = []
    for g in goals:
        v = g.figure(report.get("ratios", {}))
        if v is not None:
            rows.append(
                {"what": g.what, "value": v, "goal": f">= {g.minimum:g}", "met": bool(v >= g.minimum)}
            )
    return rows


def add_goals(report: dict) -> dict:
    report["goals"] = judge(report)
    return report
