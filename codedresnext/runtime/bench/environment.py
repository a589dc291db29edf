"""What a benchmark ran on: library versions, CPU, threads, load (recorded in every report)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from ... import __version__
from .gpuinfo import describe  # GPUs, driver, torch/CUDA/cuDNN/TensorRT versions

QPS_NOTE = (
    "throughput_sps counts samples per second; trtexec's 'qps' counts batches (queries) per "
    "second, so samples/s = qps x batch"
)


def cpu_model() -> str:
    """The CPU's marketing name, for benchmark reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# CPU flags (Linux /proc/cpuinfo names) that decide which kernels ONNX Runtime can use: NCHWc block
# size (AVX2: 8, AVX-512: 16) and whether INT8 convolutions beat FP32 (they need dot-product
# instructions: VNNI on x86, the dot-product extension on Arm; plain AVX2 lacks them).
_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp")


def cpu_flags() -> list[str]:
    """The flags of _ISA_FLAGS this CPU has (empty where /proc/cpuinfo is unreadable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            have = set(line.split(":", 1)[1].split())
            return [f for f in _ISA_FLAGS if f in have]
    return []


def isa_class(flags: list[str] | None = None) -> str:
    """One word for the ISA a CPU figure holds on: AVX-512+VNNI, AVX-512, AVX2+VNNI, AVX2, Arm+dotprod,
    or other. Results name it beside the CPU model; goals are stated per class."""
    f = set(cpu_flags() if flags is None else flags)
    vnni = bool(f & {"avx512_vnni", "avx_vnni", "amx_int8"})
    if "avx512f" in f:
        return "AVX-512+VNNI" if vnni else "AVX-512"
    if "avx2" in f:
        return "AVX2+VNNI" if vnni else "AVX2"
    if "asimddp" in f:
        return "Arm+dotprod"
    return "other"


def int8_pays(isa: str) -> bool:
    """Whether INT8 convolutions can beat FP32 on this ISA class (dot-product instructions)."""
    return "VNNI" in isa or "dotprod" in isa


def environment(threads: int, backend: str, provider: str) -> dict[str, Any]:
    import onnx

    env: dict[str, Any] = {
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnx": onnx.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_isa": isa_class(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "backend": backend,
        "provider": provider,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "note": QPS_NOTE,
        "codedresnext": __version__,
    }
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    env.update(describe(backend))
    return env
