"""TensorRT backend and engine builder (TensorRT 10 and 11; imported lazily, GPU only).

Build: ONNX parser -> network (strongly typed on TRT 11, see trt_plan) -> one optimisation profile
for the batch dimension -> timing cache -> `build_serialized_network`, cached by a key of graph
sha256, precision, compute capability, TensorRT version and profile. Run: named I/O tensors
(`num_io_tensors`, `get_tensor_name`, `set_input_shape`, `set_tensor_address`, `execute_async_v3`)
with device buffers from Polygraphy's CUDA wrapper. Polygraphy also compares TensorRT with ONNX
Runtime (`compare_with_onnxrt`).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ...._io import sha256_file, write_bytes, write_json
from ....artifact import FP32, graph_file, load_manifest
from ....errors import GraphError
from ..base import Backend, TensorSpec, onnx_io_specs, require
from .plan import (
    choose_source,
    engine_cache_key,
    engine_cache_path,
    gpu_compute_capability,
    graph_precision,
    plan_precision,
    profile_shapes,
)


def _trt() -> Any:
    return require("tensorrt", "tensorrt", "the TensorRT backend")


def build_engine(
    onnx_path: str | os.PathLike,
    *,
    precision: str = "fp32",
    batch: tuple[int, int, int] = (1, 8, 32),
    cache_dir: str | os.PathLike,
    workspace_mib: int = 1024,
    rebuild: bool = False,
    int8_fp16: bool = False,
) -> tuple[Path, dict]:
    """Build (or reuse from the cache) the engine of one graph; returns (plan path, build info).
    int8_fp16: TensorRT 10 may run an int8 graph's float layers in FP16 (trt_plan.plan_precision)."""
    trt = _trt()
    onnx_path = Path(onnx_path)
    cache_dir = Path(cache_dir)
    sm = gpu_compute_capability()
    plan = plan_precision(
        precision, trt_version=trt.__version__, graph=graph_precision(onnx_path), int8_fp16=int8_fp16
    )
    key = engine_cache_key(
        graph_sha256=sha256_file(onnx_path),
        precision=precision + ("+fp16" if "FP16" in plan.builder_flags and precision == "int8" else ""),
        compute_capability=sm,
        trt_version=trt.__version__,
        profile=batch,
    )
    out = engine_cache_path(cache_dir, key)
    info = {
        "key": key,
        "precision": precision,
        "strongly_typed": plan.strongly_typed,
        "builder_flags": list(plan.builder_flags),
        "compute_capability": sm,
        "tensorrt": trt.__version__,
        "profile": {"min": batch[0], "opt": batch[1], "max": batch[2]},
        # TF32 is on by default (NvInfer.h BuilderFlag.kTF32): fp32 engines clear it (strict FP32)
        "tf32": precision != "fp32",
    }
    if out.is_file() and not rebuild:
        return out, {**info, "cached": True}

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if plan.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)  # explicit batch is the default (and only mode) in TRT 10+
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise GraphError(f"TensorRT cannot parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    for name in plan.builder_flags:  # only on TensorRT 10 (weakly typed)
        config.set_flag(getattr(trt.BuilderFlag, name))
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    shapes = profile_shapes(
        [(t.name, tuple(d if d >= 0 else None for d in t.shape)) for t in inputs],
        min_batch=batch[0],
        opt_batch=batch[1],
        max_batch=batch[2],
    )
    profile = builder.create_optimization_profile()
    for name, (mn, opt, mx) in shapes.items():
        profile.set_shape(name, mn, opt, mx)
    if config.add_optimization_profile(profile) < 0:
        raise GraphError(f"TensorRT rejected the optimisation profile {shapes} for {onnx_path}")
    timing_path = cache_dir / f"timing-sm{sm.replace('.', '')}-trt{trt.__version__}.cache"
    timing = _timing_cache(config, timing_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise GraphError(f"TensorRT failed to build {onnx_path} ({precision}); see the log above")
    write_bytes(out, bytes(serialized))
    if timing is not None:
        write_bytes(timing_path, bytes(timing.serialize()))
    write_json(out.with_suffix(".json"), {**info, "graph": str(onnx_path)})
    return out, {**info, "cached": False}


def _timing_cache(config: Any, path: Path) -> Any:
    """The timing cache at `path` set on `config`; a blob this TensorRT cannot read (create_timing_cache
    returns None) or a mismatched one (another TensorRT / GPU) is replaced by an empty cache, with a
    warning; None if TensorRT cannot even create an empty one (the build then runs without)."""
    blob = path.read_bytes() if path.is_file() else b""
    timing = config.create_timing_cache(blob)
    if timing is not None and config.set_timing_cache(timing, False):
        return timing
    if blob:
        why = "unreadable" if timing is None else "from another TensorRT version or GPU"
        warnings.warn(
            f"timing cache {path} is {why}; building without it (a fresh one is saved)", stacklevel=3
        )
    timing = config.create_timing_cache(b"")
    if timing is not None and not config.set_timing_cache(timing, False):
        return None
    return timing


class TrtBackend(Backend):
    """Runs a serialized engine (.plan) or builds one from an .onnx first (engine cache beside it)."""

    name = "trt"

    def _load(
        self,
        path: Path,
        *,
        precision: str = "fp32",
        batch: tuple[int, int, int] = (1, 8, 32),
        cache_dir: str | os.PathLike | None = None,
        **_: Any,
    ) -> None:
        trt = _trt()
        cuda = require("polygraphy.cuda", "polygraphy", "the TensorRT backend (device buffers)")
        if path.suffix == ".onnx":
            path, _info = build_engine(
                path, precision=precision, batch=batch, cache_dir=cache_dir or path.parent / "engines"
            )
        self._trt, self._cuda = trt, cuda
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise GraphError(
                f"{path} is not an engine for this GPU/TensorRT {trt.__version__}; rebuild it "
                "with `codedresnext build`"
            )
        self.context = self.engine.create_execution_context()
        self.stream = cuda.Stream()
        self.inputs, self.outputs = [], []
        self.profile: dict[str, tuple[tuple[int, ...], ...]] = {}  # input -> (min, opt, max) shapes
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            shape = tuple(d if d >= 0 else None for d in self.engine.get_tensor_shape(name))
            spec = TensorSpec(name, dtype, shape)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(spec)
            if is_input:
                self.profile[name] = tuple(tuple(d) for d in self.engine.get_tensor_profile_shape(name, 0))
        self._buffers: dict[str, Any] = {}
        self._plan = path

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        buf = self._buffers.get(name)
        if buf is None:
            buf = self._buffers[name] = self._cuda.DeviceArray(shape=shape, dtype=dtype)
        else:
            buf.resize(shape)
        return buf

    def _run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None) -> dict[str, np.ndarray]:
        for s in self.inputs:
            host = np.ascontiguousarray(feeds[s.name])
            if not self.context.set_input_shape(s.name, host.shape):  # e.g. a batch outside the profile
                mn, _, mx = self.profile.get(s.name, ((), (), ()))
                raise GraphError(
                    f"TensorRT engine {self._plan.name} rejects input {s.name!r} of shape {host.shape}: its "
                    f"optimisation profile spans {mn} .. {mx}. Use batches in that range, or rebuild with "
                    "a wider profile (`codedresnext build --batch MIN,OPT,MAX`)"
                )
            buf = self._buffer(s.name, host.shape, s.dtype)
            buf.copy_from(host, stream=self.stream)
            self._bind(s.name, buf)
        hosts = {}
        for s in self.outputs:
            shape = tuple(self.context.get_tensor_shape(s.name))
            if any(d < 0 for d in shape):
                raise GraphError(f"TensorRT could not infer the shape of output {s.name!r} (got {shape})")
            buf = self._buffer(s.name, shape, s.dtype)
            self._bind(s.name, buf)
            hosts[s.name] = np.empty(shape, s.dtype)
        if not self.context.execute_async_v3(self.stream.ptr):
            raise GraphError("TensorRT execute_async_v3 failed; see the TensorRT log")
        for name, host in hosts.items():
            self._buffers[name].copy_to(host, stream=self.stream)
        self.stream.synchronize()
        return {k: v for k, v in hosts.items() if outputs is None or k in outputs}

    def _bind(self, name: str, buf: Any) -> None:
        if not self.context.set_tensor_address(name, buf.ptr):
            raise GraphError(f"TensorRT refused the device buffer of {name!r}; see the TensorRT log")

    def info(self) -> dict:
        return {
            "backend": self.name,
            "tensorrt": self._trt.__version__,
            "compute_capability": gpu_compute_capability(),
            "engine": self._plan.name,
            "profile": {k: {"min": v[0], "opt": v[1], "max": v[2]} for k, v in self.profile.items()},
        }

    def _close(self) -> None:  # the Backend lifecycle: device buffers, then context and engine
        buffers = getattr(self, "_buffers", {})
        for b in buffers.values():
            b.free()
        buffers.clear()
        self.context = self.engine = None
        stream, self.stream = getattr(self, "stream", None), None
        if stream is not None:
            stream.free()


def build_directory(
    directory: str | os.PathLike,
    *,
    precision: str = "fp32",
    batch: tuple[int, int, int] = (1, 8, 32),
    graphs: list[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    rebuild: bool = False,
    progress: bool = True,
    int8_fp16: bool = False,
) -> list[dict]:
    """One engine per manifest graph (or the named ones); records them in DIR/engines/engines.json."""
    directory = Path(directory)
    manifest = load_manifest(directory)
    if graphs:
        manifest.select(graphs)  # GraphError naming any unknown graph
        entries = [g for g in manifest.graphs if g.name in graphs]
    else:
        entries = manifest.of_kind(precision=FP32)
    cache_dir = Path(cache_dir or directory / "engines")
    trt = _trt()
    by_name = {g.name: g for g in manifest.graphs}
    results = []
    try:
        from tqdm import tqdm

        it = tqdm(entries, desc=f"build {precision}", disable=not progress)
    except ImportError:
        it = entries
    for g in it:
        src = graph_file(directory, choose_source(g, by_name, precision, trt.__version__))
        plan, info = build_engine(
            src, precision=precision, batch=batch, cache_dir=cache_dir, rebuild=rebuild, int8_fp16=int8_fp16
        )
        results.append(
            {
                "name": g.name,
                "engine": str(plan.relative_to(directory)) if plan.is_relative_to(directory) else str(plan),
                **info,
            }
        )
    write_json(cache_dir / f"engines-{precision}.json", {"graphs": results})
    return results


def compare_with_onnxrt(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    *,
    batch: int = 8,
    atol: float = 1e-3,
    rtol: float = 1e-3,
) -> bool:
    """Polygraphy: run TrtRunner and OnnxrtRunner on the same random inputs and compare outputs."""
    require("tensorrt", "tensorrt", "the TensorRT comparison")
    comparator = require("polygraphy.comparator", "polygraphy", "the TensorRT comparison")
    trt_backend = require("polygraphy.backend.trt", "polygraphy", "the TensorRT comparison")
    ort_backend = require("polygraphy.backend.onnxrt", "polygraphy", "the TensorRT comparison")
    inputs, _ = onnx_io_specs(onnx_path)
    shapes = {s.name: (batch, *s.shape[1:]) for s in inputs}
    data = [
        {
            n: np.random.default_rng(i).standard_normal(sh).astype(np.float32)
            if s.dtype == np.float32
            else np.random.default_rng(i).integers(0, 256, sh).astype(s.dtype)
            for (n, sh), s in zip(shapes.items(), inputs)
        }
        for i in range(2)
    ]
    runners = [
        trt_backend.TrtRunner(trt_backend.EngineFromBytes(Path(engine_path).read_bytes())),
        ort_backend.OnnxrtRunner(ort_backend.SessionFromOnnx(str(onnx_path))),
    ]
    results = comparator.Comparator.run(runners, data_loader=data)
    return bool(
        comparator.Comparator.compare_accuracy(
            results, compare_func=comparator.CompareFunc.simple(atol=atol, rtol=rtol)
        )
    )


__all__ = ["TrtBackend", "build_engine", "build_directory", "compare_with_onnxrt"]
