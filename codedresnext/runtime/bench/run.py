"""`codedresnext bench`: every graph of an export, measured interleaved in one run (trtexec vocabulary).

Steps of `run_bench`: pick the graphs (`select_graphs`), open one runner per graph plus the
PyTorch peer, probe each one's peak memory in a fresh process (runtime/bench/memory.py), time them all
interleaved (runtime/bench/timing.py), add ratios vs the full graph, record the environment
(runtime/bench/environment.py) and, with --data, the early-exit cascade (runtime/bench/early_exit.py).
Files: runtime/bench/report.py. The goals a benchmark is held to live with the benchmark scripts
(benchmarks/goals.py), not here: this module measures and reports.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..._io import sha256_file
from ...artifact import (
    FP32,
    IMAGE_INPUTS,
    INT8,
    SOURCE_CHECKPOINT,
    GraphKind,
    Manifest,
    ManifestEntry,
    contained_path,
    graph_file,
    is_int8,
    load_manifest,
)
from ...errors import CodedResNeXtError, GraphError, ManifestError
from ..backends import backend_info, open_backend
from .early_exit import bench_early_exit
from .environment import environment
from .memory import measure_in_subprocess
from .options import BenchOptions
from .ratios import PEER_TORCH_KIND, add_ratios, ratios
from .timing import Runner, backend_runner, measure

EAGER_PEER = "torch"  # the backend that rebuilds the PyTorch eager reference from source.pt


DEFAULT_KINDS = (GraphKind.FULL, GraphKind.MASKED, GraphKind.CLASS, GraphKind.SUBSET, GraphKind.MULTI_EXIT)
PEAK_MEMORY_NOTE = (
    "host RSS high-water delta, MiB: VmHWM after loading the graph and running one batch of the largest "
    "size, minus VmRSS before the load (runtime library already imported), each graph in a fresh "
    "subprocess; not GPU memory"
)


def select_graphs(manifest: Manifest, names: list[str] | None, max_class_graphs: int) -> list[ManifestEntry]:
    """The named graphs, or the default set: full, masked, subset, multi-exit and the first
    `max_class_graphs` class graphs, in every precision the export has (side by side)."""
    if names:
        return manifest.select(names)
    out, n_class = [], {}
    for g in manifest.of_kind(*DEFAULT_KINDS, precision=None):
        if g.kind == GraphKind.CLASS:
            n_class[g.precision] = n_class.get(g.precision, 0) + 1
            if n_class[g.precision] > max_class_graphs:
                continue
        out.append(g)
    return out


def _graph_options(g: ManifestEntry, backend: str, options: dict) -> dict | None:
    """TensorRT builds each twin at its own precision (the FP16 graph as fp16, the Q/DQ graph as
    int8); None for the other int8 forms (`int8-cpu`: ONNX Runtime's CPU form), which TensorRT refuses."""
    if not backend_info(backend).builds_precision:
        return options
    if is_int8(g.precision) and g.precision != INT8:
        return None
    return {**options, "precision": g.precision}


def _graph_runner(
    directory: Path, g: ManifestEntry, backend: str, options: dict, streams: int = 1
) -> Runner | None:
    """None for graphs that do not take images (later segments, reject part B). The graph is verified
    against the manifest once (artifact.graph_file), before any of its sessions opens."""
    path = graph_file(directory, g)
    be = open_backend(backend, path, **options)
    if not set(IMAGE_INPUTS) & set(be.input_names):
        be.close()
        return None
    more = [open_backend(backend, path, **options) for _ in range(streams - 1)]
    return backend_runner(
        be,
        *more,
        name=g.name,
        kind=g.kind.value,
        params=g.params,
        flops=g.flops,
        classes=list(g.classes),
        source=(backend, str(path), options),
        precision=g.precision,
    )


def check_source(directory: Path, manifest: Manifest) -> None:
    """ManifestError unless DIR/source.pt is contained and has the sha256 the export recorded (the
    PyTorch peer rebuilds the model from it, so a swapped file would time another model)."""
    ck = manifest.checkpoint
    if ck is None or not ck.source_sha256:
        return  # an export without the record (older or --preset): nothing to check against
    path = contained_path(directory, ck.source or SOURCE_CHECKPOINT, "checkpoint.source")
    if sha256_file(path) != ck.source_sha256:
        raise ManifestError(
            f"{path} has another sha256 than the manifest recorded for it: the weights were replaced "
            "after export; restore the file or re-export with `codedresnext export`"
        )


def _torch_runner(
    directory: Path, full: ManifestEntry | None, threads: int | None, device: str = "cpu"
) -> Runner:
    be = open_backend(EAGER_PEER, directory / SOURCE_CHECKPOINT, threads=threads, device=device)
    return backend_runner(
        be,
        name="pytorch-eager-full",
        kind=PEER_TORCH_KIND,
        params=full.params if full else None,
        flops=full.flops if full else None,
        source=(EAGER_PEER, str(directory / SOURCE_CHECKPOINT), {"threads": threads, "device": device}),
        precision=FP32,
    )


def _open_runners(
    directory: Path,
    selected: list[ManifestEntry],
    full: ManifestEntry | None,
    backend: str,
    options: dict,
    *,
    torch_peer: bool,
    notes: list[str],
    streams: int = 1,
) -> list[Runner]:
    runners, refused = [], []
    for g in selected:
        opts = _graph_options(g, backend, options)
        if opts is None:
            refused.append(g.name)
        elif (r := _graph_runner(directory, g, backend, opts, streams)) is not None:
            runners.append(r)
    if refused:
        notes.append(f"not timed on {backend} (int8 forms for ONNX Runtime's CPU): {', '.join(refused)}")
    if not torch_peer:
        return runners
    if streams > 1:
        notes.append("PyTorch peer skipped: --streams times ONNX Runtime sessions only")
        return runners
    if not (directory / SOURCE_CHECKPOINT).is_file():
        notes.append(f"PyTorch peer skipped: no {SOURCE_CHECKPOINT} in the export directory")
        return runners
    check_source(directory, load_manifest(directory))
    try:
        device = options.get("device", "cpu") if backend_info(backend).devices else "cpu"  # peer beside
        runners.append(_torch_runner(directory, full, options.get("threads"), device))
    except Exception as e:  # a missing torch is a note, not a failed benchmark
        notes.append(f"PyTorch peer skipped: {e}")
    return runners


def _probe_memory(runners: list[Runner], batch: int, notes: list[str]) -> None:
    """Peak memory of each runner's graph at `batch`, each in a fresh process."""
    for r in runners:
        if r.source:
            m = measure_in_subprocess(r.source[0], r.source[1], batch=batch, options=r.source[2])
            r.peak_memory_mib = m.get("peak_rss_mib")
            if "error" in m:
                notes.append(f"memory of {r.name} not measured: {m['error']}")


def _measure_all(
    runners: list[Runner], batches: list[int], *, memory: bool, notes: list[str], **timing_kw: Any
) -> dict[str, list[dict]]:
    """Memory probe (fresh processes, largest batch), then the interleaved timing; closes the runners."""
    try:
        if not runners:
            raise GraphError("nothing to benchmark: no graph in the selection takes images")
        if memory:
            _probe_memory(runners, max(batches), notes)
        return measure(runners, batches, **timing_kw)
    finally:
        for r in runners:
            r.close()


def _graph_records(runners: list[Runner], timing: dict[str, list[dict]]) -> list[dict]:
    return [
        {
            "name": r.name,
            "kind": r.kind,
            "precision": r.precision,
            "params": r.params,
            "flops": r.flops,
            "classes": r.classes,
            "peak_memory_mib": r.peak_memory_mib,
            "backend_info": r.info,
            "results": timing[r.name],
        }
        for r in runners
    ]


def run_bench(directory: str | os.PathLike, options: BenchOptions | None = None) -> dict:
    """Benchmark an export directory as `options` says; returns the report dict (see
    bench_report.write_report for files)."""
    o = options or BenchOptions()
    backend, batches, streams, memory = o.backend, o.batches, o.streams, o.memory
    directory = Path(directory)
    manifest = load_manifest(directory)
    threads = int(o.threads or os.cpu_count() or 1)
    info = backend_info(backend)
    if streams < 1 or (streams > 1 and not info.streams):
        raise CodedResNeXtError(
            f"--streams {streams}: give a positive count; more than 1 is for --backend ort (concurrent "
            "ONNX Runtime sessions); for TensorRT engines use trtexec --streams"
        )
    notes: list[str] = []
    if streams > 1 and threads < streams:
        notes.append(f"{streams} streams on {threads} threads: one thread per stream, cores oversubscribed")
    if streams > 1 and memory:
        notes.append("peak memory is one stream's session; the streams hold one each")
    session_threads = max(1, threads // streams)
    backend_opts: dict[str, Any] = {"threads": session_threads, **(o.backend_options or {})}
    if info.providers:
        backend_opts.update(provider=o.provider, spinning=o.spinning)
    if info.batch_profile:
        backend_opts.setdefault("batch", (min(batches), max(batches), max(batches)))
    full = manifest.first(GraphKind.FULL, precision=None)
    selected = select_graphs(manifest, list(o.graphs) if o.graphs else None, o.max_class_graphs)
    runners = _open_runners(
        directory,
        selected,
        full,
        backend,
        backend_opts,
        torch_peer=o.torch_peer,
        notes=notes,
        streams=streams,
    )
    timing_kw = {
        "warmup": o.warmup,
        "duration": o.duration,
        "rounds": o.rounds,
        "min_iterations": o.min_iterations,
    }
    timing = _measure_all(
        runners, list(batches), memory=memory, notes=notes, progress=o.progress, **timing_kw
    )
    out_graphs = _graph_records(runners, timing)
    add_ratios(out_graphs)
    settings = {"batches": list(batches), "warmup_s": o.warmup, "duration_s": o.duration, "rounds": o.rounds}
    settings.update(min_iterations=o.min_iterations, interleaved=True, intra_op_spinning=o.spinning)
    settings.update(streams=streams, threads_per_stream=session_threads)
    settings["peak_memory"] = PEAK_MEMORY_NOTE if memory else "not measured"
    report: dict[str, Any] = {
        "directory": str(directory),
        "untrained": manifest.untrained,
        "settings": settings,
        "graphs": out_graphs,
        "ratios": ratios(out_graphs, max(batches)),
        "env": environment(threads, backend, o.provider),  # all threads; settings: per stream
        "notes": notes,
    }
    _add_adaptive(
        report,
        directory,
        manifest,
        o.data,
        backend=backend,
        options=backend_opts,
        batches=batches,
        duration=o.duration,
        limit=o.early_exit_limit,
        full=full,
    )
    return report


def _add_adaptive(
    report: dict,
    directory: Path,
    manifest: Manifest,
    data: str | None,
    *,
    backend: str,
    options: dict,
    batches,
    duration: float,
    limit: int,
    full: ManifestEntry | None,
) -> None:
    """Early exit measured here (with held-out `data`); early reject as `calibrate` measured it."""
    if manifest.has_kind(GraphKind.SEGMENT) and data:
        report["early_exit"] = bench_early_exit(
            directory,
            data,
            backend=backend,
            options=options,
            batch=max(batches),
            duration=duration,
            limit=limit,
            full_flops=full.flops if full else None,
        )
    elif manifest.has_kind(GraphKind.SEGMENT):
        report["notes"].append(
            "early exit not measured: pass --data (held-out images) to measure accuracy and compute"
        )
    rej = (manifest.calibration or {}).get("early_reject")
    if rej:
        report["early_reject"] = rej  # measured by `codedresnext calibrate` on the evaluation half
    blocks = (manifest.calibration or {}).get("early_reject_blocks")
    if blocks:  # every coded block, from the reject probes (calibrate)
        report["early_reject_blocks"] = {k: v for k, v in blocks.items() if k != "per_class"}
    if manifest.reject_floor is not None:
        report["reject_floor"] = manifest.reject_floor.to_dict()
