"""`bench`: JSON schema, ratios, Markdown and PNG on a synthetic export and on a real tiny export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_runtime_graphs import make_export

from codedresnext.artifact import Manifest
from codedresnext.errors import CodedResNeXtError, GraphError
from codedresnext.runtime.bench.options import BenchOptions
from codedresnext.runtime.bench.ratios import add_ratios
from codedresnext.runtime.bench.report import markdown, write_report
from codedresnext.runtime.bench.run import run_bench, select_graphs

LAT_KEYS = {"min", "mean", "median", "p90", "p95", "p99"}


def _check_schema(report: dict, batches: list[int]) -> None:
    assert isinstance(report["graphs"], list) and report["graphs"]
    for g in report["graphs"]:
        assert {"name", "kind", "params", "flops", "results"} <= set(g)
        assert [r["batch"] for r in g["results"]] == batches
        for r in g["results"]:
            lat = r["latency_ms"]
            assert set(lat) >= LAT_KEYS
            assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["p95"] <= lat["p99"]
            assert lat["min"] <= lat["mean"]
            assert r["iterations"] >= 1
            # samples/s = batch x calls / time spent in calls
            assert r["throughput_sps"] == pytest.approx(r["batch"] * 1e3 / lat["mean"], rel=1e-6)
    env = report["env"]
    for key in ("onnxruntime", "numpy", "python", "cpu", "threads", "timestamp_utc", "note"):
        assert key in env
    assert "qps" in env["note"]


def test_bench_json_schema_on_synthetic_export(tmp_path):
    d = make_export(tmp_path / "e")
    rep = run_bench(
        d,
        BenchOptions(
            batches=[1, 4],
            warmup=0.01,
            duration=0.05,
            rounds=2,
            threads=1,
            min_iterations=1,
            memory=False,
            progress=False,
        ),
    )
    _check_schema(rep, [1, 4])
    kinds = {g["name"]: g["kind"] for g in rep["graphs"]}
    # image-input graphs only; segments/part B (features input) are not benchmarked standalone
    assert "segment1" not in kinds and "reject_cat_b" not in kinds and "segment0" not in kinds
    assert kinds["full"] == "full" and kinds["masked_cat"] == "masked" and kinds["class_cat"] == "class"
    assert any("no source.pt" in n for n in rep["notes"])
    full = next(g for g in rep["graphs"] if g["kind"] == "full")
    assert all(r["speedup_vs_full"] == pytest.approx(1.0) for r in full["results"])
    cat = next(g for g in rep["graphs"] if g["name"] == "class_cat")
    assert cat["flop_ratio_vs_full"] == pytest.approx(1600 / 800)
    assert rep["env"]["threads"] == 1
    assert all(g["backend_info"]["intra_op_threads"] == 1 for g in rep["graphs"])
    paths = write_report(rep, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    _check_schema(data, [1, 4])
    md = paths["markdown"].read_text()
    assert "| class_cat | class |" in md and "samples/s" in md
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ratio_arithmetic():
    def g(name, kind, flops, med, mn):
        return {
            "name": name,
            "kind": kind,
            "flops": flops,
            "results": [
                {"batch": 32, "latency_ms": {"median": med, "min": mn}, "throughput_sps": 32e3 / med}
            ],
        }

    graphs = [
        g("full", "full", 200.0, 10.0, 9.0),
        g("c", "class", 100.0, 5.5, 4.5),
        g("m", "masked", 200.0, 10.0, 9.0),
    ]
    add_ratios(graphs)
    c = graphs[1]["results"][0]
    assert c["speedup_vs_full"] == pytest.approx(10 / 5.5)
    assert c["speedup_over_flop_ratio"] == pytest.approx((10 / 5.5) / 2.0)
    assert c["speedup_vs_full_min"] == pytest.approx(2.0)
    assert c["speedup_over_flop_ratio_min"] == pytest.approx(1.0)
    assert graphs[2]["results"][0]["speedup_vs_full"] == pytest.approx(1.0)


def test_select_graphs():
    m = Manifest.from_dict(
        {
            "graphs": [
                {"name": "full", "file": "full.onnx", "kind": "full"},
                {"name": "full_fp16", "file": "full_fp16.onnx", "kind": "full", "precision": "fp16"},
            ]
            + [{"name": f"class_{i}", "file": f"class_{i}.onnx", "kind": "class"} for i in range(5)]
            + [
                {"name": f"class_{i}_int8", "file": f"c{i}.onnx", "kind": "class", "precision": "int8"}
                for i in range(3)
            ]
        }
    )
    names = [g.name for g in select_graphs(m, None, 2)]  # every precision, side by side
    assert names == ["full", "full_fp16", "class_0", "class_1", "class_0_int8", "class_1_int8"]
    assert [g.name for g in select_graphs(m, ["class_4"], 2)] == ["class_4"]
    with pytest.raises(GraphError, match="available"):
        select_graphs(m, ["nope"], 2)


def test_bench_early_exit_with_real_images(tmp_path, cifar10_tgz):
    from codedresnext.runtime.thresholds.calibrate import calibrate_directory

    d = make_export(tmp_path / "e")
    calibrate_directory(d, cifar10_tgz, limit=200, threads=1)
    rep = run_bench(
        d,
        BenchOptions(
            batches=[8],
            warmup=0.01,
            duration=0.05,
            rounds=1,
            threads=1,
            graphs=["full"],
            min_iterations=1,
            memory=False,
            data=str(cifar10_tgz),
            early_exit_limit=200,
            progress=False,
        ),
    )
    ee = rep["early_exit"]
    assert ee["calibrated"] and ee["samples"] == 200
    assert 0 < ee["mean_flops_per_sample"] <= ee["full_flops"]
    assert ee["compute_saved"] == pytest.approx(1 - ee["mean_flops_per_sample"] / ee["full_flops"])
    assert sum(ee["exit_fractions"]) == pytest.approx(1.0)
    assert ee["throughput_sps"] > 0 and "Early exit" in markdown(rep)


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    export = pytest.importorskip("codedresnext.export")
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("tiny") / "export"
    export.export_graphs(
        export.ExportOptions(
            out=out,
            preset="tiny",
            classes=["cat", "dog"],
            masked=True,
            segments=True,
            progress=False,
            verify=False,
        )
    )
    return out


def test_bench_cli_on_a_real_tiny_export(tiny_export, tmp_path):
    """The real command on the exporter's tiny preset: table with ratios, both peers, JSON file."""
    js = tmp_path / "rep" / "bench.json"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "codedresnext.cli",
            "bench",
            str(tiny_export),
            "--batch",
            "1,4",
            "--duration",
            "0.05",
            "--graphs",
            "full,class_cat,masked_cat",
            "--threads",
            "1",
            "--quiet",
            "--out",
            str(tmp_path / "rep"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(js.read_text())
    _check_schema(rep, [1, 4])
    kinds = {g["kind"] for g in rep["graphs"]}
    assert {"full", "class", "masked", "peer-torch"} <= kinds
    peer = next(g for g in rep["graphs"] if g["kind"] == "peer-torch")
    # peak memory of each graph, measured in a fresh process: the pruned graph needs less than the full
    mem = {g["name"]: g["peak_memory_mib"] for g in rep["graphs"]}
    assert all(v is not None and v > 0 for v in mem.values()), mem
    assert "fresh subprocess" in rep["settings"]["peak_memory"]
    assert peer["backend_info"]["threads"] == 1
    cls = [g for g in rep["graphs"] if g["kind"] == "class"]
    assert all(g["flop_ratio_vs_full"] > 1.0 for g in cls)  # pruned graphs do fewer FLOPs
    assert "ort_over_torch_full" in rep["ratios"] and "class_speedup_over_flop_ratio" in rep["ratios"]
    assert "goals" not in rep  # the library measures; benchmarks/goals.py judges
    assert {g["precision"] for g in rep["graphs"]} == {"fp32"}
    assert "| full | full |" in r.stdout and (tmp_path / "rep" / "bench.png").is_file()


def test_bench_peer_torch_matches_ort_full(tiny_export, real_images):
    """The PyTorch peer computes the same function as the full ONNX graph (so the comparison is fair)."""
    from codedresnext.runtime import open_backend

    x = (real_images.images[:8].astype(np.float32) / 255 - (0.4914, 0.4822, 0.4465)) / (
        0.2023,
        0.1994,
        0.2010,
    )
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32)
    a = open_backend("ort", Path(tiny_export) / "full.onnx", threads=1).infer({"images": x})["logits"]
    b = open_backend("torch", Path(tiny_export) / "source.pt", threads=1).infer({"images": x})["logits"]
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_bench_streams_run_sessions_at_once_and_count_every_stream(tiny_export):
    """--streams N: N sessions per graph of threads // N threads, one batch on each per call."""
    rep = run_bench(
        tiny_export,
        BenchOptions(
            batches=[1, 4],
            warmup=0.01,
            duration=0.05,
            rounds=1,
            min_iterations=2,
            graphs=["full", "class_cat"],
            threads=2,
            streams=2,
            memory=False,
            progress=False,
        ),
    )
    assert rep["settings"]["streams"] == 2 and rep["settings"]["threads_per_stream"] == 1
    for g in rep["graphs"]:
        assert g["backend_info"]["streams"] == 2 and g["backend_info"]["intra_op_threads"] == 1
        for r in g["results"]:  # a call completes one batch per stream
            assert r["streams"] == 2
            per_call = 2 * r["batch"] * 1e3 / r["latency_ms"]["mean"]
            assert r["throughput_sps"] == pytest.approx(per_call, rel=1e-6)
    assert [g["kind"] for g in rep["graphs"]] == ["full", "class"]  # the PyTorch peer is not a stream
    assert any("PyTorch peer skipped: --streams" in n for n in rep["notes"])
    assert "2 streams x 1 thread," in markdown(rep)
    with pytest.raises(CodedResNeXtError, match="--streams 2: .* --backend ort"):
        run_bench(tiny_export, BenchOptions(backend="torch", streams=2, memory=False, progress=False))
    with pytest.raises(CodedResNeXtError, match="--streams 0"):
        run_bench(tiny_export, BenchOptions(streams=0, memory=False, progress=False))


def test_stream_runner_calls_every_session_concurrently(tiny_export):
    """The streams of one call overlap: each waits at a barrier for the other (sequential calls time out)."""
    import threading

    from codedresnext.runtime import open_backend
    from codedresnext.runtime.bench.timing import backend_runner

    bes = [open_backend("ort", Path(tiny_export) / "full.onnx", threads=1) for _ in range(2)]
    barrier, seen = threading.Barrier(2, timeout=30), []
    for be in bes:
        real = be.infer

        def infer(feeds, _real=real, _be=be):
            if feeds["images"].shape[0] == 3:  # the timed batch, not the warm-up call
                barrier.wait()
                seen.append(_be)
            return _real(feeds)

        be.infer = infer
    runner = backend_runner(*bes, name="full", kind="full", params=None, flops=None)
    try:
        call = runner.make(3)
        call()
        call()
    finally:
        runner.close()
    assert runner.streams == 2 and len(seen) == 4 and {id(b) for b in seen} == {id(b) for b in bes}


def test_isa_class_names_what_int8_needs():
    from codedresnext.runtime.bench.environment import cpu_flags, environment, int8_pays, isa_class

    assert isa_class(["avx2"]) == "AVX2" and not int8_pays("AVX2")
    assert isa_class(["avx2", "avx_vnni"]) == "AVX2+VNNI" and int8_pays("AVX2+VNNI")
    assert isa_class(["avx2", "avx512f"]) == "AVX-512" and not int8_pays("AVX-512")
    assert isa_class(["avx2", "avx512f", "avx512_vnni"]) == "AVX-512+VNNI"
    assert isa_class(["asimddp"]) == "Arm+dotprod" and int8_pays("Arm+dotprod")
    assert isa_class([]) == "other"
    env = environment(1, "ort", "cpu")
    assert env["cpu_isa"] == isa_class(cpu_flags()) and env["cpu_flags"] == cpu_flags()
