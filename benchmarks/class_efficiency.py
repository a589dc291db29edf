"""Where a class graph's FLOP saving goes on a multi-core CPU: its speedup over the full graph / its
FLOP ratio (the 0.95 goal of benchmarks/goals.py), measured several ways in one interleaved run:

- `1 thread`: one session, one intra-op thread, the other cores idle;
- `N threads`: one session on all N cores, workers sleeping between ops (what `codedresnext bench`
  times by default);
- `N threads, spinning`: workers busy-wait between ops while a run is in flight and stop when it
  returns (runtime.ort.session_options, `codedresnext bench --spinning`);
- `N threads, spinning kept`: ONNX Runtime's own default, workers keep spinning after a run: the
  previous graph's workers then hold a core while the next graph starts;
- `N streams`: N sessions of one thread each, called concurrently (N batches in flight; the cores
  are as busy as with N threads, but no operator is split across them).

    .venv/bin/python benchmarks/class_efficiency.py [DIR] [--class cat] [--batch 32] [--rounds 15]

DIR: an export with full.onnx and class_NAME.onnx; default: `codedresnext export --preset cifar10
--classes cat` into a temp dir (random weights: speed does not depend on them). Each round visits
the modes in a shuffled order and times `--calls` pairs of adjacent calls, full then class or class
then full (alternating); a mode's figure is the median over all its pairs of full seconds / class
seconds over the FLOP ratio, so a machine whose speed drifts compares like with like.
If `1 thread` reaches the goal and the busy modes do not, the lost efficiency comes from the cores
sharing the machine (memory bandwidth, caches), not from how the graph is built or split.
Writes benchmarks/results/class_efficiency.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from goals import GOALS  # benchmarks/goals.py (this script runs from benchmarks/)
from history import with_history

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


class Mode:
    """`streams` sessions of `threads` intra-op threads each; one call = one batch per stream."""

    def __init__(
        self, name: str, path: Path, threads: int, streams: int, spin: str, pool: ThreadPoolExecutor
    ):
        import onnxruntime as ort

        from codedresnext.runtime.backends.onnxrt.session import session_options

        self.name, self.streams, self.pool = name, streams, pool
        so = session_options(threads=threads, spinning=spin != "off", stop_spinning=spin != "kept")
        self.sessions = [
            ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]) for _ in range(streams)
        ]
        self.input = self.sessions[0].get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> None:
        if self.streams == 1:
            self.sessions[0].run(None, {self.input: x})
            return
        futures = [self.pool.submit(s.run, None, {self.input: x}) for s in self.sessions]
        for f in futures:
            f.result()


def _seconds(mode: Mode, x: np.ndarray) -> float:
    t0 = time.perf_counter()
    mode(x)
    return time.perf_counter() - t0


def measure(
    directory: Path, cls: str, *, batch: int, rounds: int, calls: int, cores: int, seed: int = 0
) -> dict:
    from codedresnext.artifact import load_manifest

    manifest = load_manifest(directory)
    full, graph = manifest.select(["full", f"class_{cls}"])
    flop_ratio = full.flops / graph.flops
    x = np.random.default_rng(seed).standard_normal((batch, 3, *full.inputs[0].shape[2:])).astype(np.float32)
    pool = ThreadPoolExecutor(max_workers=cores)
    layouts = {  # name: (threads per session, sessions, spinning: off / during runs / kept after them)
        "1 thread": (1, 1, "off"),
        f"{cores} threads": (cores, 1, "off"),
        f"{cores} threads, spinning": (cores, 1, "run"),
        f"{cores} threads, spinning kept": (cores, 1, "kept"),
        f"{cores} streams x 1 thread": (1, cores, "off"),
    }
    if cores == 1:
        layouts = {"1 thread": (1, 1, "off")}
    modes = {
        (m, g.name): Mode(m, directory / g.file, threads, streams, spin, pool)
        for m, (threads, streams, spin) in layouts.items()
        for g in (full, graph)
    }
    for mode in modes.values():  # warm-up: first calls allocate and pick kernels
        mode(x)
    # per mode: (full seconds, class seconds) of adjacent calls, their order alternating
    pairs: dict[str, list[tuple[float, float]]] = {m: [] for m in layouts}
    rng = np.random.default_rng(seed)
    names = list(layouts)
    for r in range(rounds):
        for i in rng.permutation(len(names)):
            m = names[i]
            for c in range(calls):
                first, second = (full, graph) if (r + c) % 2 == 0 else (graph, full)
                t = {first.name: _seconds(modes[(m, first.name)], x)}
                t[second.name] = _seconds(modes[(m, second.name)], x)
                pairs[m].append((t[full.name], t[graph.name]))
    pool.shutdown()
    rows = []
    for m, (threads, streams, spin) in layouts.items():
        f, c = (np.array([p[k] for p in pairs[m]]) for k in (0, 1))
        eff = f / c / flop_ratio
        rows.append(
            {
                "mode": m,
                "threads_per_session": threads,
                "streams": streams,
                "spinning": spin,
                "full_sps": float(streams * batch / np.median(f)),
                "class_sps": float(streams * batch / np.median(c)),
                "efficiency_median": float(np.median(eff)),
                "efficiency_p25": float(np.percentile(eff, 25)),
                "efficiency_p75": float(np.percentile(eff, 75)),
                "pairs": len(eff),
            }
        )
    return {
        "directory": str(directory),
        "class_graph": graph.name,
        "flop_ratio": flop_ratio,
        "batch": batch,
        "rounds": rounds,
        "pairs_per_round": calls,
        "cores": cores,
        "goal": next(g.minimum for g in GOALS if g.path[0] == "class_speedup_over_flop_ratio"),
        "modes": rows,
    }


def markdown(res: dict) -> str:
    env = res["env"]
    load = [round(v, 2) for v in env["load_average_at_start"] or []]
    lines = [
        f"# Class graph speedup / FLOP ratio by how the cores are used ({res['class_graph']} vs full)",
        "",
        f"`{res['command']}`: onnxruntime {env.get('onnxruntime')}, {env['cpu']} x{env['cpu_count']}, "
        f"batch {res['batch']}, {res['rounds']} rounds of {res['pairs_per_round']} adjacent full / class "
        f"call pairs per mode (modes shuffled, pair order alternating), FLOP ratio {res['flop_ratio']:.3f}, "
        f"{env['timestamp_utc']}, load average at start {load}.",
        "",
        "| mode | full samples/s | class samples/s | speedup / FLOP ratio (median of pairs) | p25-p75 |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in res["modes"]:
        lines.append(
            f"| {r['mode']} | {r['full_sps']:.1f} | {r['class_sps']:.1f} | {r['efficiency_median']:.3f} | "
            f"{r['efficiency_p25']:.3f}-{r['efficiency_p75']:.3f} |"
        )
    lines += ["", f"Goal: >= {res['goal']} (benchmarks/goals.py)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from codedresnext.export import ExportOptions, export_graphs
    from codedresnext.runtime.bench.environment import environment

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("directory", nargs="?", type=Path, help="export with full.onnx and class_NAME.onnx")
    p.add_argument("--preset", default="cifar10", help="without DIR: export this preset (random weights)")
    p.add_argument("--class", dest="cls", default="cat")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--calls", type=int, default=4, help="full / class call pairs per mode and round")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--stem", default="class_efficiency")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="codedresnext-eff-") as tmp:
        d = args.directory
        if d is None:
            d = Path(tmp) / args.preset
            export_graphs(
                ExportOptions(out=d, preset=args.preset, classes=[args.cls], verify=False, progress=False)
            )
        res = measure(d, args.cls, batch=args.batch, rounds=args.rounds, calls=args.calls, cores=args.cores)
    res["env"] = environment(args.cores, "ort", "cpu")
    res["command"] = " ".join(["python", "benchmarks/class_efficiency.py", *(argv or sys.argv[1:])])
    args.out.mkdir(parents=True, exist_ok=True)
    md = markdown(res)
    page = with_history(args.out / f"{args.stem}.md", md)
    for suffix, text in ((".json", json.dumps(res, indent=2) + "\n"), (".md", page)):
        path = args.out / f"{args.stem}{suffix}"
        tmp_path = path.with_suffix(suffix + ".tmp")
        tmp_path.write_text(text)
        tmp_path.replace(path)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
