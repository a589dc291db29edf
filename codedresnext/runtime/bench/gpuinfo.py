"""What a benchmark ran on: GPUs (name, driver, memory, compute capability) and library versions.

Why here and not in bench: the GPU suite and `bench` both record it. No heavy import is forced:
versions come from package metadata; torch / tensorrt / onnxruntime are only asked about their
CUDA builds when the benchmark already uses them (or they are loaded), so an ONNX-Runtime-only
device never imports torch for a report.
"""

from __future__ import annotations

import importlib.metadata as md
import shutil
import subprocess
import sys
from typing import Any

from ..backends import backend_info

# import name -> pip distributions that provide it (first installed one wins)
DISTRIBUTIONS = {
    "torch": ("torch",),
    "torchvision": ("torchvision",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime-gpu", "onnxruntime"),
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11"),
    "polygraphy": ("polygraphy",),
    "numpy": ("numpy",),
}


def package_versions() -> dict[str, str | None]:
    """Installed versions by metadata (None where absent); imports nothing."""
    out: dict[str, str | None] = {}
    for name, dists in DISTRIBUTIONS.items():
        out[name] = None
        for d in dists:
            try:
                out[name] = md.version(d)
                out[f"{name}_distribution"] = d
                break
            except md.PackageNotFoundError:
                continue
    return out


def nvidia_smi() -> list[dict[str, Any]]:
    """One dict per GPU nvidia-smi lists (its own order: PCI bus, not CUDA's); [] without a driver."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    fields = ["index", "name", "driver_version", "memory.total", "compute_cap", "pci.bus_id"]
    try:
        r = subprocess.run(
            [exe, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (subprocess.SubprocessError, OSError) as e:
        return [{"error": f"nvidia-smi failed: {e}"}]
    gpus = []
    for line in r.stdout.strip().splitlines():
        vals = [v.strip() for v in line.split(",")]
        if len(vals) == len(fields):
            g = dict(zip(("index", "name", "driver", "memory_mib", "compute_capability", "pci_bus_id"), vals))
            gpus.append(g)
    return gpus


def torch_cuda(force: bool = False) -> dict[str, Any] | None:
    """torch's CUDA build and visible devices; None unless torch is loaded (or `force`)."""
    if "torch" not in sys.modules and not force:
        return None
    try:
        import torch
    except ImportError:
        return None
    d: dict[str, Any] = {"torch": str(torch.__version__), "cuda_build": torch.version.cuda}
    if torch.cuda.is_available():
        d["cudnn"] = torch.backends.cudnn.version()
        d["devices"] = [
            {
                "index": i,
                "name": torch.cuda.get_device_name(i),
                "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(i))),
                "memory_mib": round(torch.cuda.get_device_properties(i).total_memory / 2**20),
            }
            for i in range(torch.cuda.device_count())
        ]
    else:
        d["devices"] = []
    return d


def describe(backend: str | None = None) -> dict[str, Any]:
    """Versions + GPUs for a report; `backend` ('ort', 'trt', 'torch') says which library is in use."""
    env: dict[str, Any] = {"libraries": package_versions(), "gpus": nvidia_smi()}
    drivers = sorted({g["driver"] for g in env["gpus"] if "driver" in g})
    env["driver"] = drivers[0] if len(drivers) == 1 else (drivers or None)
    library = backend_info(backend).library if backend else None  # the library in use
    tc = torch_cuda(force=library == "torch")
    if tc is not None:
        env["torch_cuda"] = tc
    if library == "tensorrt" or "tensorrt" in sys.modules:
        try:
            import tensorrt

            env["libraries"]["tensorrt"] = tensorrt.__version__  # also apt installs (JetPack)
        except ImportError:
            pass
    if library == "onnxruntime" or "onnxruntime" in sys.modules:
        try:
            import onnxruntime

            env["onnxruntime_providers"] = onnxruntime.get_available_providers()
            from onnxruntime.capi import build_and_package_info as build  # GPU builds name their CUDA

            env["onnxruntime_cuda"] = getattr(build, "cuda_version", None)
            env["onnxruntime_cudnn"] = getattr(build, "cudnn_version", None)
        except ImportError:
            pass
    return env
