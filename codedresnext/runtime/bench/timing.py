"""Interleaved timing of inference calls (trtexec vocabulary): latency percentiles and samples/s.

Each runner gets `warmup` seconds, then `duration` seconds split into `rounds` slices taken
round-robin over the runners (the order shuffled every round), so a background load hits all of
them alike; comparisons use medians. Throughput counts samples (trtexec's qps counts batches).
A runner over several backends times concurrent streams (trtexec's --streams): one call runs one
batch on every stream at once, its latency is that wave's, and throughput counts every stream's samples.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backends import Backend


@dataclass
class Runner:
    """One thing to time: `make(batch)` returns the zero-argument call measured at that batch."""

    name: str
    kind: str
    params: int | None
    flops: float | None
    make: Callable[[int], Callable[[], Any]]
    info: dict = field(default_factory=dict)
    peak_memory_mib: float | None = None
    classes: list[str] = field(default_factory=list)
    source: tuple[str, str, dict] | None = None  # (backend, path, options) for the memory probe
    precision: str | None = None
    streams: int = 1  # concurrent backends; each call runs one batch on every one
    backends: list[Backend] = field(default_factory=list)  # closed by the benchmark when it is done
    pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        for be in self.backends:
            be.close()
        if self.pool is not None:
            self.pool.shutdown()


def backend_runner(*backends: Backend, **fields: Any) -> Runner:
    """A Runner over loaded backends, fed seeded random inputs (timing does not depend on values).
    Several backends are streams called at once from a thread pool (ONNX Runtime releases the GIL
    while a session runs, so the streams run in parallel on the cores their threads get)."""
    for be in backends:
        be.infer(be.random_feed(1))  # first call outside the timing (lazy initialisation)
    pool = ThreadPoolExecutor(len(backends), thread_name_prefix="stream") if len(backends) > 1 else None

    def make(batch: int) -> Callable[[], Any]:
        feeds = [be.random_feed(batch) for be in backends]
        if pool is None:
            return lambda: backends[0].infer(feeds[0])

        def wave() -> None:
            for f in [pool.submit(be.infer, x) for be, x in zip(backends, feeds)]:
                f.result()

        return wave

    info = {**backends[0].info(), "streams": len(backends)} if pool else backends[0].info()
    return Runner(make=make, info=info, streams=len(backends), backends=list(backends), pool=pool, **fields)


def latency_stats(lat_s: list[float], batch: int, streams: int = 1) -> dict:
    """Per-call latencies (s) -> {batch, iterations, throughput_sps, latency_ms: min..p99}; a call
    of `streams` concurrent streams completes streams x batch samples."""
    a = np.asarray(lat_s) * 1e3
    return {
        "batch": batch,
        **({"streams": streams} if streams > 1 else {}),
        "iterations": int(len(a)),
        "throughput_sps": float(streams * batch * len(a) / (a.sum() / 1e3)) if len(a) else 0.0,
        "latency_ms": {
            "min": float(a.min()),
            "mean": float(a.mean()),
            "median": float(np.median(a)),
            "p90": float(np.percentile(a, 90)),
            "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)),
        },
    }


def _warm(call: Callable[[], Any], seconds: float) -> None:
    t_end = time.perf_counter() + seconds
    call()
    while time.perf_counter() < t_end:
        call()


def _timed_slice(call: Callable[[], Any], acc: list[float], seconds: float, at_least: int) -> None:
    t_end = time.perf_counter() + seconds
    n = 0
    while True:
        t0 = time.perf_counter()
        call()
        t1 = time.perf_counter()
        acc.append(t1 - t0)
        n += 1
        if t1 >= t_end and n >= at_least:
            break


def measure(
    runners: list[Runner],
    batches: list[int],
    *,
    warmup: float,
    duration: float,
    rounds: int = 5,
    min_iterations: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, list[dict]]:
    """Interleaved timing; returns {runner name: [stats per batch]}. Each runner runs at least
    `duration` seconds and `min_iterations` calls per batch size (split over the rounds)."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    results: dict[str, list[dict]] = {r.name: [] for r in runners}
    bar = tqdm(total=len(batches) * len(runners) * (rounds + 1), desc="bench", disable=not progress)
    per_slice = -(-min_iterations // rounds)  # ceil
    for b in batches:
        calls = [r.make(b) for r in runners]
        lat: list[list[float]] = [[] for _ in runners]
        for call in calls:
            _warm(call, warmup)
            bar.update()
        for _ in range(rounds):
            for i in rng.permutation(len(runners)):
                _timed_slice(calls[i], lat[i], duration / rounds, per_slice)
                bar.update()
        for r, acc in zip(runners, lat):
            results[r.name].append(latency_stats(acc, b, r.streams))
    bar.close()
    return results
