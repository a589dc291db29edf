"""Everything a lent GPU should measure, in one command (sized for under 8 minutes on one H100/H200-class
GPU; the total and the 480 s budget are in the report):

1. tests      the `gpu`-marked tests (tests/test_gpu.py): CUDA training steps, CUDA inference parity
              of the torch backend (eager and CUDA graphs) vs ONNX Runtime on real images, resume
              after a kill on CUDA;
2. train_step coded vs control training step, bf16 autocast (on CUDA, as the trainer), batch 128 and
              512 (benchmarks/train_step.py);
3. train_e2e  end-to-end training images/s of the trainer with RandAugment (3, 4) on the cifar10
              preset and real CIFAR-10 (difference of two runs, so data loading and the final
              evaluation cancel), next to the model-only step rate of stage 2;
4. inference  per-class vs full graphs on CUDA: the torch backend with CUDA graphs (and without,
              for the launch-overhead picture), ONNX Runtime's CUDA EP and TensorRT where installed
              (skipped, with the reason, otherwise);
5. int8       INT8 twins calibrated on real training images: TensorRT INT8 engines from the Q/DQ
              graphs (full and one class graph, beside fp32 and fp16) where TensorRT is installed,
              and ONNX Runtime CPU at batch 32 (fp32, fp16, int8, int8-cpu side by side).
It writes OUT/gpu_suite.json + gpu_suite.md (environment: GPU, driver, torch/CUDA/cuDNN, onnxruntime,
TensorRT versions) and per-stage files OUT/gpu_*.json/.md. A failed stage fails the run (exit 1)
but the other stages still run; a stage that cannot run here says why ("skipped").

On a GPU machine whose image has PyTorch, onnx and onnxruntime but not this project's pins, from the
repository root (no install needed: the script puts the checkout on sys.path; `pip install --no-deps
-e .` works too), with the CIFAR-10 archive at shared/datasets/ in the checkout or passed by --data:
    python benchmarks/gpu_suite.py --out benchmarks/results
CI tests the suite itself on the CPU with tiny sizes (every stage, tiny preset, gpu tests on the CPU):
    python benchmarks/gpu_suite.py --device cpu --quick            # writes runs/gpu_suite_quick/
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # the checkout, not an installed copy
BUDGET_S = 480


@dataclasses.dataclass(frozen=True)
class Sizes:
    preset: str
    step_batches: tuple[int, ...]
    step_repeats: int
    e2e_batch: int
    e2e_steps: tuple[int, int]  # two run lengths; images/s from their difference
    e2e_eval: int
    bench_batches: tuple[int, ...]
    bench_warmup: float
    bench_duration: float
    class_graphs: int
    int8_calibration: int  # training images the INT8 twins are calibrated on
    int8_eval: int  # test images for the INT8-vs-fp32 agreement recorded in the manifest


FULL = Sizes("cifar10", (128, 512), 20, 512, (3, 8), 256, (1, 32, 256), 0.3, 1.0, 10, 256, 500)
QUICK = Sizes("tiny", (8, 16), 3, 16, (1, 3), 20, (1, 4), 0.01, 0.05, 2, 20, 20)


class Skip(Exception):
    """The stage cannot run here; the message says why (and how to make it run)."""


@dataclasses.dataclass
class Ctx:
    device: str
    quick: bool
    out: Path
    data: Path
    shared: Path
    work: Path
    sizes: Sizes
    results: dict = dataclasses.field(default_factory=dict)


def default_shared() -> Path:
    env = os.environ.get("CODEDRESNEXT_SHARED")
    for p in ([Path(env)] if env else []) + [ROOT / "shared", ROOT.parent / "shared"]:
        if (p / "datasets" / "cifar10-jpeg.tar.gz").is_file():
            return p
    return Path(env) if env else ROOT.parent / "shared"


# -- stages -----------------------------------------------------------------------------------------
def stage_tests(ctx: Ctx) -> dict:
    if importlib.util.find_spec("pytest") is None:
        raise Skip("pytest is not installed: pip install pytest")
    xml = ctx.work / "gpu_tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/test_gpu.py", "-q", "-rs"]
    cmd += ["-p", "no:cacheprovider", f"--junitxml={xml}"]
    if ctx.quick:  # CPU resume is already bit-exact-tested by test_train; keeps the self-test short
        cmd += ["-k", "not resume"]
    env = {**os.environ, "CODEDRESNEXT_TEST_DEVICE": ctx.device, "CODEDRESNEXT_SHARED": str(ctx.shared)}
    env["CODEDRESNEXT_CACHE"] = str(ctx.work / "cache")
    if ctx.quick:
        env["OMP_NUM_THREADS"] = "1"
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    tests = []
    if xml.is_file():
        for tc in ET.parse(xml).getroot().iter("testcase"):
            outcome, reason = "passed", None
            for kind in ("failure", "error", "skipped"):
                el = tc.find(kind)
                if el is not None:
                    outcome, reason = kind, (el.get("message") or "")[:300]
            tests.append({"name": tc.get("name"), "outcome": outcome, "seconds": float(tc.get("time", 0))})
            if reason:
                tests[-1]["reason"] = reason
    counts = {k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failure", "error", "skipped")}
    res = {"command": shlex.join(cmd[1:]), "returncode": r.returncode, **counts, "tests": tests}
    if r.returncode != 0 or not tests:
        raise RuntimeError(f"pytest -m gpu failed (exit {r.returncode}): {(r.stdout + r.stderr)[-1500:]}")
    skipped_on_gpu = [t for t in tests if t["outcome"] == "skipped" and ctx.device.startswith("cuda")]
    if skipped_on_gpu:
        raise RuntimeError(f"gpu tests skipped on a CUDA machine (something is off): {skipped_on_gpu}")
    return res


def stage_train_step(ctx: Ctx) -> dict:
    import train_step  # benchmarks/train_step.py: the interleaved coded vs control step timing

    s, out = ctx.sizes, {}
    for b in s.step_batches:
        argv = ["--preset", s.preset, "--batch", str(b), "--device", ctx.device]
        argv += ["--bf16"] if ctx.device.startswith("cuda") else []  # as the trainer: autocast on CUDA only
        argv += ["--repeats", str(s.step_repeats), "--warmup", "1" if ctx.quick else "3"]
        argv += ["--out", str(ctx.out), "--name", f"gpu_train_step_b{b}"]
        argv += ["--threads", "1"] if ctx.quick else []
        r = train_step.main(argv)
        out[str(b)] = {
            k: r[k] for k in ("median_s", "samples_per_s", "ratio_coded_over_control", "device_name")
        }
    return {"preset": s.preset, "bf16": ctx.device.startswith("cuda"), "batches": out}


def _small_tree(ctx: Ctx) -> Path:
    from codedresnext import data

    dest = ctx.work / "tree"
    if not dest.is_dir():
        data.write_subset(ctx.data, dest, train_per_class=10, test_per_class=2)
    return dest


def stage_train_e2e(ctx: Ctx) -> dict:
    from codedresnext.data import load_dataset
    from codedresnext.train import TrainConfig
    from codedresnext.train.loop import train

    s = ctx.sizes
    if not ctx.data.is_file():
        raise Skip(f"no CIFAR-10 archive at {ctx.data}: pass --data or put it under shared/datasets/")
    source = _small_tree(ctx) if ctx.quick else ctx.data
    os.environ["CODEDRESNEXT_CACHE"] = str(ctx.work / "cache")
    t0 = time.perf_counter()
    load_dataset(str(source), "train")  # decode both splits into the cache once, untimed
    load_dataset(str(source), "test")
    decode_s = time.perf_counter() - t0
    extra = {}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    if "workers" in names:  # the input pipeline's DataLoader workers, where the trainer has them
        extra["workers"] = min(8, os.cpu_count() or 1)
    runs = []
    for n in s.e2e_steps:
        cfg = TrainConfig(
            preset=s.preset, data=str(source), out=str(ctx.work / f"e2e{n}"), max_steps=n,
            batch_size=s.e2e_batch, randaugment=(3, 4), eval_limit=s.e2e_eval, device=ctx.device,
            progress=False, **extra,
        )  # fmt: skip
        t = time.perf_counter()
        train(cfg)
        runs.append({"steps": n, "seconds": time.perf_counter() - t})
    dt = runs[1]["seconds"] - runs[0]["seconds"]
    dn = (s.e2e_steps[1] - s.e2e_steps[0]) * s.e2e_batch
    res = {
        "preset": s.preset,
        "data": str(source),
        "batch": s.e2e_batch,
        "randaugment": [3, 4],
        "runs": runs,
        "decode_s": decode_s,
        "images_per_s": dn / dt if dt > 0 else None,
        "method": "difference of two runs of different lengths (same data cache, same final evaluation)",
        **extra,
    }
    step = (ctx.results.get("train_step", {}).get("result") or {}).get("batches", {}).get(str(s.e2e_batch))
    if step and res["images_per_s"]:
        model_sps = step["samples_per_s"]["coded"]
        res["model_step_images_per_s"] = model_sps
        res["fraction_of_model_step_rate"] = res["images_per_s"] / model_sps  # << 1: input-bound
    return res


def _bench_run(
    runs: dict, name: str, why_not: str | None, export: Path, out: Path, stem: str, summary, **kw
) -> None:
    """One `run_bench` into runs[name]: skipped (with the reason), failed (one backend failing must
    not hide the others) or ok with `summary(report)`; the report is written as OUT/STEM.*."""
    from codedresnext.runtime.bench.options import BenchOptions
    from codedresnext.runtime.bench.report import write_report
    from codedresnext.runtime.bench.run import run_bench

    if why_not:
        runs[name] = {"status": "skipped", "reason": why_not}
        return
    try:
        rep = run_bench(export, BenchOptions(**kw))
    except Exception as e:
        runs[name] = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
        return
    write_report(rep, out, stem=stem)
    runs[name] = {"status": "ok", **summary(rep)}


def _raise_failed(runs: dict, what: str) -> None:
    failed = {k: v["error"] for k, v in runs.items() if v["status"] == "failed"}
    if failed:
        raise RuntimeError(f"{what} failed: {failed}")


def _int8_summary(rep: dict) -> dict:
    return {"ratios": rep["ratios"], "notes": rep.get("notes", [])}


def stage_inference(ctx: Ctx) -> dict:
    from codedresnext.export import ExportOptions, export_graphs
    from codedresnext.model_config import build_config

    s = ctx.sizes
    classes = list(build_config(s.preset).class_names[: s.class_graphs])
    export = ctx.work / "export"
    export_graphs(
        ExportOptions(out=export, preset=s.preset, classes=classes, masked=True, verify=False, progress=False)
    )
    cuda = ctx.device.startswith("cuda")
    common = dict(
        batches=list(s.bench_batches), warmup=s.bench_warmup, duration=s.bench_duration,
        rounds=3 if ctx.quick else 5, min_iterations=2 if ctx.quick else 10, memory=False, progress=False,
        threads=1 if ctx.quick else None,
    )  # fmt: skip
    runs: dict[str, Any] = {}

    def one(name: str, why_not: str | None, **kw) -> None:
        _bench_run(runs, name, why_not, export, ctx.out, f"gpu_bench_{name}", _speedups, **common, **kw)

    every = ["full", *(f"class_{c}" for c in classes), f"masked_{classes[0]}"]
    few = every[:3] + every[-1:]  # engine builds are slow: TensorRT and ORT time a subset
    one(
        "torch",
        None,
        backend="torch",
        graphs=every,
        backend_options={"device": ctx.device, "cuda_graph": cuda},
    )
    one(
        "torch_no_cuda_graph",
        None if cuda else "CUDA graphs exist only on CUDA; the torch run above already ran without them",
        backend="torch", graphs=["full", f"class_{classes[0]}"], torch_peer=False,
        backend_options={"device": ctx.device, "cuda_graph": False},
    )  # fmt: skip
    ort_kw = dict(backend="ort", provider="cuda" if cuda else "cpu", graphs=few, torch_peer=False)
    one("ort", _ort_reason(cuda), **ort_kw)
    one("trt", _trt_reason(cuda), backend="trt", graphs=few, torch_peer=False)
    _raise_failed(runs, "inference runs")
    return {"preset": s.preset, "class_graphs": classes, "runs": runs}


def stage_int8(ctx: Ctx) -> dict:
    """INT8 twins (calibrated on real training images) of the full graph and a few class graphs,
    timed beside fp32 and fp16: TensorRT builds the Q/DQ `int8` graphs as INT8 engines (the edge
    deployment); ONNX Runtime times the `int8-cpu` form on this machine's CPU."""
    from codedresnext.export import ExportOptions, export_graphs
    from codedresnext.export.int8 import Int8Options
    from codedresnext.model_config import build_config

    s = ctx.sizes
    classes = list(build_config(s.preset).class_names[: min(2, s.class_graphs)])
    export = ctx.work / "export_int8"
    calib = _small_tree(ctx) if ctx.quick else ctx.data
    int8 = Int8Options(calibration=str(calib), images=s.int8_calibration, eval_images=s.int8_eval)
    export_graphs(
        ExportOptions(
            out=export, preset=s.preset, classes=classes, fp16=True, int8=int8, verify=False, progress=False
        )
    )
    cuda = ctx.device.startswith("cuda")
    common = dict(
        warmup=s.bench_warmup, duration=s.bench_duration, rounds=3 if ctx.quick else 5,
        min_iterations=2 if ctx.quick else 10, memory=False, progress=False, torch_peer=False,
    )  # fmt: skip
    # engine builds are slow: TensorRT gets the full graph and one class graph in fp32, fp16, int8
    trt_graphs = [f"{g}{p}" for g in ("full", f"class_{classes[0]}") for p in ("", "_fp16", "_int8")]
    runs: dict[str, Any] = {}
    plans = {
        "trt": (_trt_reason(cuda), dict(backend="trt", graphs=trt_graphs, batches=list(s.bench_batches))),
        "ort_cpu": (  # issue 9's figure is at batch 32 (--quick: its largest batch)
            _ort_reason(False),
            dict(
                backend="ort",
                provider="cpu",
                threads=1 if ctx.quick else None,
                batches=[min(32, max(s.bench_batches))],
            ),
        ),
    }
    for name, (why_not, kw) in plans.items():
        _bench_run(
            runs, name, why_not, export, ctx.out, f"gpu_bench_int8_{name}", _int8_summary, **common, **kw
        )
    _raise_failed(runs, "INT8 runs")
    return {
        "preset": s.preset,
        "class_graphs": classes,
        "calibration_images": s.int8_calibration,
        "runs": runs,
    }


def _ort_reason(cuda: bool) -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return "onnxruntime is not installed: pip install onnxruntime-gpu"
    if cuda and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return (
            f"onnxruntime {onnxruntime.__version__} here has no CUDAExecutionProvider "
            f"({onnxruntime.get_available_providers()}): pip install onnxruntime-gpu"
        )
    return None


def _trt_reason(cuda: bool) -> str | None:
    if not cuda:
        return "TensorRT needs a CUDA GPU"
    for mod, pkg in (("tensorrt", "tensorrt"), ("polygraphy", "polygraphy")):
        if importlib.util.find_spec(mod) is None:
            return f"{pkg} is not installed (pip install {pkg}, or JetPack's TensorRT)"
    return None


def _speedups(rep: dict) -> dict:
    """Per batch: full median latency and per-class speedups (median over class graphs) vs FLOP ratio."""
    full = next(g for g in rep["graphs"] if g["kind"] == "full")
    cls = [g for g in rep["graphs"] if g["kind"] == "class"]
    by_batch = {}
    for i, r in enumerate(full["results"]):
        sp = sorted(g["results"][i]["speedup_vs_full"] for g in cls)
        by_batch[str(r["batch"])] = {
            "full_median_ms": r["latency_ms"]["median"],
            "full_samples_per_s": r["throughput_sps"],
            "class_speedup_median": sp[len(sp) // 2] if sp else None,
            "class_speedup_min": sp[0] if sp else None,
        }
    fr = [g["flop_ratio_vs_full"] for g in cls if g.get("flop_ratio_vs_full")]
    return {"flop_ratio": sum(fr) / len(fr) if fr else None, "by_batch": by_batch, "ratios": rep["ratios"]}


STAGES = {
    "tests": stage_tests,
    "train_step": stage_train_step,
    "train_e2e": stage_train_e2e,
    "inference": stage_inference,
    "int8": stage_int8,
}


# -- report -----------------------------------------------------------------------------------------
def environment(device: str) -> dict:
    from codedresnext.runtime.bench.environment import cpu_model
    from codedresnext.runtime.bench.gpuinfo import describe

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "timestamp_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": device,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "git_commit": commit,
        **describe("torch"),
    }


def markdown(rep: dict) -> str:
    env = rep["env"]
    lib, tc = env.get("libraries", {}), env.get("torch_cuda") or {}
    gpus = ", ".join(g.get("name", "?") for g in env.get("gpus", [])) or "none"
    lines = [
        f"# GPU suite ({'quick, ' if rep['quick'] else ''}device {rep['device']})",
        "",
        f"GPU: {gpus}; driver {env.get('driver')}; torch {lib.get('torch')} (CUDA {tc.get('cuda_build')}, "
        f"cuDNN {tc.get('cudnn')}); onnxruntime {lib.get('onnxruntime')}; TensorRT {lib.get('tensorrt')}; "
        f"CPU {env['cpu']} x{env['cpu_count']}; commit {env.get('git_commit')}; {env['timestamp_utc']}.",
        f"Total {rep['total_s']:.0f} s (budget {BUDGET_S} s). Command: `{rep['command']}`",
        "",
        "| stage | status | seconds | result |",
        "|---|---|---:|---|",
    ]
    for name, st in rep["stages"].items():
        lines.append(f"| {name} | {st['status']} | {st['seconds']:.1f} | {_summary(name, st)} |")
    return "\n".join(lines) + "\n"


def _summary(name: str, st: dict) -> str:
    if st["status"] != "ok":
        return (st.get("reason") or st.get("error") or "").replace("|", "/").splitlines()[0][:200]
    r = st["result"]
    if name == "tests":
        return f"{r['passed']} passed, {r['skipped']} skipped"
    if name == "train_step":
        return "; ".join(
            f"batch {b}: coded/control {v['ratio_coded_over_control']:.3f}, coded "
            f"{v['samples_per_s']['coded']:.0f} img/s" for b, v in r["batches"].items()
        )  # fmt: skip
    if name == "train_e2e":
        frac = r.get("fraction_of_model_step_rate")
        tail = f" ({frac:.2f} of the model-only step rate)" if frac else ""
        return f"{r['images_per_s']:.0f} img/s at batch {r['batch']} with RandAugment{tail}"
    parts = []
    for run, v in r["runs"].items():
        if v["status"] != "ok":
            parts.append(f"{run}: {v['status']}")
            continue
        if name == "int8":
            i8 = v["ratios"].get("int8", {})
            parts.append(
                f"{run}: "
                + ", ".join(
                    f"{k} {x['fastest']} {x['ratio_vs_fp32_full']:.2f}x fp32 full" for k, x in i8.items()
                )
            )
            continue
        sp = ", ".join(f"b{b} {x['class_speedup_median']:.2f}x" for b, x in v["by_batch"].items())
        parts.append(f"{run}: class vs full {sp} (FLOP ratio {v['flop_ratio']:.2f})")
    return "; ".join(parts)


def run_stage(name: str, ctx: Ctx) -> dict:
    t0 = time.perf_counter()
    try:
        st = {"status": "ok", "result": STAGES[name](ctx)}
    except Skip as e:
        st = {"status": "skipped", "reason": str(e)}
    except ImportError as e:
        st = {"status": "skipped", "reason": f"missing package: {e} (pip install {e.name or '...'})"}
    except Exception as e:
        st = {
            "status": "failed",
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc()[-4000:],
        }
    st["seconds"] = time.perf_counter() - t0
    ctx.results[name] = st
    print(f"[gpu_suite] {name}: {st['status']} in {st['seconds']:.1f} s", flush=True)
    return st


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (the CI self-test)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    ap.add_argument("--data", type=Path, default=None, help="cifar10-jpeg.tar.gz (default: shared/datasets/)")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {list(STAGES)}")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("gpu_suite: PyTorch is needed (pip install torch)", file=sys.stderr)
        return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            f"gpu_suite: --device {args.device} but torch {torch.__version__} (CUDA build "
            f"{torch.version.cuda}) sees no CUDA GPU; on a CPU machine run "
            "`python benchmarks/gpu_suite.py --device cpu --quick`",
            file=sys.stderr,
        )
        return 2
    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - set(STAGES)
    if unknown:
        print(f"gpu_suite: unknown stages {sorted(unknown)}; choose from {list(STAGES)}", file=sys.stderr)
        return 2
    out = args.out or (ROOT / "runs" / "gpu_suite_quick" if args.quick else ROOT / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    shared = default_shared()
    os.environ.setdefault("CODEDRESNEXT_SHARED", str(shared))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    data = args.data or shared / "datasets" / "cifar10-jpeg.tar.gz"
    if args.quick:  # the self-test runs on small shared CPUs: one thread, no oversubscription
        torch.set_num_threads(1)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_suite-") as work:
        ctx = Ctx(args.device, args.quick, out, data, shared, Path(work), QUICK if args.quick else FULL)
        for name in stages:
            run_stage(name, ctx)
    from codedresnext._io import write_json, write_text

    rep = {
        "suite": "gpu_suite",
        "device": args.device,
        "quick": args.quick,
        "sizes": dataclasses.asdict(ctx.sizes),
        "command": shlex.join(
            ["python", "benchmarks/gpu_suite.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "env": environment(args.device),
        "stages": ctx.results,
        "total_s": time.perf_counter() - t0,
        "budget_s": BUDGET_S,
    }
    write_json(out / "gpu_suite.json", rep)
    write_text(out / "gpu_suite.md", markdown(rep))
    print(markdown(rep))
    return 1 if any(s["status"] == "failed" for s in ctx.results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
