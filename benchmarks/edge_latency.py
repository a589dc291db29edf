"""Batch-1 latency (the edge case): how much of a class graph's time is per-node overhead, and which
ONNX Runtime settings cut it.

    .venv/bin/python benchmarks/edge_latency.py [--checkpoint models/demo/model.pt] [--calls 300]

Exports the checkpoint's full and class_cat graphs, then at batch 1 on real CIFAR-10 test images:
1. ONNX Runtime's profiler over `--calls` runs of each graph: per run, the sum of the node kernel
   times ("arithmetic") against the session's model_run time; the rest ("per-node overhead") is the
   executor's work between and around kernels. Reported as the median share over the runs.
2. median / p99 latency of each graph under intra-op threads 2 (the runtime's default here: all
   cores) and 1, and graph optimisation levels all / extended / basic, the settings measured
   interleaved call by call so a loaded machine shifts them alike.
Writes benchmarks/results/edge_latency.{json,md} with the CPU, its ISA and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from demo_common import RESULTS, demo_parser, write_results

LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
}


def options(threads: int, level: str, profile_prefix: str | None = None) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = LEVELS[level]
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return so


def overhead_share(path: Path, images: np.ndarray, calls: int, threads: int, work: Path) -> dict:
    """Median over runs of 1 - (sum of node kernel times) / model_run time, from ORT's profiler."""
    s = ort.InferenceSession(
        str(path), options(threads, "all", str(work / path.stem)), providers=["CPUExecutionProvider"]
    )
    name = s.get_inputs()[0].name
    for i in range(calls):
        s.run(None, {name: images[i % len(images)][None]})
    events = json.loads(Path(s.end_profiling()).read_text())
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    shares, kernel_us, run_us = [], [], []
    k = 0
    kernels.sort(key=lambda e: e["ts"])
    for r in runs:
        start, end = r["ts"], r["ts"] + r["dur"]
        total = 0
        while k < len(kernels) and kernels[k]["ts"] < end:
            if kernels[k]["ts"] >= start:
                total += kernels[k]["dur"]
            k += 1
        shares.append(1.0 - total / r["dur"])
        kernel_us.append(total)
        run_us.append(r["dur"])
    nodes = len({e["name"] for e in kernels})
    return {
        "runs": len(runs),
        "nodes": nodes,
        "overhead_share_median": float(np.median(shares)),
        "kernel_ms_median": float(np.median(kernel_us)) / 1e3,
        "model_run_ms_median": float(np.median(run_us)) / 1e3,
    }


def settings_latency(paths: dict[str, Path], images: np.ndarray, calls: int) -> list[dict]:
    """Median / p99 ms per (graph, threads, level), all sessions alternating call by call."""
    cells = [(g, t, lv) for g in paths for t in (2, 1) for lv in LEVELS]
    sessions = {
        c: ort.InferenceSession(str(paths[c[0]]), options(c[1], c[2]), providers=["CPUExecutionProvider"])
        for c in cells
    }
    lat: dict[tuple, list[float]] = {c: [] for c in cells}
    for i in range(calls + 10):
        x = images[i % len(images)][None]
        order = cells if i % 2 == 0 else cells[::-1]
        for c in order:
            s = sessions[c]
            t0 = time.perf_counter()
            s.run(None, {s.get_inputs()[0].name: x})
            if i >= 10:  # warm-up calls dropped
                lat[c].append(time.perf_counter() - t0)
    return [
        {
            "graph": g,
            "threads": t,
            "optimization": lv,
            "median_ms": 1e3 * float(np.median(lat[(g, t, lv)])),
            "p99_ms": 1e3 * float(np.percentile(lat[(g, t, lv)], 99)),
        }
        for g, t, lv in cells
    ]


def run(args: argparse.Namespace) -> dict:
    from codedresnext.artifact import load_manifest
    from codedresnext.data import load_dataset
    from codedresnext.export import ExportOptions, export_graphs
    from codedresnext.runtime.bench.environment import environment

    work = Path(tempfile.mkdtemp(prefix="edge-latency-"))
    export = work / "export"
    export_graphs(
        ExportOptions(
            out=export, checkpoint=Path(args.checkpoint), classes=["cat"], verify=False, progress=False
        )
    )
    pre = load_manifest(export).preprocessing
    images = pre.normalize(load_dataset(Path(args.data), "test").images[: args.images])
    paths = {"full": export / "full.onnx", "class_cat": export / "class_cat.onnx"}
    res = {
        "benchmark": "edge_latency",
        "command": " ".join(["python", *sys.argv]),
        "env": environment(2, "ort", "CPUExecutionProvider"),
        "settings": dict(vars(args)),
    }
    res["profile"] = {g: overhead_share(p, images, args.calls, 2, work) for g, p in paths.items()}
    res["latency"] = settings_latency(paths, images, args.calls)
    res["env"]["load_average_at_end"] = list(os.getloadavg())
    return res


def markdown(res: dict) -> str:
    env = res["env"]
    lines = [
        "# Batch-1 latency: per-node overhead and ONNX Runtime settings",
        "",
        f"CPU: {env['cpu']} ({env['cpu_isa']}), {env['cpu_count']} cores; "
        f"ONNX Runtime {env.get('onnxruntime')}; "
        f"load average at start {env['load_average_at_start']}, at end {env['load_average_at_end']}. "
        "Demo checkpoint, real CIFAR-10 test images one per call; medians (`benchmarks/edge_latency.py`).",
        "",
        "## Where a batch-1 call goes (ONNX Runtime profiler, 2 threads, optimisation all)",
        "",
        "| graph | nodes | model_run ms | kernel ms | per-node overhead share |",
        "|---|---:|---:|---:|---:|",
    ]
    for g, p in res["profile"].items():
        lines.append(
            f"| {g} | {p['nodes']} | {p['model_run_ms_median']:.3f} | {p['kernel_ms_median']:.3f} | "
            f"{100 * p['overhead_share_median']:.1f}% |"
        )
    lines += ["", "## Settings (interleaved call by call)", ""]
    lines += ["| graph | threads | optimisation | median ms | p99 ms |", "|---|---:|---|---:|---:|"]
    for c in res["latency"]:
        lines.append(
            f"| {c['graph']} | {c['threads']} | {c['optimization']} | {c['median_ms']:.3f} | "
            f"{c['p99_ms']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = demo_parser(__doc__)
    p.add_argument("--calls", type=int, default=300, help="batch-1 calls per graph and setting")
    p.add_argument("--images", type=int, default=256, help="distinct test images cycled through")
    p.add_argument("--out", default=str(RESULTS / "edge_latency"), help="writes OUT.json and OUT.md")
    args = p.parse_args()
    write_results(args.out, run(args), markdown)


if __name__ == "__main__":
    main()
