"""Input pipeline images/s (decode + augment, the trainer's own code) vs the model's training step.

Measures, on real CIFAR-10 JPEGs from ../shared, what `codedresnext train` does per micro-batch
before the forward pass (train/pipeline.BatchMaker): in-memory arrays (augment only) and an
ImageFolder tree streamed from disk (decode + augment), crop + flip alone and with RandAugment,
in the main process (batched) and in N DataLoader workers; the per-sample torchvision RandAugment
the batched ops replaced; and the cifar10 preset's training step (train_step.make_step). It then
projects an H100-class GPU's training rate from the step's FLOPs (counted with
torch.utils.flop_counter) and says whether the pipeline would keep up. Writes
benchmarks/results/input_pipeline.{json,md}.

    python benchmarks/input_pipeline.py                   # this CPU
    python benchmarks/input_pipeline.py --device cuda     # augmentation and step on a GPU as well
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import cpu_model, make_step  # noqa: E402

from codedresnext import data  # noqa: E402
from codedresnext._io import write_json, write_text  # noqa: E402
from codedresnext.model import create_model  # noqa: E402
from codedresnext.train.augment import crop_flip  # noqa: E402
from codedresnext.train.pipeline import Augment, BatchMaker, MicroBatchSampler, loader  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SHARED = Path(os.environ.get("CODEDRESNEXT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
# H100 SXM dense BF16 tensor-core peak (NVIDIA datasheet: 989 TFLOP/s; 1,979 is with sparsity)
H100_BF16_FLOPS = 989e12
# fractions of that peak a training step reaches: the low end suits this network (grouped 3x3
# convolutions with 11-44 channels per group, 32x32 inputs), the high end dense large-batch CNNs
MFU_RANGE = (0.10, 0.40)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_maker(maker: BatchMaker, n: int, batch: int, seconds: float, device: torch.device) -> dict:
    """Main process: median seconds per micro-batch made by `maker` (a warm-up batch first)."""
    sampler = MicroBatchSampler(n, batch_size=batch, micro_batches=1, micros=[0], seed=0, start=0, stop=10**6)
    it = iter(sampler)
    maker[next(it)]
    times, t_end = [], time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(times) < 3:
        key = next(it)
        _sync(device)
        t = time.perf_counter()
        maker[key]
        _sync(device)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"images_per_s": batch / med, "median_s_per_batch": med, "batches": len(times)}


def time_workers(maker: BatchMaker, n: int, batch: int, workers: int, batches: int) -> dict:
    """N DataLoader workers: images/s over `batches` micro-batches after the first arrives."""
    sampler = MicroBatchSampler(
        n, batch_size=batch, micro_batches=1, micros=[0], seed=0, start=0, stop=batches + 1
    )
    it = loader(maker, sampler, workers, pin=False)
    next(it)  # workers started and warm
    t = time.perf_counter()
    for _ in it:
        pass
    dt = time.perf_counter() - t
    return {"images_per_s": batches * batch / dt, "seconds": dt, "batches": batches}


def per_sample_torchvision(images: np.ndarray, ra: tuple[int, int], batch: int, repeats: int) -> dict:
    """The replaced implementation: torchvision v2.RandAugment called once per sample, then crop+flip."""
    from torchvision.transforms import v2

    op = v2.RandAugment(num_ops=ra[0], magnitude=ra[1])
    times = []
    for r in range(repeats):
        x = torch.from_numpy(images[r * batch : (r + 1) * batch]).permute(0, 3, 1, 2)
        t = time.perf_counter()
        crop_flip(torch.stack([op(im) for im in x]).permute(0, 2, 3, 1))
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"images_per_s": batch / med, "median_s_per_batch": med, "batches": repeats}


def train_step_rate(preset: str, batch: int, device: torch.device, steps: int, bf16: bool) -> dict:
    """The model's training step (forward, coding loss, backward, SGD) and its FLOPs per image."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = create_model(preset).to(device).train().to(memory_format=torch.channels_last)
    model.p_drop = 0.1
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    s = model.cfg.input_size
    x = torch.randn(batch, 3, s, s, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, model.cfg.num_classes, (batch,), device=device)
    step = make_step(model, opt, x, y, mu=6.0, bf16=bf16)
    with FlopCounterMode(display=False) as fc:
        step()
    flops = fc.get_total_flops() / batch
    step()
    times = []
    for _ in range(steps):
        _sync(device)
        t = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {
        "images_per_s": batch / med,
        "median_s_per_step": med,
        "steps": steps,
        "train_flops_per_image": flops,
    }


def measure(args: argparse.Namespace, tree: Path) -> dict:
    arrays = data.load_dataset(tree, "train")
    folder = data.open_dataset(tree, "train", stream=True)
    ra = tuple(args.randaugment)
    augs = {
        "crop+flip": Augment(crop="pad"),
        f"RandAugment{ra}+crop+flip": Augment(crop="pad", randaugment=ra),
    }
    cpu = torch.device("cpu")
    rows = []
    for aug_name, aug in augs.items():
        for src_name, ds in (("in-memory", arrays), ("stream (decode)", folder)):
            r = time_maker(BatchMaker(ds, aug, seed=0), len(ds), args.batch, args.seconds, cpu)
            rows.append({"source": src_name, "augment": aug_name, "where": "main process, CPU", **r})
            for w in args.workers:
                r = time_workers(BatchMaker(ds, aug, seed=0), len(ds), args.batch, w, args.worker_batches)
                where = f"{w} worker{'s' if w > 1 else ''}, CPU"
                rows.append({"source": src_name, "augment": aug_name, "where": where, **r})
        if args.device.type == "cuda":
            maker = BatchMaker(arrays, aug, seed=0, device=args.device)
            r = time_maker(maker, len(arrays), args.batch, args.seconds, args.device)
            rows.append(
                {"source": "in-memory", "augment": aug_name, "where": f"main process, {args.device}", **r}
            )
    ra_maker = BatchMaker(arrays, augs[f"RandAugment{ra}+crop+flip"], seed=0)
    big = time_maker(ra_maker, len(arrays), args.big_batch, args.seconds, cpu)
    where = "main process, CPU"
    rows.append({"source": "in-memory", "augment": f"RandAugment{ra}+crop+flip, micro-batch {args.big_batch}",
                 "where": where, **big})  # fmt: skip
    rows.append({
        "source": "in-memory", "augment": f"RandAugment{ra}+crop+flip, per sample (replaced)",
        "where": "main process, CPU", **per_sample_torchvision(arrays.images, ra, 64, 3),
    })  # fmt: skip
    steps = {"cpu": train_step_rate(args.preset, args.step_batch, cpu, args.steps, bf16=False)}
    if args.device.type == "cuda":
        steps[str(args.device)] = train_step_rate(
            args.preset, args.gpu_batch, args.device, args.steps, bf16=True
        )
    return {"pipeline": rows, "train_step": steps}


def projection(res: dict, args: argparse.Namespace) -> dict:
    """H100-class training images/s from FLOPs, the CPU cores the RandAugment pipeline would need."""
    flops = res["train_step"]["cpu"]["train_flops_per_image"]
    lo, hi = (H100_BF16_FLOPS * m / flops for m in MFU_RANGE)
    ra_main = next(
        r
        for r in res["pipeline"]
        if r["source"] == "in-memory"
        and r["augment"].startswith("RandAug")
        and r["where"] == "main process, CPU"
    )
    per_core = ra_main["images_per_s"]  # one process, one thread
    out = {
        "gpu": "H100 SXM, dense BF16 peak 989 TFLOP/s",
        "mfu_range": MFU_RANGE,
        "train_flops_per_image": flops,
        "gpu_images_per_s": [lo, hi],
        "randaugment_images_per_s_per_cpu_core": per_core,
        "cpu_cores_needed": [lo / per_core, hi / per_core],
        "host_cores_typical": args.host_cores,
    }
    out["cpu_pipeline_bottleneck"] = out["cpu_cores_needed"][0] > args.host_cores
    gpu = [
        r
        for r in res["pipeline"]
        if r["where"].endswith(str(args.device)) and r["augment"].startswith("RandAug")
    ]
    if gpu:
        out["gpu_augment_images_per_s"] = gpu[0]["images_per_s"]
        measured = res["train_step"][str(args.device)]["images_per_s"]
        out["gpu_train_images_per_s_measured"] = measured
        out["gpu_augment_bottleneck"] = gpu[0]["images_per_s"] < measured
    return out


def markdown(r: dict) -> str:
    p = r["projection"]
    lines = [
        f"# Input pipeline vs training step ({r['preset']})",
        "",
        f"{r['device_name']}, {r['cpus']} CPUs visible, torch {r['torch']}; {r['images']} real CIFAR-10 "
        f"JPEGs (32x32); micro-batch {r['batch']}; load average {r['load_average_before']:.2f} -> "
        f"{r['load_average_after']:.2f}. Each rate is one process with one thread (the workers: their "
        "own); on a shared machine compare the ratios within one run, the absolute rates are lower "
        "bounds for a free core.",
        "",
        "| source | augmentation | where | images/s |",
        "|---|---|---|---:|",
    ]
    for row in r["pipeline"]:
        lines.append(f"| {row['source']} | {row['augment']} | {row['where']} | {row['images_per_s']:,.0f} |")
    lines += ["", "| training step | images/s | ms/step | train GFLOP/image |", "|---|---:|---:|---:|"]
    for dev, s in r["train_step"].items():
        lines.append(
            f"| {r['preset']} on {dev} | {s['images_per_s']:,.1f} | {1000 * s['median_s_per_step']:.0f} | "
            f"{s['train_flops_per_image'] / 1e9:.2f} |"
        )
    lo, hi = p["gpu_images_per_s"]
    c_lo, c_hi = p["cpu_cores_needed"]
    cores = p["host_cores_typical"]
    if c_hi <= cores:
        verdict = (
            f"fit in {cores} host cores over the whole range: the CPU pipeline would not be the bottleneck"
        )
    elif c_lo > cores:
        verdict = f"exceed {cores} host cores: in workers the CPU pipeline would be the bottleneck"
    else:
        verdict = (
            f"fit in {cores} host cores at the low end but not at the high end: there the CPU workers "
            "would be the bottleneck"
        )
    lines += [
        "",
        f"**H100 projection.** A training step costs {p['train_flops_per_image'] / 1e9:.2f} GFLOP per image "
        f"(forward + backward, counted by torch.utils.flop_counter on the real step). At "
        f"{MFU_RANGE[0]:.0%}-{MFU_RANGE[1]:.0%} of the H100's dense BF16 peak (989 TFLOP/s) that is "
        f"{lo:,.0f}-{hi:,.0f} images/s. Batched RandAugment + crop + flip makes "
        f"{p['randaugment_images_per_s_per_cpu_core']:,.0f} images/s per CPU core here (micro-batch "
        f"{r['batch']}), so DataLoader workers would need {c_lo:.0f}-{c_hi:.0f} cores: these {verdict}. "
        "With `--workers 0` the same batched ops run on the GPU itself (torchvision v2 kernels on CUDA "
        "tensors, parameters drawn on the CPU), which this CPU-only run cannot time; "
        "`--device cuda` measures it.",
    ]
    if "gpu_augment_images_per_s" in p:
        lines.append(
            f"Measured on {r['device']}: augmentation on the GPU "
            f"{p['gpu_augment_images_per_s']:,.0f} images/s vs training "
            f"{p['gpu_train_images_per_s_measured']:,.0f} images/s."
        )
    lines += ["", f"Command: `{r['command']}` ({r['when']})", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="cifar10")
    ap.add_argument("--data", type=Path, default=SHARED / "datasets" / "cifar10-jpeg.tar.gz")
    ap.add_argument("--images-per-class", type=int, default=100, help="JPEGs per class in the test tree")
    ap.add_argument("--batch", type=int, default=128, help="micro-batch of the pipeline")
    ap.add_argument("--big-batch", type=int, default=512, help="a larger micro-batch, RandAugment in memory")
    ap.add_argument("--seconds", type=float, default=3.0, help="per main-process measurement")
    ap.add_argument("--workers", type=int, nargs="*", default=[1], help="DataLoader worker counts to time")
    ap.add_argument("--worker-batches", type=int, default=8)
    ap.add_argument("--randaugment", type=int, nargs=2, default=(3, 4), metavar=("OPS", "MAG"))
    ap.add_argument("--step-batch", type=int, default=32, help="CPU training-step batch")
    ap.add_argument("--gpu-batch", type=int, default=512, help="GPU training-step batch")
    ap.add_argument("--steps", type=int, default=5, help="timed training steps")
    ap.add_argument("--host-cores", type=int, default=16, help="CPU cores per GPU assumed for an H100 host")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the main process")
    ap.add_argument("--device", type=torch.device, default=torch.device("cpu"))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device here")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("CODEDRESNEXT_CACHE", str(Path(tmp) / "cache"))
        tree = data.write_subset(args.data, Path(tmp) / "tree", train_per_class=args.images_per_class,
                                 test_per_class=1)  # fmt: skip
        res = measure(args, tree)
    res.update(
        benchmark="input_pipeline",
        command="python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        preset=args.preset,
        batch=args.batch,
        images=10 * args.images_per_class,
        device=str(args.device),
        device_name=cpu_model()
        + (f" + {torch.cuda.get_device_name(args.device)}" if args.device.type == "cuda" else ""),
        cpus=os.cpu_count(),
        threads=args.threads,
        torch=str(torch.__version__),
        python=platform.python_version(),
        load_average_before=load_before,
        load_average_after=os.getloadavg()[0],
        when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    res["projection"] = projection(res, args)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "input_pipeline.json", res)
    write_text(args.out / "input_pipeline.md", markdown(res))
    print(markdown(res))
    return res


if __name__ == "__main__":
    main()
