"""What the safety checks cost (docs/safety.md): graph verification and the NaN/Inf input check.

On a fresh export (random weights, `--classes cat`; the preset sets the graph sizes) it measures,
as medians over repeated runs on this machine:
  1. sha256 of the full graph and of a class graph (ms, MB/s): the part verify_hash=False skips;
  2. opening a Detector: verified (containment + metadata + sha256), verify_hash=False, and a bare
     ONNX Runtime session on the file (no manifest at all), with the ratios;
  3. the non-finite check per float batch (1 and 32), alone and as a share of a class detector's
     score() call (check_finite=True vs False).
Writes benchmarks/results/safety_costs.json and .md.

    .venv/bin/python benchmarks/safety_costs.py [--preset cifar10] [--reps 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from codedresnext._io import sha256_file, write_json, write_text
from codedresnext.runtime import Detector, open_backend
from codedresnext.runtime.backends.base import check_finite
from codedresnext.runtime.bench.environment import environment

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def median_ms(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm-up (imports, first allocation)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def hashing(d: Path, reps: int) -> dict:
    out = {}
    for name in ("full", "class_cat"):
        path = d / f"{name}.onnx"
        ms = median_ms(lambda p=path: sha256_file(p), reps)
        mb = path.stat().st_size / 1e6
        out[name] = {
            "bytes": path.stat().st_size,
            "sha256_ms": round(ms, 3),
            "mb_per_s": round(mb / ms * 1e3),
        }
    return out


def opening(d: Path, reps: int) -> dict:
    def det(verify: bool) -> None:
        Detector(d, "class_cat", threads=1, verify_hash=verify).close()

    verified = median_ms(lambda: det(True), reps)
    unhashed = median_ms(lambda: det(False), reps)
    bare = median_ms(lambda: open_backend("ort", d / "class_cat.onnx", threads=1).close(), reps)
    return {
        "verified_ms": round(verified, 2),
        "verify_hash_false_ms": round(unhashed, 2),
        "bare_session_ms": round(bare, 2),
        "verified_vs_verify_hash_false": round(verified / unhashed, 3),
        "verified_vs_bare_session": round(verified / bare, 3),
    }


def finite_check(d: Path, reps: int) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    with (
        Detector(d, "class_cat", threads=1) as on,
        Detector(d, "class_cat", threads=1, check_finite=False) as off,
    ):
        for b in (1, 32):
            x = rng.standard_normal((b, 3, 32, 32)).astype(np.float32)
            alone = median_ms(lambda x=x: check_finite(x, "images"), reps * 20)
            t_on = median_ms(lambda x=x: on.score(x), reps * 4)
            t_off = median_ms(lambda x=x: off.score(x), reps * 4)
            out[f"batch_{b}"] = {
                "check_ms": round(alone, 4),
                "score_ms_checked": round(t_on, 3),
                "score_ms_unchecked": round(t_off, 3),
                "check_share_of_score": round(alone / t_off, 4),
            }
    return out


def markdown(r: dict) -> str:
    h, o, f = r["sha256"], r["open"], r["finite"]
    lines = [
        "# Safety costs",
        "",
        f"Machine: {r['cpu']} ({r['isa']}), {r['cores']} cores shared with other jobs; preset "
        f"`{r['preset']}`; medians of {r['reps']} runs (the finite check: x20). `{r['command']}`",
        "",
        "| graph | bytes | sha256 (ms) | MB/s |",
        "|---|---:|---:|---:|",
        *[f"| {k} | {v['bytes']:,} | {v['sha256_ms']} | {v['mb_per_s']} |" for k, v in h.items()],
        "",
        "| Detector open (class_cat) | ms |",
        "|---|---:|",
        f"| verified (default) | {o['verified_ms']} |",
        f"| verify_hash=False | {o['verify_hash_false_ms']} |",
        f"| bare ONNX Runtime session | {o['bare_session_ms']} |",
        f"| ratio verified / verify_hash=False | {o['verified_vs_verify_hash_false']} |",
        f"| ratio verified / bare session | {o['verified_vs_bare_session']} |",
        "",
        "| batch | NaN/Inf check (ms) | score checked (ms) | score unchecked (ms) | check / score |",
        "|---:|---:|---:|---:|---:|",
        *[
            f"| {k.split('_')[1]} | {v['check_ms']} | {v['score_ms_checked']} | {v['score_ms_unchecked']} | "
            f"{v['check_share_of_score']} |"
            for k, v in f.items()
        ],
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cifar10")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    from codedresnext import export

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "export"
        opts = export.ExportOptions(out=d, preset=args.preset, classes=["cat"], progress=False, verify=False)
        export.export_graphs(opts)
        env = environment(1, "ort", "cpu")  # the Detectors here run one ONNX Runtime thread
        r = {
            "env": env,
            "cpu": env["cpu"],
            "isa": env["cpu_isa"],
            "cores": os.cpu_count(),
            "preset": args.preset,
            "reps": args.reps,
            "command": "python benchmarks/safety_costs.py " + " ".join(sys.argv[1:]),
            "sha256": hashing(d, args.reps),
            "open": opening(d, args.reps),
            "finite": finite_check(d, args.reps),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "safety_costs.json", r)
    write_text(args.out / "safety_costs.md", markdown(r))
    print(markdown(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
