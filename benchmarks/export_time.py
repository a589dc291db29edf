"""Export-time benchmark: all 100 per-class graphs of the cifar100 preset (goal: <= 60 s, 2-core CPU).

Runs the export of `codedresnext export --preset cifar100 --classes all` in a fresh Python process
(through the API, as verification is an ExportOptions field, not a CLI option) and times it end to end
(interpreter start, torch import, random init, BN fold, full graph, 100 ONNX -> ONNX prunes, each
checked with onnx.checker + strict shape inference + the TensorRT op allowlist, params/FLOPs counted,
sha256, files and manifest written atomically):
  1. without verification (verify=False): the 60 s goal;
  2. with verification, reduced (verify_batch=1, verify_images=1): each graph run by ONNX Runtime
     and compared with the masked PyTorch reference (informational; the reference forward passes
     dominate);
  3. the torch-free library path alone: load full.onnx once + prune 100 classes + serialize + write.
Writes benchmarks/results/export_time.json and .md.

    .venv/bin/python benchmarks/export_time.py [--preset cifar100] [--skip-verified]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from codedresnext.artifact import GraphKind, load_manifest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GOAL_S = 60.0


# one export in a fresh interpreter, as the CLI runs it: argv = preset, out dir, ExportOptions overrides
_EXPORT = (
    "import sys, json\n"
    "from codedresnext.export import ExportOptions, export_graphs\n"
    "export_graphs(ExportOptions(out=sys.argv[2], preset=sys.argv[1], classes='all', progress=False,"
    " **json.loads(sys.argv[3])))\n"
)


def _cmd(preset: str, out: Path, **options) -> list[str]:
    return [sys.executable, "-c", _EXPORT, preset, str(out), json.dumps(options)]


def _show(cmd: list[str]) -> str:
    """The call as a user writes it."""
    extra = "".join(f", {k}={v!r}" for k, v in json.loads(cmd[-1]).items())
    return f"export_graphs(ExportOptions(preset={cmd[3]!r}, classes='all'{extra}))"


def _run(cmd: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return dt


def _prune_only(full: Path, out_dir: Path) -> dict:
    """Library path without torch: load full.onnx once, prune every class, serialize, write."""
    from codedresnext.export.pruner import load_full_graph, prune

    t0 = time.perf_counter()
    fg = load_full_graph(full)
    t1 = time.perf_counter()
    for name in fg.cfg.class_names:
        (out_dir / f"{name}.onnx").write_bytes(prune(fg, [name]).SerializeToString())
    t2 = time.perf_counter()
    return {
        "load_full_s": round(t1 - t0, 3),
        "prune_all_s": round(t2 - t1, 3),
        "per_class_ms": round(1000 * (t2 - t1) / len(fg.cfg.class_names), 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cifar100")
    ap.add_argument("--skip-verified", action="store_true", help="skip the (slow) verified run")
    args = ap.parse_args()
    res: dict = {"preset": args.preset, "goal_s": GOAL_S, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="export-bench-") as tmp:
        tmp = Path(tmp)
        cmd = _cmd(args.preset, tmp / "noverify", verify=False)
        res["runs"]["no_verify"] = {"command": _show(cmd), "wall_s": round(_run(cmd), 2)}
        manifest = load_manifest(tmp / "noverify")
        classes = manifest.of_kind(GraphKind.CLASS)
        res["graphs"] = len(manifest.graphs)
        res["class_graphs"] = len(classes)
        res["bytes_written"] = sum(g.size_bytes for g in manifest.graphs)
        res["class_params"] = sorted({g.params for g in classes})
        res["full_params"] = manifest.graphs[0].params
        if not args.skip_verified:
            cmd = _cmd(args.preset, tmp / "verify", verify_batch=1, verify_images=1)
            res["runs"]["verify_1_random_1_image"] = {"command": _show(cmd), "wall_s": round(_run(cmd), 2)}
        (tmp / "pruned").mkdir()
        res["runs"]["library_prune_only"] = _prune_only(tmp / "noverify" / "full.onnx", tmp / "pruned")
    res["meets_goal"] = res["runs"]["no_verify"]["wall_s"] <= GOAL_S
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    res["machine"] = {
        "cpus": os.cpu_count(),
        "loadavg_1min": load,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    res["script"] = " ".join(["benchmarks/export_time.py", *sys.argv[1:]])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "export_time.json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [
        f"# Export time: all {res['class_graphs']} per-class graphs of `{args.preset}`",
        "",
        f"Goal <= {GOAL_S:.0f} s on a 2-core CPU. Machine: {res['machine']['cpus']} CPUs, 1-min load "
        f"{load if load is None else round(load, 2)} at the time (other jobs running inflate the numbers).",
        "",
        "| run | what is included | wall time (s) |",
        "|---|---|---|",
        f"| `{res['runs']['no_verify']['command']}` | process start, torch import, fold, full + "
        f"{res['class_graphs']} pruned graphs, checker + shape inference + allowlist, params/FLOPs, sha256, "
        f"files + manifest | {res['runs']['no_verify']['wall_s']} |",
    ]
    if "verify_1_random_1_image" in res["runs"]:
        r = res["runs"]["verify_1_random_1_image"]
        lines.append(
            f"| `{r['command']}` | the above + ONNX Runtime vs masked PyTorch reference per graph "
            f"(1 random input, 1 real image) | {r['wall_s']} |"
        )
    p = res["runs"]["library_prune_only"]
    lines += [
        f"| library, no torch: `load_full_graph` + `prune` x{res['class_graphs']} + serialize + write | "
        f"pruning alone ({p['per_class_ms']} ms per class) | "
        f"{round(p['load_full_s'] + p['prune_all_s'], 2)} |",
        "",
        f"Per-class parameters {res['class_params']} of {res['full_params']:,} (full); "
        f"{res['bytes_written'] / 1e6:.0f} MB of ONNX written. Meets the goal: **{res['meets_goal']}**.",
        "",
        f"Reproduce: `.venv/bin/python {res['script']}`",
    ]
    (RESULTS / "export_time.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
