"""Precision side by side in bench reports: ratios against the fp32 full graph, the INT8 ratios
and goals, the precision column (synthetic timings: the logic, not the machine)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from codedresnext.runtime.bench.precision import int8_ratios
from codedresnext.runtime.bench.ratios import add_ratios, ratios
from codedresnext.runtime.bench.report import markdown

ROOT = Path(__file__).resolve().parents[1]


def _g(name, kind, precision, median_ms, flops=100.0):
    lat = {k: median_ms for k in ("min", "mean", "median", "p90", "p95", "p99")}
    return {
        "name": name,
        "kind": kind,
        "precision": precision,
        "params": 1,
        "flops": flops,
        "peak_memory_mib": None,
        "results": [{"batch": 32, "iterations": 10, "throughput_sps": 32e3 / median_ms, "latency_ms": lat}],
    }


def _graphs():
    return [
        _g("full_int8", "full", "int8", 300.0),  # listed first: the fp32 full graph must still be the base
        _g("full", "full", "fp32", 240.0),
        _g("full_int8_cpu", "full", "int8-cpu", 150.0),
        _g("class_cat", "class", "fp32", 160.0, flops=62.0),
        _g("class_cat_int8_cpu", "class", "int8-cpu", 110.0, flops=62.0),
    ]


def test_ratios_use_the_fp32_full_graph():
    graphs = _graphs()
    add_ratios(graphs)
    assert graphs[0]["results"][0]["speedup_vs_full"] == pytest.approx(240 / 300)
    g = int8_ratios(graphs, 32)["int8"]
    assert g["full"]["fastest"] == "full_int8_cpu" and g["full"]["ratio_vs_fp32_full"] == pytest.approx(1.6)
    assert g["full"]["ratios"]["full_int8"] == pytest.approx(0.8)
    assert g["class"]["ratio_vs_fp32_full"] == pytest.approx(240 / 110)
    assert int8_ratios(graphs[:1], 32) == {}  # no fp32 full graph: nothing to compare with


def test_fp32_class_efficiency_ignores_int8_class_graphs():
    graphs = _graphs()
    add_ratios(graphs)
    r = ratios(graphs, 32)
    assert r["class_speedup_over_flop_ratio"]["min"] == pytest.approx((240 / 160) / (100 / 62))
    assert r["int8"]["class"]["precision"] == "int8-cpu"


def _goals_module():
    spec = importlib.util.spec_from_file_location("goals", ROOT / "benchmarks" / "goals.py")
    goals = importlib.util.module_from_spec(spec)
    sys.modules["goals"] = goals  # dataclasses look their module up there
    spec.loader.exec_module(goals)
    return goals


def _int8_report(isa: str | None) -> dict:
    graphs = _graphs()
    add_ratios(graphs)
    env = {
        "backend": "ort",
        "provider": "cpu",
        "threads": 1,
        "cpu": "x",
        "cpu_count": 2,
        "timestamp_utc": "t",
    }
    if isa is not None:
        env["cpu_isa"] = isa
    return {
        "directory": "d",
        "graphs": graphs,
        "ratios": ratios(graphs, 32),
        "settings": {"warmup_s": 0.1, "duration_s": 1, "batches": [32]},
        "env": env,
    }


def test_int8_goals_and_markdown():
    goals = _goals_module()
    report = _int8_report("AVX-512+VNNI")
    rows = {r["what"]: r for r in goals.judge(report)}
    full = rows["fastest INT8 full graph / fp32 full, throughput on AVX-512+VNNI"]
    cls = rows["fastest INT8 class graph / fp32 full, throughput on AVX-512+VNNI"]
    assert full["met"] and full["value"] == pytest.approx(1.6) and full["goal"] == ">= 1.5"
    assert not cls["met"] and cls["value"] == pytest.approx(240 / 110) and cls["goal"] == ">= 2.4"
    goals.add_goals(report)
    md = markdown(report)
    assert "| graph | kind | precision |" in md and "| full_int8_cpu | full | int8-cpu |" in md
    assert "fastest INT8 full graph (full_int8_cpu, int8-cpu)" in md and "1.60x" in md and "NOT met" in md
    assert "x (AVX-512+VNNI) x2" in md  # the header names the ISA class beside the CPU
    assert "no VNNI" not in md  # INT8 can pay here: no warning


def test_int8_goals_per_isa_class_and_the_warning_where_int8_cannot_pay():
    goals = _goals_module()
    report = _int8_report("AVX2")
    rows = {r["what"]: r for r in goals.judge(report)}
    assert set(rows) >= {
        "fastest INT8 full graph / fp32 full, throughput on AVX2",
        "fastest INT8 class graph / fp32 full, throughput on AVX2",
    }
    assert not any("VNNI" in w for w in rows)  # the dot-product goals are not applied
    full = rows["fastest INT8 full graph / fp32 full, throughput on AVX2"]
    cls = rows["fastest INT8 class graph / fp32 full, throughput on AVX2"]
    assert full["goal"] == ">= 1" and full["met"] and cls["goal"] == ">= 1.5" and cls["met"]
    goals.add_goals(report)
    md = markdown(report)
    note = next(ln for ln in md.splitlines() if "no VNNI / dot-product instructions" in ln)
    assert "(AVX2)" in note and "docs/int8.md" in note
    assert md.index("fastest INT8 class graph (") < md.index(note)  # beside the INT8 figures
    assert any(
        ln.startswith("- goal: fastest INT8 class graph") and "on AVX2" in ln for ln in md.splitlines()
    )
    # an ISA the report does not record: no ISA-bound verdict, no warning (the goals do not guess)
    old = _int8_report(None)
    assert not any("INT8" in r["what"] for r in goals.judge(old))
    assert "no VNNI" not in markdown(old)
    # INT8 through another backend is no CPU INT8 figure: no warning
    trt = _int8_report("AVX2")
    trt["env"]["backend"] = "trt"
    assert "no VNNI" not in markdown(trt)
