"""Benchmarks in trtexec's vocabulary: every graph of an export, measured interleaved in one run.

Throughput is in samples/s (trtexec's "qps" counts batches, i.e. qps x batch = samples/s).
Latency is per batch call: min/mean/median/p90/p95/p99 over all calls. Each graph runs `warmup`
seconds, then `duration` seconds split into `rounds` slices taken round-robin over the graphs (the
order shuffled every round), so a background load hits all graphs alike; ratios use medians.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import write_json, write_text
from ..artifact import INPUT_FLOAT, INPUT_UINT8, load_manifest
from ..errors import GraphError
from .backend import Backend, open_backend
from .memory import measure_in_subprocess

QPS_NOTE = (
    "throughput_sps counts samples per second; trtexec's 'qps' counts batches (queries) per "
    "second, so samples/s = qps x batch"
)
_BACKEND_LABEL = {"ort": "ONNX Runtime", "trt": "TensorRT", "torch": "the ONNX graph through PyTorch"}
DEFAULT_KINDS = ("full", "masked", "class", "subset", "multi-exit")


@dataclass
class Runner:
    name: str
    kind: str
    params: int | None
    flops: float | None
    make: Callable[[int], Callable[[], Any]]  # batch -> one inference call
    info: dict = field(default_factory=dict)
    peak_memory_mib: float | None = None
    classes: list[str] = field(default_factory=list)
    source: tuple[str, str, dict] | None = None  # (backend, path, options) for the memory probe


def _stats(lat_s: list[float], batch: int) -> dict:
    a = np.asarray(lat_s) * 1e3
    return {
        "batch": batch,
        "iterations": int(len(a)),
        "throughput_sps": float(batch * len(a) / (a.sum() / 1e3)) if len(a) else 0.0,
        "latency_ms": {
            "min": float(a.min()),
            "mean": float(a.mean()),
            "median": float(np.median(a)),
            "p90": float(np.percentile(a, 90)),
            "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)),
        },
    }


def _random_feed(backend: Backend, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for s in backend.inputs:
        shape = (batch, *[d or 1 for d in s.shape[1:]])
        if s.dtype == np.uint8:
            feeds[s.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            feeds[s.name] = rng.standard_normal(shape).astype(s.dtype)
    return feeds


def _graph_runner(directory: Path, g: dict, backend: str, options: dict) -> Runner | None:
    """None for graphs that do not take images (later segments, reject part B)."""
    be = open_backend(backend, directory / g["file"], **options)
    if not {INPUT_FLOAT, INPUT_UINT8} & set(be.input_names):
        be.close()
        return None
    be.infer(_random_feed(be, 1))

    def make(batch: int) -> Callable[[], Any]:
        feeds = _random_feed(be, batch)
        return lambda: be.infer(feeds)

    return Runner(
        g["name"],
        g.get("kind", "?"),
        g.get("params"),
        g.get("flops"),
        make,
        be.info(),
        None,
        list(g.get("classes") or []),
        (backend, str(directory / g["file"]), options),
    )


def _torch_runner(directory: Path, full: dict | None, threads: int | None, device: str = "cpu") -> Runner:
    be = open_backend("torch", directory / "source.pt", threads=threads, device=device)
    be.infer(_random_feed(be, 1))

    def make(batch: int) -> Callable[[], Any]:
        feeds = _random_feed(be, batch)
        return lambda: be.infer(feeds)

    return Runner(
        "pytorch-eager-full",
        "peer-torch",
        (full or {}).get("params"),
        (full or {}).get("flops"),
        make,
        be.info(),
        None,
        [],
        ("torch", str(directory / "source.pt"), {"threads": threads, "device": device}),
    )


def select_graphs(manifest: dict, names: list[str] | None, max_class_graphs: int) -> list[dict]:
    graphs = manifest.get("graphs", [])
    if names:
        known = {g["name"]: g for g in graphs}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise GraphError(f"no graph(s) {unknown} in the manifest; available: {sorted(known)}")
        return [known[n] for n in names]
    out, n_class = [], 0
    for g in graphs:
        if g.get("kind") not in DEFAULT_KINDS or g.get("precision", "fp32") != "fp32":
            continue
        if g.get("kind") == "class":
            n_class += 1
            if n_class > max_class_graphs:
                continue
        out.append(g)
    return out


def measure(
    runners: list[Runner],
    batches: list[int],
    *,
    warmup: float,
    duration: float,
    rounds: int = 5,
    min_iterations: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, list[dict]]:
    """Interleaved timing; returns {runner name: [stats per batch]}. Each graph runs at least
    `duration` seconds and `min_iterations` calls per batch size (split over the rounds)."""
    rng = np.random.default_rng(seed)
    results: dict[str, list[dict]] = {r.name: [] for r in runners}
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    bar = (
        tqdm(total=len(batches) * len(runners) * (rounds + 1), desc="bench", disable=not progress)
        if tqdm
        else None
    )
    for b in batches:
        calls = [r.make(b) for r in runners]
        lat: list[list[float]] = [[] for _ in runners]
        for call in calls:  # warm-up
            t_end = time.perf_counter() + warmup
            call()
            while time.perf_counter() < t_end:
                call()
            if bar:
                bar.update()
        slice_s = duration / rounds
        per_slice = -(-min_iterations // rounds)  # ceil
        for _ in range(rounds):
            for i in rng.permutation(len(runners)):
                call, acc = calls[i], lat[i]
                t_end = time.perf_counter() + slice_s
                n = 0
                while True:
                    t0 = time.perf_counter()
                    call()
                    t1 = time.perf_counter()
                    acc.append(t1 - t0)
                    n += 1
                    if t1 >= t_end and n >= per_slice:
                        break
                if bar:
                    bar.update()
        for r, acc in zip(runners, lat):
            results[r.name].append(_stats(acc, b))
    if bar:
        bar.close()
    return results


def environment(threads: int, backend: str, provider: str) -> dict:
    import onnx

    env: dict[str, Any] = {
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnx": onnx.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "backend": backend,
        "provider": provider,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "note": QPS_NOTE,
    }
    from .. import __version__

    env["codedresnext"] = __version__
    from .gpuinfo import describe

    env.update(describe(backend))
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return env


def cpu_model() -> str:
    """The CPU's marketing name, for benchmark reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def add_ratios(graphs: list[dict]) -> None:
    """speedup = full median latency / graph median latency (same batch, same run); flop_ratio =
    full FLOPs / graph FLOPs; efficiency = speedup / flop_ratio (1.0 = the FLOP saving fully realised)."""
    full = next((g for g in graphs if g["kind"] == "full"), None)
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


def goals(graphs: list[dict], batch: int) -> dict:
    """The issue's goals, evaluated on this run at `batch`."""

    def res(g):
        return next((r for r in g["results"] if r["batch"] == batch), None)

    out: dict[str, Any] = {"batch": batch}
    cls = [g for g in graphs if g["kind"] == "class" and res(g) and res(g).get("speedup_over_flop_ratio")]
    if cls:
        eff = [res(g)["speedup_over_flop_ratio"] for g in cls]
        eff_min = [res(g)["speedup_over_flop_ratio_min"] for g in cls]
        out["class_speedup_over_flop_ratio_min_latency"] = {
            "min": min(eff_min),
            "median": float(np.median(eff_min)),
        }
        out["class_speedup_over_flop_ratio"] = {
            "min": min(eff),
            "median": float(np.median(eff)),
            "goal": 0.95,
            "met": bool(min(eff) >= 0.95),
        }
    masked = [g for g in graphs if g["kind"] == "masked" and res(g)]
    if masked:
        out["masked_speedup"] = [res(g)["speedup_vs_full"] for g in masked]
    full = next((g for g in graphs if g["kind"] == "full"), None)
    peer = next((g for g in graphs if g["kind"] == "peer-torch"), None)
    if full and peer and res(full) and res(peer):
        r = res(full)["throughput_sps"] / res(peer)["throughput_sps"]
        out["ort_over_torch_full"] = {"throughput_ratio": r, "met": bool(r >= 1.0)}
    return out


def bench_early_exit(
    directory: Path,
    data: str,
    *,
    backend: str,
    options: dict,
    batch: int,
    duration: float,
    limit: int,
    full_flops: float | None,
) -> dict:
    """Accuracy, mean FLOPs per sample and throughput of the cascade at its calibrated thresholds,
    on the evaluation half of the held-out test split (the calibration half chose the thresholds)."""
    from .calibrate import load_heldout
    from .cascade import EarlyExitClassifier

    ev = load_heldout(data, limit=limit)["evaluation"]
    casc = EarlyExitClassifier.from_directory(directory, backend=backend, **options)
    calibrated = all(np.isfinite(casc.thresholds))
    preds, flops, exits = [], [], []
    for i in range(0, len(ev), batch):
        r = casc.predict(ev.images[i : i + batch])
        preds.append(r.predictions)
        flops.append(r.flops)
        exits.append(r.exit_index)
    preds, flops, exits = np.concatenate(preds), np.concatenate(flops), np.concatenate(exits)
    never = EarlyExitClassifier.from_directory(
        directory, backend=backend, thresholds=[float("inf")] * casc.num_exits, **options
    )
    full_preds = np.concatenate(
        [never.predict(ev.images[i : i + batch]).predictions for i in range(0, len(ev), batch)]
    )
    total = full_flops or float(np.nansum(casc.segment_flops))
    # throughput: cascade vs cascade-without-exits on the same real batches, interleaved per call;
    # samples/s from the median per-sample time of the calls (robust to a loaded machine)
    chunks = [ev.images[i : i + batch] for i in range(0, len(ev) - batch + 1, batch)] or [ev.images]
    per_sample: dict[str, list[float]] = {"cascade": [], "no-exit": []}
    t_end = time.perf_counter() + duration
    k = 0
    while time.perf_counter() < t_end or k < 4:
        x = chunks[k % len(chunks)]
        order = (
            (("cascade", casc), ("no-exit", never)) if k % 2 == 0 else (("no-exit", never), ("cascade", casc))
        )
        for name, model in order:
            t0 = time.perf_counter()
            model.predict(x)
            per_sample[name].append((time.perf_counter() - t0) / len(x))
        k += 1
    sps = {n: 1.0 / float(np.median(v)) for n, v in per_sample.items()}
    return {
        "calibrated": bool(calibrated),
        "thresholds": casc.thresholds,
        "samples": int(len(ev)),
        "batch": batch,
        "accuracy": float(np.mean(preds == ev.labels)),
        "full_accuracy": float(np.mean(full_preds == ev.labels)),
        "accuracy_loss_points": 100.0 * float(np.mean(full_preds == ev.labels) - np.mean(preds == ev.labels)),
        "mean_flops_per_sample": float(flops.mean()),
        "full_flops": total,
        "compute_saved": float(1.0 - flops.mean() / total) if total else None,
        "exit_fractions": [float(np.mean(exits == j)) for j in range(casc.num_exits + 1)],
        "throughput_sps": sps["cascade"],
        "no_exit_throughput_sps": sps["no-exit"],
        "speedup_vs_no_exit": sps["cascade"] / sps["no-exit"],
    }


def run_bench(
    directory: str | os.PathLike,
    *,
    backend: str = "ort",
    batches: list[int] | tuple[int, ...] = (1, 8, 32),
    warmup: float = 0.2,
    duration: float = 3.0,
    graphs: list[str] | None = None,
    threads: int | None = None,
    provider: str = "cpu",
    torch_peer: bool = True,
    data: str | None = None,
    rounds: int = 5,
    max_class_graphs: int = 10,
    early_exit_limit: int = 1000,
    min_iterations: int = 10,
    memory: bool = True,
    progress: bool = True,
    backend_options: dict | None = None,
) -> dict:
    """Benchmark an export directory; returns the report dict (see write_report for the files).

    backend_options go to every graph's backend (torch: device, cuda_graph; trt: batch profile,
    which defaults to (min, max, max) of `batches` so that every benchmarked batch is in range)."""
    directory = Path(directory)
    manifest = load_manifest(directory)
    threads = int(threads or os.cpu_count() or 1)
    options: dict[str, Any] = {"threads": threads, **(backend_options or {})}
    if backend == "ort":
        options["provider"] = provider
    elif backend == "trt":
        options.setdefault("batch", (min(batches), max(batches), max(batches)))
    selected = select_graphs(manifest, graphs, max_class_graphs)
    runners = []
    for g in selected:
        r = _graph_runner(directory, g, backend, options)
        if r is not None:
            runners.append(r)
    notes = []
    full = next((g for g in manifest["graphs"] if g.get("kind") == "full"), None)
    if torch_peer:
        if (directory / "source.pt").is_file():
            try:
                dev = options.get("device", "cpu") if backend == "torch" else "cpu"
                runners.append(_torch_runner(directory, full, threads, dev))
            except Exception as e:  # a missing torch is a note, not a failed benchmark
                notes.append(f"PyTorch peer skipped: {e}")
        else:
            notes.append("PyTorch peer skipped: no source.pt in the export directory")
    if not runners:
        raise GraphError(f"nothing to benchmark in {directory}")
    mem_notes = []
    if memory:  # each graph in a fresh process, at the largest batch
        for r in runners:
            if r.source:
                m = measure_in_subprocess(r.source[0], r.source[1], batch=max(batches), options=r.source[2])
                r.peak_memory_mib = m.get("peak_rss_mib")
                if "error" in m:
                    mem_notes.append(f"memory of {r.name} not measured: {m['error']}")
    notes += mem_notes
    timing = measure(
        runners,
        list(batches),
        warmup=warmup,
        duration=duration,
        rounds=rounds,
        min_iterations=min_iterations,
        progress=progress,
    )
    out_graphs = [
        {
            "name": r.name,
            "kind": r.kind,
            "params": r.params,
            "flops": r.flops,
            "classes": r.classes,
            "peak_memory_mib": r.peak_memory_mib,
            "backend_info": r.info,
            "results": timing[r.name],
        }
        for r in runners
    ]
    add_ratios(out_graphs)
    report: dict[str, Any] = {
        "directory": str(directory),
        "untrained": manifest.get("untrained"),
        "settings": {
            "batches": list(batches),
            "warmup_s": warmup,
            "duration_s": duration,
            "rounds": rounds,
            "min_iterations": min_iterations,
            "interleaved": True,
            "peak_memory": "host RSS high-water delta, MiB: VmHWM after loading the graph and running "
            "one batch of the largest size, minus VmRSS before the load (runtime library already imported), "
            "each graph in a fresh subprocess; not GPU memory"
            if memory
            else "not measured",
        },
        "graphs": out_graphs,
        "goals": goals(out_graphs, max(batches)),
        "env": environment(threads, backend, provider),
        "notes": notes,
    }
    has_segments = any(g.get("kind") == "segment" for g in manifest["graphs"])
    if has_segments and data:
        report["early_exit"] = bench_early_exit(
            directory,
            data,
            backend=backend,
            options=options,
            batch=max(batches),
            duration=duration,
            limit=early_exit_limit,
            full_flops=(full or {}).get("flops"),
        )
    elif has_segments:
        notes.append("early exit not measured: pass --data (held-out images) to measure accuracy and compute")
    rej = (manifest.get("calibration") or {}).get("early_reject")
    if rej:
        report["early_reject"] = rej  # measured by `codedresnext calibrate` on the evaluation half
    return report


def markdown(report: dict) -> str:
    env = report["env"]
    lines = [
        f"# Benchmark: {report['directory']}",
        "",
        f"{env['backend']} ({env.get('provider')}), {env['threads']} threads, {env['cpu']} "
        f"x{env['cpu_count']}, onnxruntime {env.get('onnxruntime')}, {env['timestamp_utc']}; warm-up "
        f"{report['settings']['warmup_s']} s, duration {report['settings']['duration_s']} s per graph and "
        "batch, interleaved; load average at "
        f"start {env.get('load_average_at_start')}.",
        "",
        f"Note: {QPS_NOTE}.",
        "",
        *_gpu_lines(env),
        "| graph | kind | params | MFLOPs | FLOP ratio | batch | median ms | p99 ms | samples/s | speedup | "
        "speedup / FLOP ratio | peak MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def f(v, fmt):
        return "" if v is None else format(v, fmt)

    for g in report["graphs"]:
        for r in g["results"]:
            lines.append(
                f"| {g['name']} | {g['kind']} | {f(g['params'], ',')} | "
                f"{f(g['flops'] and g['flops'] / 1e6, '.1f')} | "
                f"{f(g.get('flop_ratio_vs_full'), '.2f')} | {r['batch']} | {r['latency_ms']['median']:.3f} | "
                f"{r['latency_ms']['p99']:.3f} | {r['throughput_sps']:.1f} | "
                f"{f(r.get('speedup_vs_full'), '.2f')} | "
                f"{f(r.get('speedup_over_flop_ratio'), '.2f')} | {f(g['peak_memory_mib'], '.1f')} |"
            )
    gl = report.get("goals", {})
    lines += ["", f"## Goals (batch {gl.get('batch')})", ""]
    if "class_speedup_over_flop_ratio" in gl:
        c = gl["class_speedup_over_flop_ratio"]
        lines.append(
            f"- per-class speedup / FLOP ratio: min {c['min']:.3f}, median {c['median']:.3f} "
            f"(goal >= 0.95: {'met' if c['met'] else 'NOT met'}; ratio of median latencies)"
        )
        cm = gl.get("class_speedup_over_flop_ratio_min_latency")
        if cm:
            lines.append(
                f"- the same from min latencies (robust to a shared, loaded machine): min {cm['min']:.3f}, "
                f"median {cm['median']:.3f}"
            )
    if "masked_speedup" in gl:
        lines.append(
            f"- masked graph (paper's approach) speedup vs full: "
            f"{', '.join(f'{s:.2f}' for s in gl['masked_speedup'])} (expected about 1.0)"
        )
    if "ort_over_torch_full" in gl:
        o = gl["ort_over_torch_full"]
        lines.append(
            f"- {_BACKEND_LABEL.get(env['backend'], env['backend'])} / PyTorch eager throughput on the full "
            f"model: {o['throughput_ratio']:.2f} "
            f"(goal >= 1: {'met' if o['met'] else 'NOT met'})"
        )
    if "early_exit" in report:
        e = report["early_exit"]
        lines += [
            "",
            "## Early exit (evaluation half of the held-out test split)",
            "",
            f"- accuracy {100 * e['accuracy']:.2f}% vs {100 * e['full_accuracy']:.2f}% without exits "
            f"(loss {e['accuracy_loss_points']:.2f} points), calibrated: {e['calibrated']}",
            f"- mean FLOPs per sample {e['mean_flops_per_sample'] / 1e6:.1f} M of "
            f"{e['full_flops'] / 1e6:.1f} M "
            f"(compute saved {100 * (e['compute_saved'] or 0):.1f}%), exits taken {e['exit_fractions']}",
            f"- throughput at batch {e['batch']}: {e['throughput_sps']:.1f} samples/s vs "
            f"{e['no_exit_throughput_sps']:.1f} without exits ({e['speedup_vs_no_exit']:.2f}x)",
        ]
    if "early_reject" in report:
        r = report["early_reject"]
        lines += [
            "",
            f"## Early reject (evaluation half; reject threshold for <= {r['max_recall_loss']} point "
            "recall loss on the calibration half)",
            "",
            "| class | recall | recall with reject | negatives rejected | negatives compute vs class graph |",
            "|---|---:|---:|---:|---:|",
        ]
        for cls, v in r["classes"].items():
            e = v["evaluation"]

            def pct(x):
                return "" if x is None else f"{100 * x:.1f}%"

            lines.append(
                f"| {cls} | {pct(e['recall'])} | {pct(e['recall_with_reject'])} | "
                f"{pct(e['negatives_rejected'])} | {pct(e['negative_compute_vs_class_graph'])} |"
            )
    for n in report.get("notes", []):
        lines.append(f"- note: {n}")
    return "\n".join(lines) + "\n"


def _gpu_lines(env: dict) -> list[str]:
    """GPU, driver and CUDA library versions, where the report has them."""
    gpus = [g for g in env.get("gpus") or [] if "name" in g]
    if not gpus:
        return []
    lib = env.get("libraries") or {}
    tc = env.get("torch_cuda") or {}
    names = ", ".join(f"{g['name']} (sm {g.get('compute_capability')})" for g in gpus)
    return [
        f"GPU: {names}; driver {env.get('driver')}; torch {lib.get('torch')} (CUDA {tc.get('cuda_build')}, "
        f"cuDNN {tc.get('cudnn')}), onnxruntime {lib.get('onnxruntime')}, TensorRT {lib.get('tensorrt')}.",
        "",
    ]


def plot(report: dict, path: str | os.PathLike) -> bool:
    """Throughput per batch for each graph, and realised speedup vs FLOP ratio; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for g in report["graphs"]:
        bs = [r["batch"] for r in g["results"]]
        a1.plot(
            bs,
            [r["throughput_sps"] for r in g["results"]],
            marker="o",
            label=g["name"],
            alpha=0.5 if g["kind"] == "class" else 1.0,
        )
    a1.set_xscale("log", base=2)
    a1.set_xlabel("batch")
    a1.set_ylabel("samples/s")
    a1.set_title("throughput (interleaved run)")
    a1.legend(fontsize=6, ncol=2)
    bmax = max(report["settings"]["batches"])
    xs, ys, labels = [], [], []
    for g in report["graphs"]:
        r = next((r for r in g["results"] if r["batch"] == bmax), None)
        if r and g.get("flop_ratio_vs_full") and r.get("speedup_vs_full"):
            xs.append(g["flop_ratio_vs_full"])
            ys.append(r["speedup_vs_full"])
            labels.append(g["kind"])
    if xs:
        lim = max(xs + ys) * 1.1
        a2.plot([0, lim], [0, lim], "k--", lw=0.8, label="speedup = FLOP ratio")
        a2.plot([0, lim], [0, 0.95 * lim], "k:", lw=0.8, label="0.95 x FLOP ratio")
        for kind in sorted(set(labels)):
            idx = [i for i, k in enumerate(labels) if k == kind]
            a2.scatter([xs[i] for i in idx], [ys[i] for i in idx], label=kind)
        a2.legend(fontsize=7)
    a2.set_xlabel("FLOP ratio (full / graph)")
    a2.set_ylabel(f"speedup vs full (batch {bmax})")
    a2.set_title("realised speedup vs FLOP ratio")
    fig.tight_layout()
    from .._io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return True


def write_report(
    report: dict,
    out_dir: str | os.PathLike,
    *,
    stem: str = "bench",
    json_path: str | os.PathLike | None = None,
) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paths = {
        "json": Path(json_path) if json_path else out_dir / f"{stem}.json",
        "markdown": out_dir / f"{stem}.md",
        "png": out_dir / f"{stem}.png",
    }
    write_json(paths["json"], report)
    write_text(paths["markdown"], markdown(report))
    if not plot(report, paths["png"]):
        paths.pop("png")
    return paths
