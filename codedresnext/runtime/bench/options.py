"""BenchOptions: every `run_bench` setting in one typed place (the CLI builds one; torch-free)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..backends import DEFAULT_BACKEND


@dataclass(frozen=True)
class BenchOptions:
    """How `run_bench` measures an export directory (trtexec vocabulary).

    Which graphs: `graphs` by name, else full, masked, subset, multi-exit and the first
    `max_class_graphs` class graphs. Timing: per graph and batch, `rounds` interleaved rounds of
    `warmup` + `duration` seconds and at least `min_iterations` runs. spinning: ONNX Runtime
    intra-op threads busy-wait between ops while a run is in flight (lower latency on cores the
    process owns; off by default because it steals a shared CPU). streams > 1 (ONNX Runtime only,
    trtexec's --streams): each graph gets `streams` sessions of threads // streams intra-op threads,
    called at once, so that no operator is split across cores. backend_options go to every graph's
    backend (torch: device, cuda_graph; trt: the batch profile, which defaults to (min, max, max)
    of `batches` so that every benchmarked batch is inside it). data: held-out images for the
    early-exit cascade (`early_exit_limit` of them).
    """

    backend: str = DEFAULT_BACKEND
    batches: Sequence[int] = (1, 8, 32)
    warmup: float = 0.2
    duration: float = 3.0
    rounds: int = 5
    min_iterations: int = 10
    graphs: Sequence[str] | None = None
    max_class_graphs: int = 10
    threads: int | None = None
    provider: str = "cpu"
    spinning: bool = False
    streams: int = 1
    backend_options: Mapping | None = None
    torch_peer: bool = True
    memory: bool = True
    data: str | None = None
    early_exit_limit: int = 1000
    progress: bool = True
