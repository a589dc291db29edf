"""codedresnext bench: latency/throughput of every graph of an export, measured interleaved.

Timing details (warm-up, rounds, minimum iterations, streams, spinning, the PyTorch peer, CUDA
graphs) are BenchOptions fields of the Python API and options of benchmarks/bench_graphs.py."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CodedResNeXtError
from ..runtime.backends import BACKENDS, DEFAULT_BACKEND, backend_info
from ..runtime.backends.onnxrt.session import DEFAULT_PROVIDER, PROVIDERS
from ..runtime.bench.options import BenchOptions
from ..runtime.bench.report import markdown, write_report
from ..runtime.bench.run import run_bench
from . import _args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark an export (trtexec vocabulary; JSON, Markdown, PNG)",
        description="Throughput is in samples/s; trtexec's qps counts batches (qps x batch = "
        "samples/s). Graphs are timed interleaved in one run; ratios use medians.",
    )
    p.add_argument("directory", type=_args.export_dir, help="export directory (manifest.json)")
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=sorted(BACKENDS), help="inference backend")
    p.add_argument("--provider", default=DEFAULT_PROVIDER, choices=sorted(PROVIDERS), help="ONNX Runtime EP")
    p.add_argument(
        "--device",
        default="cpu",
        help="torch backend: cpu, cuda or cuda:N (the ONNX graphs run through PyTorch; default cpu)",
    )
    p.add_argument("--batch", type=_args.int_list, default=[1, 8, 32], help="batch sizes (default 1,8,32)")
    p.add_argument(
        "--duration",
        type=_args.positive_float,
        default=BenchOptions.duration,
        help=f"timed seconds per graph and batch, in {BenchOptions.rounds} interleaved rounds "
        f"(default {BenchOptions.duration})",
    )
    p.add_argument(
        "--threads", type=_args.positive_int, default=None, help="intra-op threads (default: all cores)"
    )
    p.add_argument(
        "--graphs",
        type=_args.names,
        default=None,
        metavar="NAME,NAME",
        help=f"graph names (default: full, masked, subset, multi-exit and the first "
        f"{BenchOptions.max_class_graphs} class graphs)",
    )
    p.add_argument(
        "--data", type=_args.dataset, default=None, help="held-out images for the early-exit measurement"
    )
    p.add_argument("--out", default=None, help="report folder: bench.json, .md, .png (default DIR/bench)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not backend_info(args.backend).devices and args.device != "cpu":
        raise CodedResNeXtError("--device is for --backend torch (ONNX Runtime: --provider)")
    report = run_bench(
        args.directory,
        BenchOptions(
            backend=args.backend,
            batches=args.batch,
            warmup=min(BenchOptions.warmup, args.duration / 5),
            duration=args.duration,
            graphs=args.graphs,
            threads=args.threads,
            provider=args.provider,
            data=args.data,
            progress=not args.quiet,
            backend_options={"device": args.device} if backend_info(args.backend).devices else {},
        ),
    )
    paths = write_report(report, args.out or Path(args.directory) / "bench")
    print(markdown(report))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
