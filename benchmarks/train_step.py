"""Training-step time of Coded ResNeXt vs the plain ResNeXt control, same preset and batch, one run.

A step is what the trainer does per batch: forward with targets (coded: branch energies, coding
loss, dropSubNN masks), cross-entropy + mu * coding loss, backward, SGD Nesterov update. The two
models alternate step by step (ABBA order after a warm-up), so machine load drifts hit both
equally; the result is the ratio of medians. Writes benchmarks/results/train_step.{json,md}.

    python benchmarks/train_step.py                       # cifar10, batch 32, CPU
    python benchmarks/train_step.py --device cuda --bf16  # GPU, bf16 autocast as in training
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from codedresnext._io import write_json, write_text
from codedresnext.model import count_parameters, create_model
from codedresnext.runtime.bench.environment import cpu_model

RESULTS = Path(__file__).resolve().parent / "results"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(model, opt, x, y, *, mu: float, bf16: bool):
    """One training step as in codedresnext.train.loop (without data augmentation)."""

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            o = model(x, targets=y)
            loss = F.cross_entropy(o.logits.float(), y)
            if o.coding_loss:
                loss = loss + mu * torch.stack(o.coding_loss).sum()
        loss.backward()
        opt.step()

    return step


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="cifar10")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=30, help="timed steps per model")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per model first")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (as the trainer on CUDA)")
    ap.add_argument("--p-drop", type=float, default=0.1)
    ap.add_argument("--mu", type=float, default=6.0)
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for train_step.json/.md")
    ap.add_argument("--name", default="train_step", help="file stem of the results")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    models = {"coded": create_model(args.preset), "control": create_model(args.preset, control=True)}
    size = models["coded"].cfg.input_size
    x = torch.randn(args.batch, 3, size, size, device=device)
    y = torch.randint(0, models["coded"].cfg.num_classes, (args.batch,), device=device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    steps = {}
    for name, m in models.items():
        m.p_drop = args.p_drop
        m.to(device).train()
        if args.channels_last:
            m.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
        steps[name] = make_step(m, opt, x, y, mu=args.mu, bf16=args.bf16)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    for _ in range(args.warmup):
        for name in models:
            steps[name]()
    _sync(device)
    times: dict[str, list[float]] = {n: [] for n in models}
    order = list(models)
    for r in range(args.repeats):
        for name in order if r % 2 == 0 else order[::-1]:  # ABBA: neither model always goes first
            _sync(device)
            t = time.perf_counter()
            steps[name]()
            _sync(device)
            times[name].append(time.perf_counter() - t)
    med = {n: statistics.median(v) for n, v in times.items()}
    q = {n: statistics.quantiles(v, n=10) if len(v) > 1 else [v[0]] * 9 for n, v in times.items()}
    ratio = med["coded"] / med["control"]
    res = {
        "benchmark": "train_step",
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "preset": args.preset,
        "batch": args.batch,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "bf16": args.bf16,
        "channels_last": args.channels_last,
        "p_drop": args.p_drop,
        "mu": args.mu,
        "threads": torch.get_num_threads(),
        "warmup": args.warmup,
        "repeats": args.repeats,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "parameters": {n: count_parameters(m) for n, m in models.items()},
        "median_s": med,
        "p10_s": {n: v[0] for n, v in q.items()},
        "p90_s": {n: v[-1] for n, v in q.items()},
        "samples_per_s": {n: args.batch / t for n, t in med.items()},
        "ratio_coded_over_control": ratio,
        "goal": "coded <= 1.15 x control (CPU, cifar10)",
        "meets_goal": ratio <= 1.15,
        "times_s": times,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / f"{args.name}.json", res)
    write_text(args.out / f"{args.name}.md", _markdown(res))
    print(_markdown(res))
    return res


def _markdown(r: dict) -> str:
    ms = {n: 1000 * t for n, t in r["median_s"].items()}
    lines = [
        f"# Training step: coded vs control ({r['preset']}, batch {r['batch']})",
        "",
        f"Device: {r['device']} ({r['device_name']}), {r['threads']} threads, bf16 {r['bf16']}, "
        f"channels_last {r['channels_last']}; torch {r['torch']}; {r['warmup']} warm-up + {r['repeats']} "
        f"timed steps per model, interleaved; load average {r['load_average_before']} -> "
        f"{r['load_average_after']}.",
        "",
        "| model | parameters | median ms/step | p10 ms | p90 ms | samples/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for n in ("coded", "control"):
        lines.append(
            f"| {n} | {r['parameters'][n]:,} | {ms[n]:.1f} | {1000 * r['p10_s'][n]:.1f} | "
            f"{1000 * r['p90_s'][n]:.1f} | {r['samples_per_s'][n]:.1f} |"
        )
    verdict = "meets" if r["meets_goal"] else "misses"
    lines += [
        "",
        f"**Ratio coded / control: {r['ratio_coded_over_control']:.3f}** ({verdict} the goal: {r['goal']}).",
        "",
        f"Command: `{r['command']}` ({r['when']})",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
