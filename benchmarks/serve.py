"""Served vs in-process: requests/s and latency (p50 / p99) of a detector and the early-exit cascade
through a real Triton server (HTTP and gRPC, `codedresnext serve`'s server and Python-backend models)
against the same runtime objects called in-process, at batch 1 and 8 with 1 and 8 concurrent clients.

    .venv/bin/python benchmarks/serve.py [--checkpoint models/demo/model.pt] [--requests 200]

Exports the checkpoint's class_cat graph and its segments into a temporary folder. Decision and exit
thresholds there are fixed (0.0 logit; exits at 0.9 max confidence), not fitted: the timing does not
depend on their values beyond how many samples exit early, which the report states. Each cell runs a
bounded loop: `--requests` calls per client after `--warmup` calls. Every figure is a median over the
requests of one run; the CPU, its ISA class and the load average are recorded with it. Writes
benchmarks/results/serve.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from demo_common import RESULTS, demo_parser, write_results

MODELS = {"class_cat_py": ["score", "decision"], "cascade_py": ["prediction", "exit_index", "flops"]}


def make_export(checkpoint: Path, out: Path) -> None:
    from codedresnext.artifact import load_manifest, save_manifest
    from codedresnext.export import ExportOptions, export_graphs

    export_graphs(
        ExportOptions(
            out=out, checkpoint=checkpoint, classes=["cat"], segments=True, verify=False, progress=False
        )
    )
    m = load_manifest(out)
    m.graph("class_cat").thresholds = {"cat": 0.0}
    for g in m.graphs:
        if g.kind.value == "segment" and g.name != m.segments.order[-1]:
            g.exit_threshold = 0.9
    save_manifest(out, m)


def in_process_call(export: Path, model: str, threads: int):
    from codedresnext.runtime import EarlyExitClassifier, SubsetDetector

    if model == "cascade_py":
        casc = EarlyExitClassifier.from_directory(export, threads=threads)
        return casc.predict
    det = SubsetDetector(export, "class_cat", threads=threads)
    return lambda x: det.score(x) > det.thresholds


def client_call(protocol: str, url: str, model: str):
    import tritonclient.grpc as tg
    import tritonclient.http as th

    mod = th if protocol == "http" else tg
    client = mod.InferenceServerClient(url)

    def call(x: np.ndarray):
        inp = mod.InferInput("images", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        r = client.infer(model, [inp])
        return [r.as_numpy(n) for n in MODELS[model]]

    return call


def measure(make_call, x: np.ndarray, clients: int, requests: int, warmup: int) -> dict:
    """`clients` threads, each with its own call: `warmup` calls, then all start together and make
    `requests` calls each; requests/s = all measured calls / wall time of the measured phase."""
    calls = [make_call() for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def loop(call) -> list[float]:
        for _ in range(warmup):
            call(x)
        barrier.wait()
        lat = []
        for _ in range(requests):
            t = time.perf_counter()
            call(x)
            lat.append(time.perf_counter() - t)
        return lat

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(loop, c) for c in calls]
        barrier.wait()
        t0 = time.perf_counter()
        lats = np.concatenate([f.result() for f in futures])
        wall = time.perf_counter() - t0
    return {
        "requests": int(len(lats)),
        "requests_per_s": float(len(lats) / wall),
        "samples_per_s": float(len(lats) * len(x) / wall),
        "p50_ms": float(np.median(lats) * 1e3),
        "p99_ms": float(np.percentile(lats, 99) * 1e3),
    }


def run(args: argparse.Namespace) -> dict:
    from codedresnext.artifact import load_manifest
    from codedresnext.data import load_dataset
    from codedresnext.deploy.serve import TritonServer
    from codedresnext.deploy.triton_model import write_python_models
    from codedresnext.runtime.bench.environment import environment

    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    export, repo = work / "export", work / "repo"
    make_export(Path(args.checkpoint), export)
    write_python_models(
        export, repo, graphs=["class_cat"], threads=args.threads, queue_delay_us=args.queue_delay_us
    )
    data = load_dataset(Path(args.data), "test")
    x8 = load_manifest(export).preprocessing.normalize(data.images[:8])
    result = {
        "benchmark": "serve",
        "command": " ".join(["python", *sys.argv]),
        "env": environment(args.threads, "ort", "CPUExecutionProvider"),
        "cells": [],
    }
    result["env"]["server"] = "nvidia-pytriton 0.7.0 tritonserver, Python backend, 1 instance per model"
    result["settings"] = dict(vars(args))
    exits = in_process_call(export, "cascade_py", args.threads)(x8).exit_index
    result["cascade_exit_index_of_the_8_images"] = exits.tolist()
    with TritonServer(repo, ready_timeout_s=120) as srv:
        urls = {"http": srv.http_url, "grpc": srv.grpc_url}
        for model in MODELS:
            for batch in (1, 8):
                x = np.ascontiguousarray(x8[:batch])
                for clients in (1, 8):
                    for where in ("in-process", "http", "grpc"):
                        if where == "in-process":
                            make = lambda m=model: in_process_call(export, m, args.threads)  # noqa: E731
                        else:
                            make = lambda w=where, m=model: client_call(w, urls[w], m)  # noqa: E731
                        cell = measure(make, x, clients, args.requests, args.warmup)
                        cell.update(model=model, batch=batch, clients=clients, where=where)
                        result["cells"].append(cell)
                        print(json.dumps(cell), file=sys.stderr, flush=True)
    result["env"]["load_average_at_end"] = list(os.getloadavg())
    return result


def markdown(res: dict) -> str:
    env = res["env"]
    lines = [
        "# Served (Triton) vs in-process",
        "",
        f"CPU: {env['cpu']} ({env['cpu_isa']}), {env['cpu_count']} cores; ONNX Runtime "
        f"{env.get('onnxruntime')}, {env['threads']} intra-op thread(s) per model; {env['server']}. "
        f"Load average at start {env['load_average_at_start']}, at end {env['load_average_at_end']}.",
        "Medians over one run per cell (`benchmarks/serve.py`); p50/p99 are per-request latencies as the "
        "client sees them. Thresholds: fixed, not fitted (see the script); the cascade's exit index of "
        f"the 8 images sent: {res['cascade_exit_index_of_the_8_images']} (batch 1 sends the first).",
        "",
        "| model | batch | clients | where | requests/s | samples/s | p50 ms | p99 ms |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for c in res["cells"]:
        lines.append(
            f"| {c['model']} | {c['batch']} | {c['clients']} | {c['where']} | {c['requests_per_s']:.1f} | "
            f"{c['samples_per_s']:.1f} | {c['p50_ms']:.2f} | {c['p99_ms']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = demo_parser(__doc__)
    p.add_argument("--requests", type=int, default=200, help="measured calls per client per cell")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads per model")
    p.add_argument("--queue-delay-us", type=int, default=500)
    p.add_argument("--out", default=str(RESULTS / "serve"), help="writes OUT.json and OUT.md")
    args = p.parse_args()
    write_results(args.out, run(args), markdown)


if __name__ == "__main__":
    main()
