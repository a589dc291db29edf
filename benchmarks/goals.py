"""The goals the project's benchmarks are held to, judged on a `run_bench` report.

The library measures and reports (runtime/bench/run.py: "ratios"); whether a figure is good enough is
the benchmark's business, so the thresholds live here. `judge(report)` returns one row per goal
that the report has a figure for; `add_goals(report)` stores them under report["goals"], which the
Markdown report renders as "goal:" lines.

Where the CPU's instruction set decides what is reachable, a goal is stated per ISA class (the
classes of `runtime.environment.isa_class`, recorded as report["env"]["cpu_isa"]): INT8
convolutions beat FP32 by much only with dot-product instructions (VNNI on x86, dotprod on Arm).
Such a goal is judged only on a report that records its ISA, and its row names the class.
"""

from __future__ import annotations

from dataclasses import dataclass

# ISA classes (runtime.environment.isa_class) with and without dot-product instructions for INT8
DOT_PRODUCT = ("AVX-512+VNNI", "AVX2+VNNI", "Arm+dotprod")
NO_DOT_PRODUCT = ("AVX-512", "AVX2")


@dataclass(frozen=True)
class Goal:
    what: str
    path: tuple[str, ...]  # where the figure sits in report["ratios"]
    minimum: float
    isa: tuple[str, ...] | None = None  # the ISA classes this goal is for; None: every machine

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
    # INT8 on ONNX Runtime CPU, cifar10 preset, batch 32: the fastest int8* graph against the fp32
    # full graph. With dot-product instructions the integer kernels do 4 multiply-adds per lane
    # where fp32 does one: the class graph at 2.4x and the full graph at 1.5x are reachable. Without
    # them (AVX2, AVX-512 without VNNI) int8 convolutions sum 16-bit pairs and gain little: the
    # goals are that INT8 is not slower and that the class graph keeps its pruning gain (docs/int8.md)
    Goal(
        "fastest INT8 full graph / fp32 full, throughput",
        ("int8", "full", "ratio_vs_fp32_full"),
        1.5,
        isa=DOT_PRODUCT,
    ),
    Goal(
        "fastest INT8 class graph / fp32 full, throughput",
        ("int8", "class", "ratio_vs_fp32_full"),
        2.4,
        isa=DOT_PRODUCT,
    ),
    Goal(
        "fastest INT8 full graph / fp32 full, throughput",
        ("int8", "full", "ratio_vs_fp32_full"),
        1.0,
        isa=NO_DOT_PRODUCT,
    ),
    Goal(
        "fastest INT8 class graph / fp32 full, throughput",
        ("int8", "class", "ratio_vs_fp32_full"),
        1.5,
        isa=NO_DOT_PRODUCT,
    ),
)


def report_isa(report: dict) -> str | None:
    """The ISA class a report was measured on (None: not recorded, as in reports before it was)."""
    return (report.get("env") or {}).get("cpu_isa")


def judge(report: dict, goals: tuple[Goal, ...] = GOALS) -> list[dict]:
    """One row per goal that applies to the report's machine and has a figure in it."""
    isa = report_isa(report)
    rows = []
    for g in goals:
        if g.isa is not None and isa not in g.isa:
            continue
        v = g.figure(report.get("ratios", {}))
        if v is not None:
            what = g.what if g.isa is None else f"{g.what} on {isa}"
            rows.append({"what": what, "value": v, "goal": f">= {g.minimum:g}", "met": bool(v >= g.minimum)})
    return rows


def add_goals(report: dict) -> dict:
    report["goals"] = judge(report)
    return report
