"""The TensorRT glue end to end without TensorRT, through tests/fake_tensorrt.py (TensorRT 10 and 11
APIs, argument types checked, engines executed by ONNX Runtime on fake device memory): engine build,
TrtBackend on real images, build_directory, bench with its batch profile, Triton export checked
against the engine profiles, and the compute capability of the CUDA device in use."""

from __future__ import annotations

import json
import os
import stat

import fake_tensorrt as fake
import numpy as np
import onnx
import pytest
from test_runtime_graphs import make_export
from test_trt_plan import _conv_graph

from codedresnext import cli
from codedresnext._io import sha256_file
from codedresnext.artifact import save_manifest
from codedresnext.deploy.triton import parse_config, write_repository
from codedresnext.errors import BackendUnavailable, GraphError, ManifestError
from codedresnext.runtime import open_backend
from codedresnext.runtime.backends.trt.engine import TrtBackend, build_directory, build_engine
from codedresnext.runtime.backends.trt.plan import gpu_compute_capability
from codedresnext.runtime.bench.options import BenchOptions
from codedresnext.runtime.bench.run import run_bench

VERSIONS = ["10.3.0", "11.1.0"]


def _graphs(directory) -> list[dict]:
    """The manifest's graph entries as plain JSON (the file format, whatever the manifest API)."""
    import json

    return json.loads((directory / "manifest.json").read_text())["graphs"]


def _hashed(directory, graphs: list[dict]) -> list[dict]:
    """Entries with the sha256 an export records (the runtime verifies every graph it opens)."""
    return [{**g, "sha256": sha256_file(directory / g["file"])} for g in graphs]


@pytest.fixture(params=VERSIONS)
def trt(request, monkeypatch):
    fake.install_gpu(monkeypatch, ["8.7"])
    return fake.install(monkeypatch, request.param)


def _calls(st, name):
    return [a for n, a in st.calls if n == name]


def _images(frames):
    x = (frames.astype(np.float32) / 255 - (0.4914, 0.4822, 0.4465)) / (0.2023, 0.1994, 0.2010)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32)


def test_build_engine_calls_the_api_of_each_major(trt, tmp_path):
    onnx.save(_conv_graph(False), tmp_path / "g.onnx")
    plan, info = build_engine(
        tmp_path / "g.onnx", precision="fp32", batch=(1, 4, 8), cache_dir=tmp_path / "c"
    )
    assert plan.is_file() and not info["cached"] and info["compute_capability"] == "8.7"
    assert info["tensorrt"] == trt.version and info["profile"] == {"min": 1, "opt": 4, "max": 8}
    (net,) = _calls(trt, "Builder.create_network")
    if trt.version.startswith("10"):  # weakly typed fp32: no flags (EXPLICIT_BATCH is implied on 10)
        assert net == {"flags": 0, "strongly_typed": False}
    else:  # STRONGLY_TYPED is bit 0 on TensorRT 11 (bit 1 there would mean PREFER_JIT_PYTHON_PLUGINS)
        assert net == {"flags": 1, "strongly_typed": True}
    (pool,) = _calls(trt, "IBuilderConfig.set_memory_pool_limit")
    assert pool["pool"] is fake.MemoryPoolType.WORKSPACE and pool["pool_size"] == 1024 << 20
    (shape,) = _calls(trt, "IOptimizationProfile.set_shape")
    assert shape == {"input": "images", "min": (1, 3, 16, 16), "opt": (4, 3, 16, 16), "max": (8, 3, 16, 16)}
    assert _calls(trt, "IBuilderConfig.set_flag") == []
    timing = list((tmp_path / "c").glob("timing-sm87-trt*.cache"))
    assert len(timing) == 1 and json.loads(timing[0].read_bytes())["entries"] == ["build1"]
    sidecar = json.loads(plan.with_suffix(".json").read_text())
    assert sidecar["profile"]["max"] == 8 and sidecar["graph"].endswith("g.onnx")
    # cached: no second build; a rebuild reads the timing cache back
    _, again = build_engine(tmp_path / "g.onnx", precision="fp32", batch=(1, 4, 8), cache_dir=tmp_path / "c")
    assert again["cached"] and trt.builds == 1
    build_engine(
        tmp_path / "g.onnx", precision="fp32", batch=(1, 4, 8), cache_dir=tmp_path / "c", rebuild=True
    )
    assert trt.builds == 2 and _calls(trt, "IBuilderConfig.create_timing_cache")[-1]["nbytes"] > 0


def test_fp16_builds_differ_between_tensorrt_10_and_11(monkeypatch, tmp_path):
    fake.install_gpu(monkeypatch)
    onnx.save(_conv_graph(False), tmp_path / "fp32.onnx")
    onnx.save(_conv_graph(True), tmp_path / "fp16.onnx")
    st = fake.install(monkeypatch, "10.3.0")  # JetPack 6: the FP16 flag on the fp32 graph
    build_engine(tmp_path / "fp32.onnx", precision="fp16", cache_dir=tmp_path / "c10")
    assert _calls(st, "IBuilderConfig.set_flag") == [{"flag": "FP16"}]
    assert _calls(st, "Builder.create_network")[0]["strongly_typed"] is False
    build_engine(tmp_path / "fp16.onnx", precision="fp16", cache_dir=tmp_path / "c10")  # typed graph
    assert _calls(st, "Builder.create_network")[1] == {"flags": 2, "strongly_typed": True}
    assert len(_calls(st, "IBuilderConfig.set_flag")) == 1 and st.builds == 2
    st = fake.install(monkeypatch, "11.1.0")
    import tensorrt

    assert not hasattr(tensorrt.BuilderFlag, "FP16")  # removed in 11: our code must never ask for it
    with pytest.raises(GraphError, match="--fp16"):
        build_engine(tmp_path / "fp32.onnx", precision="fp16", cache_dir=tmp_path / "c11")
    build_engine(tmp_path / "fp16.onnx", precision="fp16", cache_dir=tmp_path / "c11")
    assert _calls(st, "IBuilderConfig.set_flag") == [] and st.builds == 1


def test_trt_backend_matches_onnxruntime_on_real_images(trt, tmp_path, real_images):
    d = make_export(tmp_path / "e")
    frames = real_images.images[:8]
    for name, feeds in (("full", {"images": _images(frames)}), ("full_uint8", {"frames": frames})):
        be = TrtBackend().load(d / f"{name}.onnx", batch=(1, 8, 16), cache_dir=tmp_path / "engines")
        assert [s.name for s in be.inputs] == list(feeds) and be.output_names == ["logits"]
        got = be.infer(feeds)
        ref = open_backend("ort", d / f"{name}.onnx", threads=1).infer(feeds)
        np.testing.assert_allclose(got["logits"], ref["logits"], rtol=0, atol=1e-6)
        assert be.info()["profile"][next(iter(feeds))]["max"][0] == 16
        be.infer({k: v[:3] for k, v in feeds.items()})  # smaller batch: buffers are reused
        # a batch outside the profile: set_input_shape returns False, which must not be ignored
        big = {k: np.concatenate([v] * 4) for k, v in feeds.items()}
        with pytest.raises(GraphError, match=r"optimisation profile spans \(1, .*\) \.\. \(16, "):
            be.infer(big)
        assert _calls(trt, "IExecutionContext.set_input_shape")[-1]["shape"][0] == 32
        be.close()
    assert not trt.streams and not trt.memory  # close() freed every device buffer and the stream


def test_a_plan_from_another_tensorrt_is_refused(monkeypatch, tmp_path):
    fake.install_gpu(monkeypatch)
    fake.install(monkeypatch, "10.3.0")
    onnx.save(_conv_graph(False), tmp_path / "g.onnx")
    plan, _ = build_engine(tmp_path / "g.onnx", cache_dir=tmp_path / "c")
    fake.install(monkeypatch, "10.4.0")
    with pytest.raises(GraphError, match="not an engine for this GPU/TensorRT 10.4.0"):
        TrtBackend().load(plan)


def test_build_directory_then_triton_checks_max_batch_against_the_profile(trt, tmp_path):
    d = make_export(tmp_path / "e")
    res = build_directory(d, precision="fp32", batch=(1, 8, 16), progress=False)
    fp32 = [g["name"] for g in _graphs(d) if g.get("precision", "fp32") == "fp32"]
    assert [r["name"] for r in res] == fp32 and trt.builds == len(fp32)
    listing = d / "engines" / "engines-fp32.json"
    assert json.loads(listing.read_text())["graphs"] == res
    repo = tmp_path / "repo"
    args = ["triton", str(d), "--out", str(repo), "--engines", str(listing), "--graphs", "full,class_cat"]
    assert cli.main([*args, "--max-batch-size", "32"]) == 2  # 32 > profile max 16: refused ...
    assert not repo.exists()  # ... before anything is written
    assert cli.main([*args, "--max-batch-size", "16"]) == 0
    cfg = parse_config((repo / "full" / "config.pbtxt").read_text())
    assert cfg["platform"] == "tensorrt_plan" and cfg["max_batch_size"] == 16
    plan = d / res[0]["engine"]
    assert (repo / "full" / "1" / "model.plan").read_bytes() == plan.read_bytes()
    # the library call reads the build record beside the plan when no profiles are passed
    with pytest.raises(GraphError, match=r"exceeds the engine's profile \(batch 1\.\.16\)"):
        write_repository(d, tmp_path / "r2", graphs=["full"], engines={"full": plan}, max_batch_size=64)
    res2 = build_directory(d, precision="fp32", batch=(2, 8, 16), graphs=["full"], progress=False)
    with pytest.raises(GraphError, match="starts at batch 2"):
        write_repository(
            d, tmp_path / "r3", graphs=["full"], engines={"full": d / res2[0]["engine"]}, max_batch_size=16
        )
    stray = tmp_path / "stray.plan"
    stray.write_bytes(b"x")
    with pytest.raises(GraphError, match="no build record"):
        write_repository(d, tmp_path / "r4", graphs=["full"], engines={"full": stray})


def test_build_directory_fp16_on_tensorrt_11_uses_the_fp16_graphs(monkeypatch, tmp_path):
    fake.install_gpu(monkeypatch)
    st = fake.install(monkeypatch, "11.1.0")
    d = tmp_path / "e"
    d.mkdir()
    onnx.save(_conv_graph(False), d / "full.onnx")
    onnx.save(_conv_graph(True), d / "full_fp16.onnx")
    graphs = [
        {"name": "full", "file": "full.onnx", "kind": "full", "precision": "fp32"},
        {"name": "full_fp16", "file": "full_fp16.onnx", "kind": "full", "precision": "fp16"},
    ]
    save_manifest(d, {"graphs": _hashed(d, graphs)})
    (res,) = build_directory(d, precision="fp16", progress=False)
    assert res["name"] == "full" and res["strongly_typed"] and res["builder_flags"] == []
    assert _calls(st, "OnnxParser.parse_from_file")[0]["model"].endswith("full_fp16.onnx")


def test_build_directory_refuses_a_graph_swapped_after_export(monkeypatch, tmp_path):
    """TensorRT builds from verified inputs: a graph replaced after export is refused, naming it."""
    fake.install_gpu(monkeypatch)
    st = fake.install(monkeypatch, "11.1.0")
    d = tmp_path / "e"
    d.mkdir()
    onnx.save(_conv_graph(False), d / "full.onnx")
    save_manifest(d, {"graphs": _hashed(d, [{"name": "full", "file": "full.onnx", "kind": "full"}])})
    onnx.save(_conv_graph(False, seed=3), d / "full.onnx")  # other weights, same shapes
    with pytest.raises(ManifestError, match="graph 'full'.*sha256.*replaced or modified"):
        build_directory(d, precision="fp32", progress=False)
    assert not _calls(st, "OnnxParser.parse_from_file")  # nothing reached the parser


def test_bench_trt_passes_the_batch_profile(trt, tmp_path):
    """`bench --backend trt --batch 1,64` used to build engines for the default profile 1..32 and
    then break on batch 64; the profile now spans the benchmarked batches."""
    from codedresnext.runtime.bench.options import BenchOptions
    from codedresnext.runtime.bench.run import run_bench

    d = make_export(tmp_path / "e")
    rep = run_bench(  # the API: the memory probe runs in a fresh process, where this fake TensorRT is not
        d,
        BenchOptions(
            backend="trt", batches=[1, 64], graphs=["full", "class_cat"], warmup=0, duration=0.01, rounds=1,
            min_iterations=1, memory=False, torch_peer=False, progress=False,
        ),
    )  # fmt: skip
    assert [g["name"] for g in rep["graphs"]] == ["full", "class_cat"]
    for g in rep["graphs"]:
        assert [r["batch"] for r in g["results"]] == [1, 64]
        prof = g["backend_info"]["profile"]["images"]
        assert prof["min"][0] == 1 and prof["max"][0] == 64
    assert rep["env"]["backend"] == "trt" and rep["env"]["libraries"]["tensorrt"] == trt.version
    rep2 = run_bench(
        d,
        BenchOptions(
            backend="trt",
            batches=[2, 4],
            graphs=["full"],
            warmup=0,
            duration=0.01,
            rounds=1,
            min_iterations=1,
            memory=False,
            torch_peer=False,
            progress=False,
            backend_options={"batch": (1, 2, 8)},
        ),
    )
    assert rep2["graphs"][0]["backend_info"]["profile"]["images"]["max"][0] == 8


def _fake_nvidia_smi(tmp_path, monkeypatch, caps):
    """An nvidia-smi on PATH that lists GPUs in its own (PCI) order: what the old code read."""
    exe = tmp_path / "bin" / "nvidia-smi"
    exe.parent.mkdir(exist_ok=True)
    exe.write_text("#!/bin/sh\n" + "".join(f"echo {c}\n" for c in caps))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ['PATH']}")


def test_compute_capability_is_that_of_the_cuda_device_in_use(monkeypatch, tmp_path):
    _fake_nvidia_smi(tmp_path, monkeypatch, ["8.0", "9.0"])
    fake.install_gpu(monkeypatch, ["8.0", "9.0"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu_compute_capability() == "8.0" and gpu_compute_capability(1) == "9.0"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # CUDA's device 0 is the second GPU
    fake.install_gpu(monkeypatch, ["8.0", "9.0"])
    assert gpu_compute_capability() == "9.0"  # nvidia-smi's GPU 0 would say 8.0
    fake.install(monkeypatch, "10.3.0")
    onnx.save(_conv_graph(False), tmp_path / "g.onnx")
    plan, info = build_engine(tmp_path / "g.onnx", cache_dir=tmp_path / "c")
    assert info["compute_capability"] == "9.0" and "-sm90-" in plan.name  # the engine cache key too
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    fake.install_gpu(monkeypatch, ["8.0", "9.0"])
    with pytest.raises(BackendUnavailable, match="0 visible"):
        gpu_compute_capability()
    # no driver library: nvidia-smi is used only when it cannot be ambiguous
    from codedresnext.runtime.backends.trt import plan as trt_plan

    monkeypatch.setattr(trt_plan, "_load_libcuda", lambda: None)
    with pytest.raises(BackendUnavailable, match="lists 2 GPUs"):
        gpu_compute_capability()
    _fake_nvidia_smi(tmp_path, monkeypatch, ["7.5"])
    assert gpu_compute_capability() == "7.5"


def test_the_fake_is_strict(trt, tmp_path):
    """The checks the fake makes can fail (so passing tests above mean something)."""
    import tensorrt as t

    log = t.Logger(t.Logger.WARNING)
    b = t.Builder(log)
    with pytest.raises(TypeError):
        b.create_network("0")
    net = b.create_network(0)
    onnx.save(_conv_graph(False), tmp_path / "g.onnx")
    assert t.OnnxParser(net, log).parse_from_file(str(tmp_path / "g.onnx"))
    cfg = b.create_builder_config()
    with pytest.raises(TypeError):
        cfg.set_flag(0)  # an int is not a BuilderFlag
    with pytest.raises(TypeError):
        cfg.set_memory_pool_limit(0, 1 << 20)
    assert b.build_serialized_network(net, cfg) is None  # dynamic batch but no profile
    p = b.create_optimization_profile()
    with pytest.raises(RuntimeError, match="inconsistent"):
        p.set_shape("images", (8, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))
    p.set_shape("images", (1, 3, 16, 16), (2, 3, 16, 16), (4, 3, 16, 16))
    cfg.add_optimization_profile(p)
    engine = t.Runtime(log).deserialize_cuda_engine(bytes(b.build_serialized_network(net, cfg)))
    ctx = engine.create_execution_context()
    with pytest.raises(TypeError):
        ctx.set_input_shape("images", np.zeros(4))
    assert ctx.set_input_shape("images", (2, 3, 16, 16)) and not ctx.set_input_shape("images", (5, 3, 16, 16))
    with pytest.raises(TypeError):
        ctx.set_tensor_address("images", 1.5)
    assert not ctx.set_tensor_address("images", 12345)  # not an allocation
    assert not ctx.execute_async_v3(0)  # addresses missing, unknown stream
    assert t.Runtime(log).deserialize_cuda_engine(b"garbage") is None
    with pytest.raises(TypeError):
        t.Runtime(log).deserialize_cuda_engine("a path, not bytes")


# -- INT8: the Q/DQ twins (export --int8) on TensorRT 10 (INT8 flag) and 11 (strongly typed) ---------
def _int8_twins(directory, real_images) -> dict:
    """full + class_cat (small conv graphs), each with its int8 (TensorRT) and int8-cpu (ORT) twin,
    quantized by export/quantize.py with the full graph's ranges from real images; a manifest."""
    from codedresnext.export import quantize as Q

    directory.mkdir(parents=True, exist_ok=True)
    x = np.ascontiguousarray(real_images.images[:32, 8:24, 8:24].transpose(0, 3, 1, 2), np.float32) / 255
    models = {"full": _conv_graph(False, seed=0), "class_cat": _conv_graph(False, seed=1)}
    for m in models.values():
        for i, n in enumerate(m.graph.node):
            n.name = f"n{i}"  # quantize names the nodes it quantizes
    ranges = Q.calibrate(models["full"], [x[:16], x[16:]])
    graphs = []
    for name, m in models.items():
        kind, classes = ("full", []) if name == "full" else ("class", ["cat"])
        onnx.save(m, directory / f"{name}.onnx")
        graphs.append({"name": name, "file": f"{name}.onnx", "kind": kind, "classes": classes})
        for p in Q.INT8_PRECISIONS:
            twin = name + ("_int8" if p == "int8" else "_int8_cpu")
            onnx.save(Q.quantize(m, ranges, p), directory / f"{twin}.onnx")
            graphs.append({"name": twin, "file": f"{twin}.onnx", "kind": kind, "classes": classes,
                           "precision": p, "fp32_twin": name})  # fmt: skip
    save_manifest(directory, {"graphs": _hashed(directory, graphs)})
    return {"images": x}


def test_int8_engines_on_tensorrt_10_and_11(trt, tmp_path, real_images):
    d = tmp_path / "e"
    feeds = _int8_twins(d, real_images)
    plan, info = build_engine(
        d / "full_int8.onnx", precision="int8", batch=(1, 8, 32), cache_dir=tmp_path / "c"
    )
    (net,) = _calls(trt, "Builder.create_network")
    if trt.version.startswith("10"):  # explicit quantization in a weakly typed network: the INT8 flag
        assert net["strongly_typed"] is False and _calls(trt, "IBuilderConfig.set_flag") == [{"flag": "INT8"}]
        assert info["builder_flags"] == ["INT8"] and not info["strongly_typed"]
    else:  # strongly typed: precision from the Q/DQ graph, no builder flags (none exist)
        assert net == {"flags": 1, "strongly_typed": True} and _calls(trt, "IBuilderConfig.set_flag") == []
        assert info["builder_flags"] == [] and info["strongly_typed"]
    assert "-int8-" in plan.name
    be = TrtBackend().load(plan)
    got = be.infer(feeds)["logits"]
    be.close()
    ref = open_backend("ort", d / "full_int8.onnx", threads=1).infer(feeds)["logits"]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)  # the Q/DQ graph ran, at its batch
    fp32 = open_backend("ort", d / "full.onnx", threads=1).infer(feeds)["logits"]
    assert 0 < np.abs(ref - fp32).max() <= 0.1 * np.abs(fp32).max()  # quantized, and close
    # FP16 for the float layers: a flag (and its own engine) on 10; nothing to ask for on 11
    plan16, info16 = build_engine(
        d / "full_int8.onnx", precision="int8", batch=(1, 8, 32), cache_dir=tmp_path / "c", int8_fp16=True
    )
    if trt.version.startswith("10"):
        assert info16["builder_flags"] == ["INT8", "FP16"] and plan16 != plan and trt.builds == 2
        assert "-int8+fp16-" in plan16.name
    else:
        assert plan16 == plan and info16["cached"] and trt.builds == 1
    # the wrong graph for the precision, and ONNX Runtime's CPU form, are refused before parsing
    n_parsed = len(_calls(trt, "OnnxParser.parse_from_file"))
    with pytest.raises(GraphError, match="--precision int8"):
        build_engine(d / "full_int8.onnx", precision="fp32", cache_dir=tmp_path / "c")
    with pytest.raises(GraphError, match="--int8 DATA"):
        build_engine(d / "full.onnx", precision="int8", cache_dir=tmp_path / "c")
    for p in ("int8", "fp32"):
        with pytest.raises(GraphError, match="NAME_int8"):
            build_engine(d / "full_int8_cpu.onnx", precision=p, cache_dir=tmp_path / "c")
    assert len(_calls(trt, "OnnxParser.parse_from_file")) == n_parsed


def test_build_directory_int8_builds_the_qdq_twins(trt, tmp_path, real_images):
    d = tmp_path / "e"
    _int8_twins(d, real_images)
    res = build_directory(d, precision="int8", batch=(1, 8, 16), progress=False)
    assert [r["name"] for r in res] == ["full", "class_cat"] and trt.builds == 2
    parsed = [c["model"] for c in _calls(trt, "OnnxParser.parse_from_file")]
    assert [os.path.basename(p) for p in parsed] == ["full_int8.onnx", "class_cat_int8.onnx"]
    assert all(r["precision"] == "int8" for r in res)
    assert json.loads((d / "engines" / "engines-int8.json").read_text())["graphs"] == res


def test_bench_trt_times_each_twin_at_its_precision(trt, tmp_path, real_images):
    """bench times every precision side by side; on TensorRT each twin is built at its own
    precision, and the ONNX Runtime CPU form is left out with a note."""
    d = tmp_path / "e"
    _int8_twins(d, real_images)
    rep = run_bench(
        d,
        BenchOptions(
            backend="trt",
            batches=[1, 8],
            warmup=0,
            duration=0.01,
            rounds=1,
            min_iterations=1,
            memory=False,
            torch_peer=False,
            progress=False,
        ),
    )
    assert [(g["name"], g["precision"]) for g in rep["graphs"]] == [
        ("full", "fp32"), ("full_int8", "int8"), ("class_cat", "fp32"), ("class_cat_int8", "int8"),
    ]  # fmt: skip
    assert any("full_int8_cpu" in n and "class_cat_int8_cpu" in n for n in rep["notes"])
    flags = [c["flag"] for c in _calls(trt, "IBuilderConfig.set_flag")]
    assert flags == (["INT8", "INT8"] if trt.version.startswith("10") else [])
    r8 = rep["ratios"]["int8"]
    assert r8["full"]["fastest"] == "full_int8" and r8["class"]["fastest"] == "class_cat_int8"


def test_the_fake_parser_and_builder_are_strict_about_qdq(monkeypatch, tmp_path, real_images):
    """uint8 Q/DQ does not parse; Q/DQ in a weakly typed TensorRT 10 network needs the INT8 flag."""
    fake.install_gpu(monkeypatch)
    d = tmp_path / "e"
    _int8_twins(d, real_images)
    fake.install(monkeypatch, "10.3.0")
    import tensorrt as t

    log = t.Logger(t.Logger.WARNING)
    b = t.Builder(log)
    p = t.OnnxParser(b.create_network(0), log)
    assert not p.parse_from_file(str(d / "full_int8_cpu.onnx"))
    assert "symmetric INT8" in str(p.get_error(0))
    net = b.create_network(0)
    assert t.OnnxParser(net, log).parse_from_file(str(d / "full_int8.onnx"))
    cfg = b.create_builder_config()
    prof = b.create_optimization_profile()
    prof.set_shape("images", (1, 3, 16, 16), (1, 3, 16, 16), (1, 3, 16, 16))
    cfg.add_optimization_profile(prof)
    assert b.build_serialized_network(net, cfg) is None  # no INT8 flag
    cfg.set_flag(t.BuilderFlag.INT8)
    assert b.build_serialized_network(net, cfg) is not None
