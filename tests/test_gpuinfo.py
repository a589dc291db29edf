"""What reports record about the machine: GPUs and driver from nvidia-smi (faked here: no GPU), library
versions from package metadata, and the GPU line of the bench Markdown."""

from __future__ import annotations

import os
import stat

from codedresnext.runtime.bench import gpuinfo
from codedresnext.runtime.bench.report import _gpu_lines

SMI = (
    "0, NVIDIA H200, 580.159.03, 143771, 9.0, 00000000:19:00.0\n1, NVIDIA H200, 580.159.03, 143771, 9.0, x\n"
)


def _fake_smi(tmp_path, monkeypatch, text: str) -> None:
    exe = tmp_path / "nvidia-smi"
    exe.write_text("#!/bin/sh\ncat <<'EOF'\n" + text + "EOF\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")


def test_gpus_and_driver_from_nvidia_smi(tmp_path, monkeypatch):
    _fake_smi(tmp_path, monkeypatch, SMI)
    env = gpuinfo.describe("ort")
    assert [g["name"] for g in env["gpus"]] == ["NVIDIA H200", "NVIDIA H200"]
    assert env["gpus"][0] == {
        "index": "0",
        "name": "NVIDIA H200",
        "driver": "580.159.03",
        "memory_mib": "143771",
        "compute_capability": "9.0",
        "pci_bus_id": "00000000:19:00.0",
    }
    assert env["driver"] == "580.159.03"
    assert env["libraries"]["onnx"] and env["libraries"]["numpy"]
    assert "onnxruntime_providers" in env
    line = _gpu_lines({**env, "backend": "ort"})[0]
    assert line.startswith("GPU: NVIDIA H200 (sm 9.0), NVIDIA H200 (sm 9.0); driver 580.159.03; torch ")


def test_no_driver_means_no_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi anywhere
    env = gpuinfo.describe(None)
    assert env["gpus"] == [] and env["driver"] is None and _gpu_lines(env) == []


def test_torch_cuda_is_reported_for_the_torch_backend():
    import torch

    env = gpuinfo.describe("torch")
    tc = env["torch_cuda"]
    assert tc["torch"] == str(torch.__version__) and tc["cuda_build"] == torch.version.cuda
    if torch.cuda.is_available():
        assert [d["name"] for d in tc["devices"]] == [
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        ]
    else:
        assert tc["devices"] == [] and "cudnn" not in tc
