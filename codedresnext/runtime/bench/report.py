"""A benchmark report (the dict run_bench returns) as Markdown, a PNG plot and files on disk."""

from __future__ import annotations

import os
from pathlib import Path

from ..._io import atomic_path, write_json, write_text
from ...artifact import GraphKind
from ..backends import BACKENDS, DEFAULT_BACKEND
from .environment import QPS_NOTE, int8_pays
from .precision import int8_ratio_lines


def _f(v, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def _pct(x) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def _header(report: dict) -> list[str]:
    env, st = report["env"], report["settings"]
    streams = st.get("streams", 1)
    cores = f"{env['threads']} threads"
    if streams > 1:
        t = st["threads_per_stream"]
        cores = f"{streams} streams x {t} thread{'s' if t > 1 else ''}"
    isa = f" ({env['cpu_isa']})" if env.get("cpu_isa") else ""
    return [
        f"# Benchmark: {report['directory']}",
        "",
        f"{env['backend']} ({env.get('provider')}), {cores}, {env['cpu']}{isa} "
        f"x{env['cpu_count']}, onnxruntime {env.get('onnxruntime')}, {env['timestamp_utc']}; warm-up "
        f"{st['warmup_s']} s, duration {st['duration_s']} s per graph and batch, interleaved; load "
        f"average at start {env.get('load_average_at_start')}.",
        "",
        f"Note: {QPS_NOTE}.",
        "",
        *_gpu_lines(env),
    ]


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


def _graph_table(report: dict) -> list[str]:
    lines = [
        "| graph | kind | precision | params | MFLOPs | FLOP ratio | batch | median ms | p99 ms | "
        "samples/s | speedup | speedup / FLOP ratio | peak MiB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for g in report["graphs"]:
        for r in g["results"]:
            lines.append(
                f"| {g['name']} | {g['kind']} | {g.get('precision') or ''} | {_f(g['params'], ',')} | "
                f"{_f(g['flops'] and g['flops'] / 1e6, '.1f')} | "
                f"{_f(g.get('flop_ratio_vs_full'), '.2f')} | {r['batch']} | "
                f"{r['latency_ms']['median']:.3f} | {r['latency_ms']['p99']:.3f} | "
                f"{r['throughput_sps']:.1f} | {_f(r.get('speedup_vs_full'), '.2f')} | "
                f"{_f(r.get('speedup_over_flop_ratio'), '.2f')} | {_f(g['peak_memory_mib'], '.1f')} |"
            )
    return lines


def _ratio_lines(report: dict) -> list[str]:
    r = report.get("ratios", {})
    lines = ["", f"## Ratios (batch {r.get('batch')})", ""]
    c = r.get("class_speedup_over_flop_ratio")
    if c:
        lines.append(
            f"- per-class speedup / FLOP ratio: min {c['min']:.3f}, median {c['median']:.3f} "
            "(ratio of median latencies)"
        )
        cm = r.get("class_speedup_over_flop_ratio_min_latency")
        if cm:
            lines.append(
                f"- the same from min latencies (robust to a shared, loaded machine): min {cm['min']:.3f}, "
                f"median {cm['median']:.3f}"
            )
    if r.get("masked_speedup"):
        lines.append(
            f"- masked graph (paper's approach) speedup vs full: "
            f"{', '.join(f'{s:.2f}' for s in r['masked_speedup'])} (expected about 1.0)"
        )
    if r.get("ort_over_torch_full"):
        backend = (report.get("env") or {}).get("backend", DEFAULT_BACKEND)
        label = BACKENDS[backend].label if backend in BACKENDS else backend
        lines.append(
            f"- {label} / PyTorch "
            "eager throughput on the full model: "
            f"{r['ort_over_torch_full']['throughput_ratio']:.2f}"
        )
    lines += int8_ratio_lines(r)
    if r.get("int8"):
        lines += _int8_isa_lines(report)
    for g in report.get("goals") or []:  # set by benchmarks/ scripts (benchmarks/goals.py)
        lines.append(
            f"- goal: {g['what']} {g['value']:.3f} ({g['goal']}: {'met' if g['met'] else 'NOT met'})"
        )
    return lines


def _int8_isa_lines(report: dict) -> list[str]:
    """Beside CPU INT8 figures: whether this CPU's instruction set lets INT8 convolutions pay."""
    env = report.get("env") or {}
    isa = env.get("cpu_isa")
    on_cpu = env.get("backend", "ort") == "ort" and env.get("provider", "cpu") == "cpu"
    if not on_cpu or isa is None or int8_pays(isa):
        return []
    return [
        f"- note: this CPU ({isa}) has no VNNI / dot-product instructions, so INT8 convolutions cannot "
        "beat FP32 by much here; expect little INT8 speedup on it (docs/int8.md)"
    ]


def _early_exit_lines(e: dict) -> list[str]:
    return [
        "",
        "## Early exit (evaluation half of the held-out test split)",
        "",
        f"- accuracy {100 * e['accuracy']:.2f}% vs {100 * e['full_accuracy']:.2f}% without exits "
        f"(loss {e['accuracy_loss_points']:.2f} points), calibrated: {e['calibrated']}",
        f"- mean FLOPs per sample {e['mean_flops_per_sample'] / 1e6:.1f} M of {e['full_flops'] / 1e6:.1f} M "
        f"(compute saved {100 * (e['compute_saved'] or 0):.1f}%), exits taken {e['exit_fractions']}",
        f"- throughput at batch {e['batch']}: {e['throughput_sps']:.1f} samples/s vs "
        f"{e['no_exit_throughput_sps']:.1f} without exits ({e['speedup_vs_no_exit']:.2f}x)",
    ]


def _early_reject_lines(r: dict) -> list[str]:
    lines = [
        "",
        f"## Early reject (evaluation half; reject threshold for <= {r['max_recall_loss']} point "
        "expected recall loss, set on the calibration half; reject score: "
        f"{(r.get('rule') or {}).get('rule', 'distance')})",
        "",
        "| class | recall | recall with reject | negatives rejected | negatives compute vs class graph |",
        "|---|---:|---:|---:|---:|",
    ]
    for cls, v in r["classes"].items():
        e = v["evaluation"]
        lines.append(
            f"| {cls} | {_pct(e['recall'])} | {_pct(e['recall_with_reject'])} | "
            f"{_pct(e['negatives_rejected'])} | {_pct(e['negative_compute_vs_class_graph'])} |"
        )
    return lines


def batch1_latency(report: dict) -> dict[str, dict]:
    """Batch-1 latency (median, p99 ms) of the fp32 full graph, each fp32 class graph and the
    cascade (its per-image latency over real images), where the report has them: the edge figure."""
    out: dict[str, dict] = {}
    for g in report.get("graphs", []):
        if g.get("kind") not in (GraphKind.FULL, GraphKind.CLASS) or (g.get("precision") or "fp32") != "fp32":
            continue
        r = next((r for r in g["results"] if r["batch"] == 1), None)
        if r is not None:
            out[g["name"]] = {"kind": g["kind"], **{k: r["latency_ms"][k] for k in ("median", "p99")}}
    ee = report.get("early_exit") or {}
    for key, name in (("batch1_latency_ms", "cascade"), ("no_exit_batch1_latency_ms", "cascade (no exit)")):
        if ee.get(key):
            out[name] = {"kind": "cascade", "median": ee[key]["median"], "p99": ee[key]["p99"]}
    return out


def _batch1_lines(report: dict) -> list[str]:
    rows = batch1_latency(report)
    if not rows:
        return []
    lines = ["", "## Batch-1 latency (one image per call: the edge figure)", ""]
    lines += ["| graph | kind | median ms | p99 ms |", "|---|---|---:|---:|"]
    lines += [f"| {n} | {v['kind']} | {v['median']:.3f} | {v['p99']:.3f} |" for n, v in rows.items()]
    return lines


def markdown(report: dict) -> str:
    lines = _header(report) + _graph_table(report) + _batch1_lines(report) + _ratio_lines(report)
    if "early_exit" in report:
        lines += _early_exit_lines(report["early_exit"])
    if "early_reject" in report:
        lines += _early_reject_lines(report["early_reject"])
    lines += _reject_blocks_lines(report)
    lines += [f"- note: {n}" for n in report.get("notes", [])]
    return "\n".join(lines) + "\n"


def _distance_cell(b: dict) -> str:
    return (
        f" {_pct(b.get('distance_negatives_stopped'))} / {_f(b.get('distance_recall_loss_points'), '.2f')} |"
    )


def _reject_blocks_lines(report: dict) -> list[str]:
    """The reject block table (calibrate, evaluation half) and the floor the shared trunk sets."""
    out = []
    rb, fl = report.get("early_reject_blocks"), report.get("reject_floor")
    if rb:
        learned = (rb.get("rule") or {}).get("rule") == "learned"
        out += [
            "",
            f"## Early reject per coded block (<= {rb['max_recall_loss']} point recall loss, mean over "
            f"{len(rb['classes'])} classes, evaluation half); chosen block {rb['chosen_block']}; "
            f"reject score: {'learned' if learned else 'codeword distance'}",
            "",
            "| block | negatives stopped | recall loss (points) | compute on negatives vs class graph | "
            "part A alone vs class graph |" + (" codeword distance: stopped / loss |" if learned else ""),
            "|---:|---:|---:|---:|---:|" + ("---:|" if learned else ""),
        ]
        out += [
            f"| {b['block']} | {_pct(b['negatives_stopped'])} | {_f(b['recall_loss_points'], '.2f')} | "
            f"{_pct(b['negative_compute_vs_class_graph'])} | {_pct(b['part_a_vs_class_graph'])} |"
            + (_distance_cell(b) if learned else "")
            for b in rb["blocks"]
        ]
    if fl and fl.get("fraction_of_class_graph") is not None:
        out += [
            "",
            f"- floor of any early reject for this preset: the shared, uncoded trunk (stem + blocks "
            f"{fl['trunk_blocks']}) is {100 * fl['fraction_of_class_graph']:.1f}% of a class graph's FLOPs",
        ]
    return out


def _throughput_axes(ax, report: dict) -> None:
    for g in report["graphs"]:
        bs = [r["batch"] for r in g["results"]]
        sps = [r["throughput_sps"] for r in g["results"]]
        ax.plot(bs, sps, marker="o", label=g["name"], alpha=0.5 if g["kind"] == GraphKind.CLASS else 1.0)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch")
    ax.set_ylabel("samples/s")
    ax.set_title("throughput (interleaved run)")
    ax.legend(fontsize=6, ncol=2)


def _speedup_axes(ax, report: dict) -> None:
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
        ax.plot([0, lim], [0, lim], "k--", lw=0.8, label="speedup = FLOP ratio")
        ax.plot([0, lim], [0, 0.95 * lim], "k:", lw=0.8, label="0.95 x FLOP ratio")
        for kind in sorted(set(labels)):
            idx = [i for i, k in enumerate(labels) if k == kind]
            ax.scatter([xs[i] for i in idx], [ys[i] for i in idx], label=kind)
        ax.legend(fontsize=7)
    ax.set_xlabel("FLOP ratio (full / graph)")
    ax.set_ylabel(f"speedup vs full (batch {bmax})")
    ax.set_title("realised speedup vs FLOP ratio")


def plot(report: dict, path: str | os.PathLike) -> bool:
    """Throughput per batch for each graph, and realised speedup vs FLOP ratio; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    _throughput_axes(a1, report)
    _speedup_axes(a2, report)
    fig.tight_layout()
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
    """OUT/STEM.json, STEM.md and (with matplotlib) STEM.png; returns their paths."""
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
