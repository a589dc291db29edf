"""TensorRT details, through the fake module: fp32 engines are strict FP32 (TF32 cleared), a timing
cache TensorRT cannot read is replaced (with a warning), and the fake's enum values are NvInfer.h's."""

from __future__ import annotations

import json

import fake_tensorrt as fake
import onnx
import pytest
from test_trt_plan import _conv_graph

from codedresnext.runtime.backends.trt.engine import build_engine

# NvInfer.h, enum class BuilderFlag: NVIDIA/TensorRT branch release/10.16 (TensorRT 10.16.0) and
# main (TensorRT 11.1.0, where the weak-typing flags FP16 / INT8 / BF16 are gone).
NVINFER_BUILDER_FLAGS = {
    "10.16.0": {"FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5,
                "TF32": 6, "BF16": 17},
    "11.1.0": {"DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "TF32": 6},
}  # fmt: skip


@pytest.fixture(params=sorted(NVINFER_BUILDER_FLAGS))
def trt(request, monkeypatch):
    fake.install_gpu(monkeypatch, ["8.7"])
    return fake.install(monkeypatch, request.param)


def _calls(st, name):
    return [a for n, a in st.calls if n == name]


def test_fake_builder_flags_are_nvinfer_values(trt):
    import tensorrt

    want = NVINFER_BUILDER_FLAGS[trt.version]
    assert {f.name: f.value for f in tensorrt.BuilderFlag} == want


def test_fp32_engines_clear_tf32_and_record_it(trt, tmp_path):
    onnx.save(_conv_graph(False), tmp_path / "g.onnx")
    plan, info = build_engine(
        tmp_path / "g.onnx", precision="fp32", batch=(1, 2, 4), cache_dir=tmp_path / "c"
    )
    assert _calls(trt, "IBuilderConfig.clear_flag") == [{"flag": "TF32"}]
    assert info["tf32"] is False
    assert json.loads(plan.with_suffix(".json").read_text())["tf32"] is False


def test_fp16_builds_keep_tensorrt_default_tf32(monkeypatch, tmp_path):
    fake.install_gpu(monkeypatch, ["8.7"])
    st = fake.install(monkeypatch, "10.16.0")
    onnx.save(_conv_graph(False), tmp_path / "g.onnx")
    _, info = build_engine(tmp_path / "g.onnx", precision="fp16", batch=(1, 2, 4), cache_dir=tmp_path / "c")
    assert _calls(st, "IBuilderConfig.clear_flag") == [] and info["tf32"] is True


def test_unreadable_timing_cache_is_replaced_with_a_warning(trt, tmp_path):
    onnx.save(_conv_graph(False), tmp_path / "g.onnx")
    cache = tmp_path / "c"
    cache.mkdir()
    foreign = cache / f"timing-sm87-trt{trt.version}.cache"
    blob = b"\x00not a timing cache"
    foreign.write_bytes(blob)
    with pytest.warns(UserWarning, match="unreadable; building without it"):
        plan, info = build_engine(tmp_path / "g.onnx", precision="fp32", batch=(1, 2, 4), cache_dir=cache)
    assert plan.is_file() and not info["cached"] and trt.builds == 1
    assert [c["nbytes"] for c in _calls(trt, "IBuilderConfig.create_timing_cache")] == [len(blob), 0]
    assert json.loads(foreign.read_bytes())["entries"] == ["build1"]  # a fresh cache replaced it
