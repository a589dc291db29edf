"""docs/results.md from benchmarks/results/*.json: one table, a row per result, each with its machine.

    python benchmarks/results_table.py            # writes docs/results.md
    python benchmarks/results_table.py --check    # exit 1 if docs/results.md is not what the JSONs give

A row holds the result's headline figure(s), its date, CPU model, ISA class (AVX2 / AVX-512, with or
without VNNI), thread count and the command that produced it. Reports written since the ISA is
recorded carry all of it (report["env"]); for older results the machine is taken from the file, and
where the file lacks it, from RECOVERED below, each fact with where it came from. What neither says
is written "not recorded".
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from codedresnext.runtime.bench.report import batch1_latency

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "results.md"
NOT_RECORDED = "not recorded"
COLUMNS = ("result", "headline figures", "date", "CPU", "ISA", "threads", "command", "source")

# Where the closing notes of earlier sessions (`issues stops`) and the git history say what machine
# a result was measured on; used only for facts the JSON itself lacks. Keys: a note id in SOURCES.
_XEON_ISA = "AVX-512+VNNI"
_EPYC_ISA = "AVX2"
SOURCES = {
    "xeon": "ISA from the closing notes of earlier sessions: stop 23 (2026-12-02) 'the machine changed "
    "from AMD EPYC (AVX2) to Intel Xeon (AVX-512 VNNI)', stops 25-26 (2026-12-03) '2-core Intel Xeon "
    "AVX-512'. The CPU flags themselves were not recorded with the result.",
    "epyc": "ISA from the closing note of stop 23 (2026-12-02): the AMD EPYC of the sessions before was "
    "AVX2 (no VNNI). The CPU flags themselves were not recorded with the result.",
    "commit": "CPU model from another result of the same commit, whose report records it.",
    "stop26": "CPU from the closing note of stop 26 (2026-12-03), which reports this profile as measured "
    "on a '2-core Intel Xeon AVX-512'.",
    "date": "Date of the commit that last changed the file (the file records none).",
}
RECOVERED: dict[str, dict[str, str]] = {
    "export_time": {"date": "2026-11-22", "cpu": "AMD EPYC", "isa": _EPYC_ISA, "notes": "commit epyc date"},
    "coding_generator": {"isa": NOT_RECORDED},
    "bench_trained_tiny": {"isa": _EPYC_ISA, "notes": "epyc"},
    "train_step": {"isa": _EPYC_ISA, "notes": "epyc"},
    "input_pipeline": {"isa": _EPYC_ISA, "notes": "epyc"},
    "bench_cifar10": {"isa": _XEON_ISA, "notes": "xeon"},
    "bench_cifar100": {"isa": _XEON_ISA, "notes": "xeon"},
    "int8": {"isa": _XEON_ISA, "notes": "xeon"},
    "class_efficiency": {"isa": _XEON_ISA, "notes": "xeon"},
    "profile_graphs": {
        "date": "2026-12-03",
        "cpu": "Intel(R) Xeon(R) Processor",
        "isa": _XEON_ISA,
        "notes": "commit xeon date",
    },  # fmt: skip
    "profile_graphs_cifar10_2threads": {
        "date": "2026-12-03",
        "cpu": "Intel(R) Xeon(R) Processor",
        "isa": _XEON_ISA,
        "notes": "commit xeon date",
    },  # fmt: skip
    "profile_graphs_cifar100_1thread": {
        "date": "2026-12-03",
        "cpu": "Intel(R) Xeon(R) Processor",
        "isa": _XEON_ISA,
        "notes": "commit xeon date",
    },  # fmt: skip
    "profile_graphs_cifar100_2threads": {
        "date": "2026-12-03",
        "cpu": "Intel(R) Xeon(R) Processor",
        "isa": _XEON_ISA,
        "notes": "commit xeon date",
    },  # fmt: skip
    "profile_graphs_imagenet_2threads": {
        "date": "2026-12-03",
        "cpu": "Intel(R) Xeon(R) Processor",
        "isa": _XEON_ISA,
        "notes": "stop26 xeon date",
    },  # fmt: skip
    "profile_graphs_int8_cpu_alignment": {
        "date": "2026-12-02",
        "cpu": "Intel(R) Xeon(R) Processor",
        "isa": _XEON_ISA,
        "threads": "2",
        "command": "python benchmarks/profile_graphs.py <7 graphs> --iters 4 --sessions 5 --threads 2 "
        "--json benchmarks/results/profile_graphs_int8_cpu_alignment.json",
        "notes": "commit xeon date",
    },  # fmt: skip
    "profile_graphs_int8_cpu": {
        "date": "2026-12-02",
        "threads": "2",
        "command": "python benchmarks/profile_graphs.py <4 graphs> --iters 4 --sessions 5 --threads 2 "
        "--json benchmarks/results/profile_graphs_int8_cpu.json",
        "notes": "date",
    },  # fmt: skip
    "exit_guard": {"date": "2026-12-03", "notes": "date"},
    "exit_guard_codeword": {"date": "2026-12-02", "notes": "date"},
    "reject_rule": {"date": "2026-12-02", "notes": "date"},
    "int8_calibration": {"date": "2026-12-02", "notes": "date"},
}


@dataclass
class Row:
    stem: str
    figures: str
    date: str
    cpu: str
    isa: str
    threads: str
    command: str
    notes: tuple[str, ...] = ()
    page: str = ""  # the result's own page beside its JSON (the JSON itself where it has none)


def _get(d: dict, *path: str):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


# -- headline figures, per kind of result file ---------------------------------------------------------


def _bench(d: dict) -> str:
    r = d.get("ratios") or (d.get("goals") if isinstance(d.get("goals"), dict) else {}) or {}
    out = []
    eff = _get(r, "class_speedup_over_flop_ratio", "median")
    if eff is not None:
        out.append(f"class speedup / FLOP ratio {eff:.3f} (median, batch {r.get('batch')})")
    if r.get("masked_speedup"):
        out.append("masked " + ", ".join(f"{s:.2f}x" for s in r["masked_speedup"]))
    ort = _get(r, "ort_over_torch_full", "throughput_ratio")
    if ort is not None:
        out.append(f"ONNX Runtime / PyTorch eager {ort:.2f}x")
    for kind in ("full", "class"):
        v = _get(r, "int8", kind)
        if v:
            out.append(f"INT8 {kind} {v['ratio_vs_fp32_full']:.2f}x the fp32 full graph ({v['precision']})")
    b1 = batch1_latency(d)
    if b1:
        full = [v for v in b1.values() if v["kind"] == "full"]
        cls = sorted((v for v in b1.values() if v["kind"] == "class"), key=lambda v: v["median"])
        casc = b1.get("cascade")
        parts = [f"full {full[0]['median']:.2f}/{full[0]['p99']:.2f}"] if full else []
        if cls:
            mid = cls[len(cls) // 2]
            parts.append(f"class {mid['median']:.2f}/{mid['p99']:.2f}")
        if casc:
            parts.append(f"cascade {casc['median']:.2f}/{casc['p99']:.2f}")
        out.append("batch-1 ms median/p99: " + ", ".join(parts))
    ee = d.get("early_exit")
    if ee and ee.get("compute_saved") is not None:
        out.append(f"early exit {_pct(ee['compute_saved'])} saved at {ee['accuracy_loss_points']:.2f} pt")
    return "; ".join(out)


def _class_efficiency(d: dict) -> str:
    modes = ", ".join(f"{m['mode']} {m['efficiency_median']:.3f}" for m in d["modes"])
    return f"class speedup / FLOP ratio: {modes}"


def _coding_generator(d: dict) -> str:
    slow = max(c["median_s"] for c in d["cases"])
    return (
        f"paper H_min and balance reached: {'all' if d['all_ok'] else 'NOT all'} cases; slowest {slow:.2f} s"
    )


def _export_time(d: dict) -> str:
    runs = d["runs"]
    return (
        f"{d['class_graphs']} class graphs in {runs['no_verify']['wall_s']:.1f} s "
        f"({runs['verify_1_random_1_image']['wall_s']:.1f} s verified)"
    )


def _input_pipeline(d: dict) -> str:
    best = next(
        p for p in d["pipeline"] if p["augment"].startswith("RandAugment") and p["where"].startswith("main")
    )
    step = _get(d, "train_step", "cpu", "images_per_s")
    return f"{best['augment']}: {best['images_per_s']:,.0f} images/s; training step {step:.1f} images/s"


def _train_step(d: dict) -> str:
    return f"coded / control step {d['ratio_coded_over_control']:.2f}x (batch {d['batch']})"


def _exit_guard(d: dict) -> str:
    out = []
    for row in d["rows"]:
        if "default" in row["guard"]:
            out.append(
                f"{row['confidence']}: {_pct(row['saved_mean'])} saved, {row['eval_loss_mean']:.2f} pt lost, "
                f"over budget {row['over_budget']}/{d['splits']}"
            )
    return f"default guard, budget {d['budget']} pt, means over {d['splits']} halvings: " + "; ".join(out)


def _reject_rule(d: dict) -> str:
    rows = [r for r in d["rows"] if r["threshold"].startswith("calibrate")]
    per = {
        s: "/".join(_pct(r["negatives_stopped"])[:-1] for r in rows if r["score"] == s)
        for s in ("learned", "distance")
    }
    return (
        f"negatives stopped at blocks 1-{len(rows) // 2}, recall budget {d['budget']} pt: "
        f"learned {per['learned']}%, distance {per['distance']}%"
    )


def _int8_calibration(d: dict) -> str:
    run = next(r for r in d["runs"] if r["method"] == d["chosen"])
    losses = ", ".join(
        f"{p} {100 * (v['reference']['top1'] - v['top1']):.2f} pt" for p, v in run["precisions"].items()
    )
    return f"chosen {d['chosen']}; top-1 loss vs fp32 on {d['test_images']:,} images: {losses}"


def _profile(d: dict) -> str:
    s = d["summary"]
    builds = ", ".join(f"{k} {v['speedup_over_flop_ratio']:.3f}" for k, v in s.items() if k != "current")
    return (
        f"{d['preset']} class speedup / FLOP ratio {s['current']['speedup_over_flop_ratio']:.3f} "
        f"(batch {d['batch']}; other builds: {builds})"
    )


def _profile_graphs_list(d: dict) -> str:
    walls = ", ".join(f"{Path(k).parent.name}/{Path(k).stem} {v['wall_median_ms']:.0f}" for k, v in d.items())
    return f"wall ms per call (batch 32): {walls}"


def _edge_latency(d: dict) -> str:
    prof = ", ".join(f"{g} {100 * p['overhead_share_median']:.1f}%" for g, p in d["profile"].items())
    lat = {(c["graph"], c["threads"]): c["median_ms"] for c in d["latency"] if c["optimization"] == "all"}
    threads = ", ".join(f"{g} {lat[(g, 1)]:.2f} vs {lat[(g, 2)]:.2f} ms" for g in d["profile"])
    return f"batch-1 per-node overhead share {prof}; 1 vs 2 threads: {threads}"


def _serve(d: dict) -> str:
    cells = {(c["model"], c["batch"], c["clients"], c["where"]): c for c in d["cells"]}
    out = []
    for where in ("in-process", "http", "grpc"):
        one = cells.get(("class_cat_py", 1, 1, where))
        many = cells.get(("class_cat_py", 8, 8, where))
        if one and many:
            out.append(
                f"{where} p50 {one['p50_ms']:.1f} ms (b1, 1 client), "
                f"{many['samples_per_s']:.0f} samples/s (b8, 8 clients)"
            )
    return "class_cat served vs in-process: " + "; ".join(out)


def _safety_costs(d: dict) -> str:
    h, o, f = d["sha256"], d["open"], d["finite"]
    return (
        f"sha256 full {h['full']['sha256_ms']:.1f} ms, class {h['class_cat']['sha256_ms']:.1f} ms; opening a "
        f"Detector verified {o['verified_vs_verify_hash_false']:.2f}x verify_hash=False; NaN/Inf check "
        f"{1000 * f['batch_1']['check_ms']:.1f} us (b1), {1000 * f['batch_32']['check_ms']:.1f} us (b32)"
    )


def _figures(stem: str, d: dict) -> str:
    kinds: list[tuple[Callable[[dict], bool], Callable[[dict], str]]] = [
        (lambda d: "graphs" in d and "env" in d, _bench),
        (lambda d: d.get("benchmark") == "edge_latency", _edge_latency),
        (lambda d: d.get("benchmark") == "serve", _serve),
        (lambda d: "sha256" in d and "finite" in d, _safety_costs),
        (lambda d: "modes" in d and "flop_ratio" in d, _class_efficiency),
        (lambda d: d.get("benchmark") == "coding_generator", _coding_generator),
        (lambda d: "class_graphs" in d and "runs" in d, _export_time),
        (lambda d: d.get("benchmark") == "input_pipeline", _input_pipeline),
        (lambda d: d.get("benchmark") == "train_step", _train_step),
        (lambda d: "oracle_compute_saved" in d, _exit_guard),
        (lambda d: "fit_images" in d and "rows" in d, _reject_rule),
        (lambda d: "chosen" in d and "runs" in d, _int8_calibration),
        (lambda d: "summary" in d and "profile" in d, _profile),
        (lambda d: bool(d) and all(isinstance(v, dict) and "wall_median_ms" in v for v in d.values()),
         _profile_graphs_list),
    ]  # fmt: skip
    for matches, figures in kinds:
        if matches(d):
            return figures(d)
    return f"see `benchmarks/results/{stem}.md` (no summary rule in benchmarks/results_table.py)"


# -- the machine ------------------------------------------------------------------------------------------


def _machine(stem: str, d: dict) -> Row:
    env = d.get("env") or {}
    rec = RECOVERED.get(stem, {})
    date = env.get("timestamp_utc") or d.get("date_utc") or d.get("when") or rec.get("date")
    cpu = env.get("cpu") or d.get("device_name") or rec.get("cpu")
    isa = env.get("cpu_isa") or rec.get("isa")
    threads = env.get("threads") or d.get("threads") or rec.get("threads")
    command = d.get("command") or _get(d, "runs", "no_verify", "command") or rec.get("command")
    notes = tuple(rec.get("notes", "").split()) if not env.get("cpu_isa") else ()
    return Row(
        stem=stem,
        figures="",
        date=str(date)[:10] if date else NOT_RECORDED,
        cpu=str(cpu) if cpu else NOT_RECORDED,
        isa=str(isa) if isa else NOT_RECORDED,
        threads=str(threads) if threads else NOT_RECORDED,
        command=str(command) if command else NOT_RECORDED,
        notes=notes,
    )


def rows(results: Path = RESULTS) -> list[Row]:
    out = []
    for path in sorted(results.glob("*.json")):
        d = json.loads(path.read_text())
        row = _machine(path.stem, d if isinstance(d, dict) else {})
        row.figures = _figures(path.stem, d if isinstance(d, dict) else {})
        row.page = path.with_suffix(".md").name if path.with_suffix(".md").is_file() else path.name
        out.append(row)
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(table: list[Row]) -> str:
    used = [k for k in SOURCES if any(k in r.notes for r in table)]
    mark = {k: chr(ord("a") + i) for i, k in enumerate(used)}
    lines = [
        "# Results",
        "",
        "Every committed benchmark result, one row each, with the machine it was measured on. Generated by",
        "`python benchmarks/results_table.py` from `benchmarks/results/*.json`; do not edit by hand. Each",
        "result's own page (`benchmarks/results/NAME.md`) has the full figures and, where kept, the History",
        "of what was tried. How to run the benchmarks: [benchmarks.md](benchmarks.md).",
        "",
        "Timings depend on the machine: compare rows only where CPU, ISA and threads match. Accuracy and",
        "compute (FLOPs) figures do not depend on it.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for r in table:
        refs = " ".join(f"({mark[n]})" for n in r.notes if n in mark) or "the file"
        cells = [f"[{r.stem}](../benchmarks/results/{r.page})", r.figures, r.date, r.cpu, r.isa, r.threads]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + f" | `{_cell(r.command)}` | {refs} |")
    if used:
        lines += ["", "Sources of machine facts the result file does not record:", ""]
        lines += [f"- ({mark[k]}) {SOURCES[k]}" for k in used]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="only check that docs/results.md is up to date")
    p.add_argument("--out", type=Path, default=PAGE)
    args = p.parse_args(argv)
    text = render(rows())
    if args.check:
        if not args.out.is_file() or args.out.read_text() != text:
            print(f"{args.out} is out of date: run python benchmarks/results_table.py", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
