"""benchmarks/gpu_suite.py tests itself on the CPU (--device cpu --quick): every stage runs with tiny
sizes and the JSON says what ran, what was skipped and why; --device cuda without a GPU fails clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.py"


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SUITE), *args], cwd=ROOT, capture_output=True, text=True, timeout=1800, **kw
    )


def test_quick_cpu_suite_runs_every_stage(tmp_path, cifar10_tgz):
    pytest.importorskip("torch")
    r = _run(["--device", "cpu", "--quick", "--out", str(tmp_path), "--data", str(cifar10_tgz)])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rep = json.loads((tmp_path / "gpu_suite.json").read_text())
    st = rep["stages"]
    assert list(st) == ["tests", "train_step", "train_e2e", "inference", "int8"]
    assert all(s["status"] == "ok" for s in st.values()), {k: s.get("error") for k, s in st.items()}
    t = st["tests"]["result"]
    assert t["passed"] == 3 and t["failure"] == t["error"] == 0  # resume is deselected in --quick
    assert {x["name"] for x in t["tests"] if x["outcome"] == "skipped"} == {
        "test_inference_parity_on_device[cuda-graph]"
    }
    assert all("CUDA" in x["reason"] for x in t["tests"] if x["outcome"] == "skipped")
    steps = st["train_step"]["result"]["batches"]
    assert set(steps) == {"8", "16"} and all(v["ratio_coded_over_control"] > 0 for v in steps.values())
    e2e = st["train_e2e"]["result"]
    assert e2e["images_per_s"] > 0 and e2e["randaugment"] == [3, 4] and e2e["batch"] == 16
    assert e2e["fraction_of_model_step_rate"] > 0  # compared with stage 2 at the same batch
    runs = st["inference"]["result"]["runs"]
    assert runs["torch"]["status"] == "ok" and runs["ort"]["status"] == "ok"
    assert runs["torch"]["by_batch"]["4"]["class_speedup_median"] > 0
    assert runs["trt"] == {"status": "skipped", "reason": "TensorRT needs a CUDA GPU"}
    assert runs["torch_no_cuda_graph"]["status"] == "skipped"
    bench = json.loads((tmp_path / "gpu_bench_torch.json").read_text())
    assert {g["kind"] for g in bench["graphs"]} >= {"full", "class", "masked", "peer-torch"}
    assert all(g["backend_info"]["mode"] == "onnx" for g in bench["graphs"] if g["kind"] != "peer-torch")
    assert rep["env"]["libraries"]["torch"] and "gpus" in rep["env"] and rep["env"]["cpu_count"]
    i8 = st["int8"]["result"]["runs"]
    assert i8["trt"] == {"status": "skipped", "reason": "TensorRT needs a CUDA GPU"}
    ratios = i8["ort_cpu"]["ratios"]["int8"]
    assert ratios["full"]["precision"].startswith("int8") and ratios["full"]["ratio_vs_fp32_full"] > 0
    assert ratios["class"]["fastest"].startswith("class_") and ratios["class"]["ratio_vs_fp32_full"] > 0
    # the fp32, fp16 and both INT8 forms were timed side by side
    bench8 = json.loads((tmp_path / "gpu_bench_int8_ort_cpu.json").read_text())
    assert {g["precision"] for g in bench8["graphs"]} >= {"fp32", "fp16", "int8", "int8-cpu"}
    md = (tmp_path / "gpu_suite.md").read_text()
    assert "| inference | ok |" in md and "class vs full" in md
    assert (tmp_path / "gpu_train_step_b8.json").is_file()


def test_cuda_without_a_gpu_fails_clearly(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    r = _run(["--out", str(tmp_path)], env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode == 2 and "sees no CUDA GPU" in r.stderr and "--device cpu --quick" in r.stderr
    assert not (tmp_path / "gpu_suite.json").exists()
