"""What a benchmark ran on: library versions, CPU, threads, load (recorded in every report)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

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


def environment(threads: int, backend: str, provider: str) -> dict[str, Any]:
    import onnx

    from .. import __version__

    env: dict[str, Any] = {
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnx": onnx.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
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
    from .gpuinfo import describe  # GPUs, driver, torch/CUDA/cuDNN/TensorRT versions

    env.update(describe(backend))
    return env
