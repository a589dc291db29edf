"""Batch-1 latency is a first-class figure: `bench` reports it for the full, class and cascade graphs
(the cascade per real image, so where each image exits shows in the median / p99), and the results
table carries it."""

from __future__ import annotations

import sys
from pathlib import Path

from test_runtime_graphs import make_export

from codedresnext.runtime.bench.options import BenchOptions
from codedresnext.runtime.bench.report import batch1_latency, markdown
from codedresnext.runtime.bench.run import run_bench

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import results_table  # noqa: E402


def test_bench_reports_batch1_latency_of_full_class_and_cascade(tmp_path, cifar10_tgz):
    from codedresnext.runtime.thresholds.calibrate import calibrate_directory

    d = make_export(tmp_path / "e")
    calibrate_directory(d, cifar10_tgz, limit=200, threads=1)
    opts = dict(warmup=0.01, duration=0.05, rounds=1, threads=1, min_iterations=1, memory=False)
    rep = run_bench(
        d,
        BenchOptions(
            batches=[1, 8],
            graphs=["full", "class_cat"],
            data=str(cifar10_tgz),
            early_exit_limit=200,
            progress=False,
            **opts,
        ),
    )
    ee = rep["early_exit"]
    for key in ("batch1_latency_ms", "no_exit_batch1_latency_ms"):
        lat = ee[key]
        assert lat["calls"] >= 8 and 0 < lat["median"] <= lat["p99"]
    b1 = batch1_latency(rep)
    assert {n: v["kind"] for n, v in b1.items()} == {
        "full": "full",
        "class_cat": "class",
        "cascade": "cascade",
        "cascade (no exit)": "cascade",
    }
    full = next(g for g in rep["graphs"] if g["name"] == "full")
    assert b1["full"]["median"] == next(r for r in full["results"] if r["batch"] == 1)["latency_ms"]["median"]
    text = markdown(rep)
    assert "## Batch-1 latency" in text and "| cascade | cascade |" in text
    line = results_table._bench(rep)
    assert "batch-1 ms median/p99: full" in line and "class" in line and "cascade" in line


def test_no_batch1_results_no_figure():
    rep = {"graphs": [{"name": "full", "kind": "full", "results": [{"batch": 8, "latency_ms": {}}]}]}
    assert batch1_latency(rep) == {} and "batch-1" not in results_table._bench(rep)
