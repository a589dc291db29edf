"""codedresnext bench: latency/throughput of every graph of an export, measured interleaved."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CodedResNeXtError
from ..runtime.backends import BACKENDS, DEFAULT_BACKEND, backend_info
from ..runtime.backends.onnxrt.session import DEFAULT_PROVIDER, PROVIDERS
from ..runtime.bench.options import BenchOptions
from ..runtime.bench.report import markdown, write_report
from ..runtime.bench.run import run_bench


def _ints(s: str) -> list[int]:
    try:
        v = [int(x) for x in s.split(",") if x]
    except ValueError as e:
        raise argparse.ArgumentTypeError("expected comma-separated integers, e.g. 1,8,32") from e
    if not v or min(v) < 1:
        raise argparse.ArgumentTypeError("batch sizes must be >= 1")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark an export (trtexec vocabulary; JSON, Markdown, PNG)",
        description="Throughput is in samples/s; trtexec's qps counts batches (qps x batch = "
        "samples/s). Graphs are timed interleaved in one run; ratios use medians.",
    )
    p.add_argument("directory", help="export directory (manifest.json)")
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=sorted(BACKENDS), help="inference backend")
    p.add_argument("--provider", default=DEFAULT_PROVIDER, choices=sorted(PROVIDERS), help="ONNX Runtime EP")
    p.add_argument(
        "--device",
        default="cpu",
        help="torch backend: cpu, cuda or cuda:N (the ONNX graphs run through PyTorch)",
    )
    p.add_argument("--cuda-graph", action="store_true", help="torch backend on CUDA: replay CUDA graphs")
    p.add_argument("--batch", type=_ints, default=[1, 8, 32], help="batch sizes (default 1,8,32)")
    p.add_argument("--warmup", type=float, default=0.2, help="warm-up seconds per graph and batch")
    p.add_argument("--duration", type=float, default=3.0, help="timed seconds per graph and batch")
    p.add_argument("--rounds", type=int, default=5, help="interleaving slices per graph and batch")
    p.add_argument(
        "--min-iterations", type=int, default=10, help="at least this many calls per graph and batch"
    )
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    p.add_argument(
        "--streams",
        type=int,
        default=1,
        help="ort: concurrent sessions per graph, threads/N intra-op threads each (trtexec's --streams); "
        "throughput counts every stream's samples",
    )
    p.add_argument(
        "--spinning",
        action="store_true",
        help="ONNX Runtime intra-op threads busy-wait between ops while a run is in flight (faster on "
        "cores you own; off: a shared CPU stays usable)",
    )
    p.add_argument(
        "--graphs",
        default=None,
        help="comma-separated graph names (default: full, masked, "
        "subset, multi-exit and the first --max-class-graphs class graphs)",
    )
    p.add_argument("--max-class-graphs", type=int, default=10)
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch eager peer")
    p.add_argument("--no-memory", action="store_true", help="skip the per-graph peak memory probe")
    p.add_argument("--data", default=None, help="held-out images for the early-exit measurement")
    p.add_argument("--early-exit-limit", type=int, default=1000, help="evaluation images for early exit")
    p.add_argument("--json", default=None, help="JSON path (default OUT/bench.json)")
    p.add_argument("--out", default=None, help="report folder (default DIR/bench)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def _backend_options(args: argparse.Namespace) -> dict:
    if not backend_info(args.backend).devices:
        if args.device != "cpu" or args.cuda_graph:
            raise CodedResNeXtError(
                "--device/--cuda-graph are for --backend torch (ONNX Runtime: --provider)"
            )
        return {}
    return {"device": args.device, "cuda_graph": args.cuda_graph}


def run(args: argparse.Namespace) -> int:
    report = run_bench(
        args.directory,
        BenchOptions(
            backend=args.backend,
            batches=args.batch,
            warmup=args.warmup,
            duration=args.duration,
            graphs=args.graphs.split(",") if args.graphs else None,
            threads=args.threads,
            provider=args.provider,
            torch_peer=not args.no_torch,
            data=args.data,
            rounds=args.rounds,
            max_class_graphs=args.max_class_graphs,
            early_exit_limit=args.early_exit_limit,
            min_iterations=args.min_iterations,
            memory=not args.no_memory,
            spinning=args.spinning,
            streams=args.streams,
            progress=not args.quiet,
            backend_options=_backend_options(args),
        ),
    )
    paths = write_report(report, args.out or Path(args.directory) / "bench", json_path=args.json)
    print(markdown(report))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
