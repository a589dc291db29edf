"""Where the time goes: ONNX Runtime's profiler on exported graphs, per op category, interleaved.

    .venv/bin/python benchmarks/profile_graphs.py DIR/full.onnx DIR/class_cat.onnx [--iters 6] [--batch 32]

Each graph gets its own session with SessionOptions.enable_profiling; the graphs are run in turn
(interleaved, so a background load hits all alike) and the profiler's per-node kernel times are
summed into categories by node name (builder.py's stable names survive ONNX Runtime's fusions as
prefixes): the convolutions of each role, the energy path, the normalisation, residual Add/ReLU and
the NCHWc layout reorders ONNX Runtime inserts. Prints a Markdown table (ms per batch call and
share); --json writes the numbers.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np

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


def profile(paths: list[Path], *, iters: int, batch: int, threads: int) -> dict:
    import onnxruntime as ort

    sessions, wall = {}, collections.defaultdict(list)
    for p in paths:
        so = ort.SessionOptions()
        so.enable_profiling = True
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        so.profile_file_prefix = f"/tmp/codedresnext-profile-{p.stem}"
        s = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
        inp = s.get_inputs()[0]
        shape = [batch, *inp.shape[1:]]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        s.run(None, {inp.name: x})
        sessions[str(p)] = (s, {inp.name: x})
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


def markdown(res: dict) -> str:
    cats = sorted(
        {c for r in res.values() for c in r["kernel_ms"]},
        key=lambda c: -max(r["kernel_ms"].get(c, 0) for r in res.values()),
    )
    names = list(res)
    lines = ["| category | " + " | ".join(Path(n).stem for n in names) + " |", "|---|" + "---:|" * len(names)]
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("graphs", nargs="+", type=Path)
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    res = profile(args.graphs, iters=args.iters, batch=args.batch, threads=args.threads)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
