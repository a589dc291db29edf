"""Median wall time of generate_scheme for the paper's CIFAR cases (issue #2: each under 30 s).

Run:  .venv/bin/python benchmarks/coding_generator.py [--repeats 5]
Writes benchmarks/results/coding_generator.json and .md (atomically). Each run also checks that the
paper's H_min is reached with equal column sums, and exits 1 if not.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from codedresnext._io import write_json, write_text
from codedresnext.coding_search import generate_scheme

CASES = [(10, 10, 5, 4), (10, 10, 3, 4), (100, 20, 8, 8), (100, 20, 4, 4)]  # K, N, N_act, paper H_min
LIMIT_S = 30.0
OUT = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per case (median reported)")
    ap.add_argument("--out", type=Path, default=OUT, help="folder for the .json and .md results")
    args = ap.parse_args(argv)
    rows, ok = [], True
    for k, n, n_act, paper_h in CASES:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            s = generate_scheme(k, n, n_act)
            times.append(time.perf_counter() - t0)
        p = s.properties()
        good = p["H_min"] >= paper_h and p["column_sum_min"] == p["column_sum_max"]
        ok &= good and max(times) < LIMIT_S
        rows.append(
            {
                "K": k,
                "N": n,
                "N_act": n_act,
                "paper_H_min": paper_h,
                "H_min": p["H_min"],
                "column_sum_min": p["column_sum_min"],
                "column_sum_max": p["column_sum_max"],
                "median_s": statistics.median(times),
                "max_s": max(times),
                "repeats": args.repeats,
                "ok": good,
            }
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result = {
        "benchmark": "coding_generator",
        "command": "python benchmarks/coding_generator.py --repeats " + str(args.repeats),
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_avg_1min": load,
        },
        "limit_s": LIMIT_S,
        "cases": rows,
        "all_ok": ok,
    }
    write_json(args.out / "coding_generator.json", result)
    lines = [
        "# Coding-scheme generator timing",
        "",
        f"`{result['command']}` on {result['date_utc']} ({platform.platform()}, "
        f"{os.cpu_count()} CPUs, 1-min load average {load if load is None else round(load, 2)}).",
        "",
        "| K | N | N_act | paper H_min | H_min | column sums | median s | max s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['K']} | {r['N']} | {r['N_act']} | {r['paper_H_min']} | {r['H_min']} | "
            f"{r['column_sum_min']}..{r['column_sum_max']} | {r['median_s']:.3f} | {r['max_s']:.3f} |"
        )
    lines += [
        "",
        f"Goal: paper H_min, equal column sums, each under {LIMIT_S:.0f} s: {'met' if ok else 'NOT met'}.",
        "",
    ]
    write_text(args.out / "coding_generator.md", "\n".join(lines))
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
