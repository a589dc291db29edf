"""Where the time goes: ONNX Runtime's profiler on exported graphs, per op category, interleaved.

    .venv/bin/python benchmarks/profile_graphs.py
        the cifar10 preset (random weights), full and class_cat graphs, each built four ways: as
        `export` writes them ("current"); with the batch dimension lost to shape inference, as the
        builder did before (the per-branch Reshape to -1: ONNX Runtime then leaves the coded blocks'
        residual Add + ReLU unfused, "batch-lost"); without the expand-channel alignment
        (builder.EXPAND_ALIGN = 1, "unaligned"); without the shared trunk's widened groups (groups.py,
        "unwidened"); writes benchmarks/results/profile_graphs.{json,md}
    .venv/bin/python benchmarks/profile_graphs.py DIR/full.onnx DIR/class_cat.onnx [--iters 6] [--sessions 5]
        any exported graphs; prints the table (--json FILE writes the numbers)

Each graph gets its own session (runtime.ort.session_options with spinning, plus
enable_profiling); the graphs are run in turn (interleaved, so a background load hits all alike;
a session's workers stop spinning when its run returns, else they would hold a core while the next
graph starts) and the profiler's per-node kernel times are
summed into categories by node name (builder.py's stable names survive ONNX Runtime's fusions as
prefixes): the convolutions of each role, the energy path, the normalisation, residual Add/ReLU,
the alignment Pads and the NCHWc layout reorders ONNX Runtime inserts. The wall-clock medians give
each class graph's speedup over the full graph of its own build and that speedup / its FLOP ratio
(the figure benchmarks/goals.py holds to 0.95).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from history import with_history

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

CATEGORIES = [  # (substring of the node name, category); first match wins
    ("gram_conv", "energy"),
    ("h_gram_h", "energy"),
    ("sum_hw", "energy"),
    ("per_branch", "energy"),
    ("sum_d", "energy"),
    ("clamp", "energy"),
    ("/energy", "energy"),
    ("/sum", "normalisation"),
    ("/mean", "normalisation"),
    ("norm", "normalisation"),
    ("/energies", "normalisation"),
    ("/bn", "normalisation"),
    ("eorder", "layout (NCHWc reorders)"),
    ("expand_align", "alignment Pad"),
    ("stem", "stem"),
    ("residual", "residual Add + ReLU"),
    ("/out", "residual Add + ReLU"),
    ("expand", "expand conv"),
    ("reduce", "reduce conv"),
    ("shortcut", "shortcut conv"),
    ("/conv", "3x3 grouped conv"),
    ("head", "head"),
]


def category(node: str) -> str:
    return next((c for k, c in CATEGORIES if k in node), "other")


def profile(
    paths: list[Path], *, iters: int, batch: int, threads: int, labels: list[str] | None = None
) -> dict:
    """{label: {"wall_median_ms", "kernel_ms": {category: ms per call}}} for the graphs at `paths`."""
    import onnxruntime as ort

    from codedresnext.runtime.backends.onnxrt.session import session_options

    labels = labels or [str(p) for p in paths]
    sessions, wall = {}, collections.defaultdict(list)
    for label, p in zip(labels, paths):
        so = session_options(threads=threads, spinning=True)  # workers spin during a run only
        so.enable_profiling = True
        tag = "".join(c if c.isalnum() else "-" for c in label)[-60:]  # one trace file per graph
        so.profile_file_prefix = str(Path(tempfile.gettempdir()) / f"codedresnext-profile-{tag}")
        s = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
        inp = s.get_inputs()[0]
        shape = [batch, *inp.shape[1:]]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        s.run(None, {inp.name: x})
        sessions[label] = (s, {inp.name: x})
    for _ in range(iters):
        for name, (s, feed) in sessions.items():
            t = time.perf_counter()
            s.run(None, feed)
            wall[name].append(time.perf_counter() - t)
    out = {}
    for name, (s, _) in sessions.items():
        trace = Path(s.end_profiling())
        per: dict[str, float] = collections.defaultdict(float)
        for e in json.loads(trace.read_text()):
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                per[category(e["name"][: -len("_kernel_time")])] += e["dur"] / 1e3 / (iters + 1)
        trace.unlink()
        out[name] = {"wall_median_ms": 1e3 * float(np.median(wall[name])), "kernel_ms": dict(per)}
    return out


def profile_sessions(paths: list[Path], *, sessions: int, labels: list[str], **kw) -> dict:
    """`profile` repeated with fresh sessions; per graph the median over sessions of the wall medians
    and of each category's kernel time, and every session's wall median ("wall_sessions_ms").

    The same graph in fresh sessions differs by 10-20% here (cifar10 full, 1 thread, 7 sessions:
    882-983 ms), more than between the calls of one session: comparing builds needs several."""
    runs = [profile(paths, labels=labels, **kw) for _ in range(sessions)]
    out = {}
    for name in labels:
        walls = [r[name]["wall_median_ms"] for r in runs]
        cats = {c for r in runs for c in r[name]["kernel_ms"]}
        per = [r[name]["kernel_ms"] for r in runs]
        out[name] = {
            "wall_median_ms": float(np.median(walls)),
            "wall_sessions_ms": walls,
            "kernel_ms": {c: float(np.median([k.get(c, 0.0) for k in per])) for c in cats},
        }
    return out


def markdown(res: dict) -> str:
    cats = sorted(
        {c for r in res.values() for c in r["kernel_ms"]},
        key=lambda c: -max(r["kernel_ms"].get(c, 0) for r in res.values()),
    )
    names = list(res)
    heads = [f"{Path(n).parent.name}/{Path(n).stem}" if n.endswith(".onnx") else n for n in names]
    lines = ["| category | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(names)]
    for c in cats:
        cells = []
        for n in names:
            v, tot = res[n]["kernel_ms"].get(c, 0.0), sum(res[n]["kernel_ms"].values())
            cells.append(f"{v:.1f} ms ({100 * v / tot:.1f}%)")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines.append(
        "| kernels total | " + " | ".join(f"{sum(res[n]['kernel_ms'].values()):.1f} ms" for n in names) + " |"
    )
    lines.append("| wall median | " + " | ".join(f"{res[n]['wall_median_ms']:.1f} ms" for n in names) + " |")
    return "\n".join(lines) + "\n"


def _lose_batch(path: Path) -> None:
    """The builder's old per-branch Reshape to (-1, n, d) instead of (0, n, d): enough to lose the
    batch dimension downstream, as the old graphs did (they also reshaped the norm with -1)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    for t in m.graph.initializer:
        if t.name.endswith("/branch_shape"):
            shape = numpy_helper.to_array(t).copy()
            shape[0] = -1
            t.CopyFrom(numpy_helper.from_array(shape, t.name))
    onnx.save(m, str(path))


def _export(out: Path, preset: str, cls: str, align: int, keep_batch: bool, widen: bool) -> dict[str, float]:
    """full + class graph of `preset` built with builder.EXPAND_ALIGN = align and the trunk's groups
    widened or not (groups.GROUP_COST_MAX 1: none qualifies); {graph: FLOPs}."""
    from codedresnext.artifact import load_manifest
    from codedresnext.export import ExportOptions, builder, export_graphs, groups

    saved = builder.EXPAND_ALIGN, groups.GROUP_COST_MAX
    builder.EXPAND_ALIGN = align
    groups.GROUP_COST_MAX = saved[1] if widen else 1.0
    try:
        export_graphs(
            ExportOptions(out=out, preset=preset, classes=[cls], verify=False, overwrite=True, progress=False)
        )
    finally:
        builder.EXPAND_ALIGN, groups.GROUP_COST_MAX = saved
    if not keep_batch:
        for g in ("full.onnx", f"class_{cls}.onnx"):
            _lose_batch(out / g)
    return {g.file: float(g.flops) for g in load_manifest(out).graphs}


def compare_builds(args) -> dict:
    """The four builds of the preset's full and class graph, profiled in one interleaved run."""
    from codedresnext.export import builder

    builds = {  # tag: (expand alignment, batch dimension kept through shape inference, trunk groups widened)
        "current": (builder.EXPAND_ALIGN, True, True),
        "unwidened": (builder.EXPAND_ALIGN, True, False),
        "batch-lost": (builder.EXPAND_ALIGN, False, True),
        "unaligned": (1, True, True),
    }
    with tempfile.TemporaryDirectory(prefix="codedresnext-profile-") as tmp:
        paths, labels, flops = [], [], {}
        for tag, (align, keep_batch, widen) in builds.items():
            fl = _export(Path(tmp) / tag, args.preset, args.cls, align, keep_batch, widen)
            for g in ("full.onnx", f"class_{args.cls}.onnx"):
                paths.append(Path(tmp) / tag / g)
                labels.append(f"{tag}/{Path(g).stem}")
                flops[labels[-1]] = fl[g]
        kw = dict(iters=args.iters, batch=args.batch, threads=args.threads)
        res = profile_sessions(paths, sessions=args.sessions, labels=labels, **kw)
    summary = {}
    for tag, (align, keep_batch, widen) in builds.items():
        full, cls = res[f"{tag}/full"], res[f"{tag}/class_{args.cls}"]
        speedup = full["wall_median_ms"] / cls["wall_median_ms"]
        ratio = flops[f"{tag}/full"] / flops[f"{tag}/class_{args.cls}"]
        summary[tag] = {
            "expand_align": align,
            "batch_kept": keep_batch,
            "groups_widened": widen,
            "class_speedup": speedup,
            "flop_ratio": ratio,
            "speedup_over_flop_ratio": speedup / ratio,
            "per_session": [  # full / class of the same session, over the FLOP ratio
                f / c / ratio for f, c in zip(full["wall_sessions_ms"], cls["wall_sessions_ms"])
            ],
        }
    return {
        "preset": args.preset,
        "class": args.cls,
        "batch": args.batch,
        "threads": args.threads,
        "iters": args.iters,
        "sessions": args.sessions,
        "profile": res,
        "summary": summary,
    }


def write_comparison(report: dict, out: Path) -> Path:
    import os
    import platform

    import onnxruntime as ort

    from codedresnext._io import write_json, write_text

    report = {
        **report,
        "onnxruntime": ort.__version__,
        "machine": platform.processor() or platform.machine(),
        "load_average": list(os.getloadavg()),
        "command": " ".join(["python", "benchmarks/profile_graphs.py", *sys.argv[1:]]),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "profile_graphs.json", report)
    lines = [
        f"# Where the time goes: {report['preset']} full vs class_{report['class']} "
        "(ONNX Runtime CPU profiler)",
        "",
        f"`{report['command']}`: onnxruntime {report['onnxruntime']}, {report['threads']} thread(s), "
        f"batch {report['batch']}, {report['sessions']} fresh sessions per graph, each {report['iters']} "
        "interleaved calls (medians of the session medians), load average at the end "
        f"{[round(v, 2) for v in report['load_average']]}. Kernel times per call by category.",
        "",
        markdown(report["profile"]),
        "| build | expand align | batch kept | trunk groups widened | class speedup | FLOP ratio | "
        "speedup / FLOP ratio | per session (min-max) |",
        "|---|---:|:---:|:---:|---:|---:|---:|---:|",
    ]
    for tag, s in report["summary"].items():
        lines.append(
            f"| {tag} | {s['expand_align']} | {'yes' if s['batch_kept'] else 'no'} | "
            f"{'yes' if s['groups_widened'] else 'no'} | "
            f"{s['class_speedup']:.3f}x | {s['flop_ratio']:.3f} | "
            f"{s['speedup_over_flop_ratio']:.3f} | {min(s['per_session']):.3f}-{max(s['per_session']):.3f} |"
        )
    md = out / "profile_graphs.md"
    write_text(md, with_history(md, "\n".join(lines) + "\n"))
    return md


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("graphs", nargs="*", type=Path, help="graphs (default: the three-build comparison)")
    p.add_argument("--preset", default="cifar10")
    p.add_argument("--class", dest="cls", default="cat")
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--sessions", type=int, default=5, help="fresh sessions per graph (medians over them)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="with graphs: write the numbers here")
    p.add_argument("--out", type=Path, default=RESULTS, help="the comparison's JSON and Markdown go here")
    args = p.parse_args()
    if not args.graphs:
        md = write_comparison(compare_builds(args), args.out)
        print(md.read_text())
        return 0
    labels = [str(g) for g in args.graphs]
    kw = dict(iters=args.iters, batch=args.batch, threads=args.threads)
    res = profile_sessions(args.graphs, sessions=args.sessions, labels=labels, **kw)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
