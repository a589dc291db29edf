"""A stand-in for the `tensorrt` package (TensorRT 10.x or 11.x) and `polygraphy.cuda`, for CI.

TensorRT cannot be installed here, so the glue (runtime/backends/trt/engine.py, bench, triton) is
driven through this fake. It is strict where TensorRT is strict and honest about what it is:
- argument types are checked as the pybind11 bindings check them (TypeError on a wrong type);
- return values follow TensorRT: set_input_shape / set_tensor_address / execute_async_v3 /
  set_timing_cache return bool, a failed build returns None, a foreign plan deserializes to None;
- the version differences are those of the real packages: TensorRT 11 has no BuilderFlag.FP16 /
  INT8 / BF16 (weak typing removed), NetworkDefinitionCreationFlag.STRONGLY_TYPED is 0 on 11 (kept,
  ignored: always strongly typed) but 1 on 10 (where EXPLICIT_BATCH is 0); on 10 a strongly typed
  network refuses precision builder flags;
- explicit quantization as TensorRT takes it: the parser refuses Q/DQ that is not symmetric int8
  (uint8 or non-zero zero points: ONNX Runtime's `int8-cpu` form), and a weakly typed (TensorRT 10)
  network with Q/DQ layers builds only with BuilderFlag.INT8 ("to enable any quantization
  operations, the INT8 flag must be set", TensorRT 10 developer guide); strongly typed networks
  take the precision from the Q/DQ graph with no flag;
- "engines" are the ONNX bytes plus the build settings, and execute_async_v3 runs them with ONNX
  Runtime on the fake device memory of polygraphy.cuda.DeviceArray, so shapes, buffer sizes,
  addresses and copies are checked end to end. Nothing here measures speed or GPU numerics.

Signatures confirmed against the bindings' source, NVIDIA/TensorRT python/src/infer/pyCore.cpp and
python/src/parsers/pyOnnx.cpp on branches release/10.16 (TensorRT 10) and main (TensorRT 11.1), and
include/NvInfer.h (enum values); docs: docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/
infer/Core/{Builder,ExecutionContext}.html and .../11.4.0/api/migration/tensorrt-10x-to-11x-python-api-
reference.html (removed Python APIs). Polygraphy: tools/Polygraphy/polygraphy/cuda/cuda.py (0.49).
"""

from __future__ import annotations

import enum
import itertools
import json
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAGIC = b"FAKETRT1"
# ops the real parser takes beyond the project's allowlist (onnx-tensorrt docs/operators.md) that
# the synthetic test graphs use
PARSER_EXTRA_OPS = frozenset({"ReduceL2", "QuantizeLinear", "DequantizeLinear"})


# -- strict argument checks (pybind11 raises TypeError for a wrong type) ----------------------------
def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def check(fn: str, **args: tuple[Any, Any]) -> None:
    """args: name=(value, kind); kind is a type, a tuple of types, 'int', 'dims' or 'buffer'."""
    for name, (value, kind) in args.items():
        if kind == "int":
            ok = _is_int(value)
        elif kind == "dims":  # Dims is implicitly convertible from a tuple/list of ints
            ok = isinstance(value, (tuple, list)) and all(_is_int(d) for d in value)
        elif kind == "buffer":
            ok = isinstance(value, (bytes, bytearray, memoryview, IHostMemory))
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise TypeError(
                f"{fn}(): incompatible function arguments: {name}={value!r} ({type(value).__name__}) "
                f"is not {kind if isinstance(kind, str) else getattr(kind, '__name__', kind)}"
            )


class _Enum(enum.Enum):
    """pybind11 enums: int(member) works; an int does not pass for a member."""

    def __int__(self) -> int:
        return self.value


class Severity(_Enum):
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = 0, 1, 2, 3, 4


class DataType(_Enum):
    FLOAT, HALF, INT8, INT32, BOOL, UINT8, FP8, BF16, INT64 = 0, 1, 2, 3, 4, 5, 6, 7, 8


class TensorIOMode(_Enum):
    NONE, INPUT, OUTPUT = 0, 1, 2


class MemoryPoolType(_Enum):
    WORKSPACE, DLA_MANAGED_SRAM, DLA_LOCAL_DRAM, DLA_GLOBAL_DRAM, TACTIC_DRAM = 0, 1, 2, 3, 4


_NP = {
    DataType.FLOAT: np.float32,
    DataType.HALF: np.float16,
    DataType.INT8: np.int8,
    DataType.INT32: np.int32,
    DataType.BOOL: np.bool_,
    DataType.UINT8: np.uint8,
    DataType.INT64: np.int64,
}
_ONNX = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 9: DataType.BOOL}
_ONNX.update({2: DataType.UINT8, 7: DataType.INT64, 16: DataType.BF16})


class Dims(tuple):
    pass


@dataclass
class State:
    """Everything the fake saw: calls in order, plus the 'device' memory of polygraphy.cuda."""

    version: str
    calls: list[tuple[str, dict]] = field(default_factory=list)
    memory: dict[int, bytearray] = field(default_factory=dict)
    streams: set[int] = field(default_factory=set)
    builds: int = 0
    _addr: Any = field(default_factory=lambda: itertools.count(0x7F00_0000_0000, 0x1_0000))

    def record(self, _call: str, /, **args: Any) -> None:
        self.calls.append((_call, args))

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def alloc(self, nbytes: int) -> int:
        ptr = next(self._addr)
        self.memory[ptr] = bytearray(nbytes)
        return ptr


STATE: State | None = None


def _state() -> State:
    assert STATE is not None, "fake tensorrt not installed"
    return STATE


# -- tensorrt ---------------------------------------------------------------------------------------
class ILogger:
    Severity = Severity
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = (
        Severity.INTERNAL_ERROR,
        Severity.ERROR,
        Severity.WARNING,
        Severity.INFO,
        Severity.VERBOSE,
    )


class Logger(ILogger):
    def __init__(self, min_severity: Severity = Severity.WARNING) -> None:
        check("Logger.__init__", min_severity=(min_severity, Severity))
        self.min_severity = min_severity
        self.messages: list[str] = []

    def log(self, severity: Severity, msg: str) -> None:
        self.messages.append(f"{severity.name}: {msg}")


class IHostMemory:
    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)

    def __bytes__(self) -> bytes:
        return self._data

    @property
    def nbytes(self) -> int:
        return len(self._data)


@dataclass
class ITensor:
    name: str
    shape: Dims
    dtype: DataType


class INetworkDefinition:
    def __init__(self, flags: int, strongly_typed: bool) -> None:
        self.flags, self.strongly_typed = flags, strongly_typed
        self._inputs: list[ITensor] = []
        self._outputs: list[ITensor] = []
        self.onnx: bytes | None = None
        self.qdq = False  # has Q/DQ layers (explicit quantization)

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    def get_input(self, index: int) -> ITensor:
        check("INetworkDefinition.get_input", index=(index, "int"))
        return self._inputs[index]

    def get_output(self, index: int) -> ITensor:
        check("INetworkDefinition.get_output", index=(index, "int"))
        return self._outputs[index]


class IParserError:
    def __init__(self, desc: str) -> None:
        self._desc = desc

    def desc(self) -> str:
        return self._desc

    def __str__(self) -> str:
        return self._desc


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
        check("OnnxParser.__init__", network=(network, INetworkDefinition), logger=(logger, ILogger))
        self.network, self._errors = network, []

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> IParserError:
        check("OnnxParser.get_error", index=(index, "int"))
        return self._errors[index]

    def parse_from_file(self, model: str) -> bool:
        check("OnnxParser.parse_from_file", model=(model, str))
        _state().record("OnnxParser.parse_from_file", model=model)
        try:
            data = open(model, "rb").read()
        except OSError as e:
            self._errors.append(IParserError(f"cannot open {model}: {e}"))
            return False
        return self._parse(data)

    def parse(self, model: Any, path: str | None = None) -> bool:
        check("OnnxParser.parse", model=(model, "buffer"))
        return self._parse(bytes(model))

    def _parse(self, data: bytes) -> bool:
        import onnx

        from codedresnext.export.ops import TRT_ALLOWED_OPS

        try:
            m = onnx.load_model_from_string(data)
        except Exception as e:
            self._errors.append(IParserError(f"failed to parse the ONNX model: {e}"))
            return False
        bad = sorted({n.op_type for n in m.graph.node} - TRT_ALLOWED_OPS - PARSER_EXTRA_OPS)
        if bad:
            self._errors.append(IParserError(f"no importer registered for op: {bad}"))
            return False
        err = _qdq_error(m)
        if err:
            self._errors.append(IParserError(err))
            return False
        inits = {i.name for i in m.graph.initializer}
        self.network.qdq = any(n.op_type in _QDQ for n in m.graph.node)

        def tensor(v) -> ITensor:
            t = v.type.tensor_type
            dims = Dims(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
            return ITensor(v.name, dims, _ONNX[t.elem_type])

        self.network._inputs = [tensor(v) for v in m.graph.input if v.name not in inits]
        self.network._outputs = [tensor(v) for v in m.graph.output]
        self.network.onnx = data
        return True


_QDQ = ("QuantizeLinear", "DequantizeLinear")


def _qdq_error(m) -> str | None:
    """TensorRT's quantization is symmetric signed INT8 (FP8/INT4/FP4 aside): the parser refuses a
    QuantizeLinear/DequantizeLinear whose zero point is not an all-zero int8 tensor (uint8 Q/DQ, the
    int32 bias DequantizeLinear of ONNX Runtime's CPU form), and a scale that is not an initializer."""
    from onnx import TensorProto, numpy_helper

    inits = {t.name: t for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type not in _QDQ:
            continue
        if n.input[1] not in inits:
            return f"{n.op_type} {n.name!r}: the scale must be an initializer (a build-time constant)"
        if len(n.input) > 2 and n.input[2]:
            zp = inits.get(n.input[2])
            if zp is None or zp.data_type != TensorProto.INT8 or numpy_helper.to_array(zp).any():
                why = "TensorRT only supports symmetric INT8 quantization (zero point 0)"
                return f"{n.op_type} {n.name!r}: {why}"
    return None


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[Dims, Dims, Dims]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 (binding names)
        check("IOptimizationProfile.set_shape", input=(input, str), min=(min, "dims"), opt=(opt, "dims"))
        check("IOptimizationProfile.set_shape", max=(max, "dims"))
        _state().record(
            "IOptimizationProfile.set_shape", input=input, min=tuple(min), opt=tuple(opt), max=tuple(max)
        )
        if not len(min) == len(opt) == len(max) or any(
            not 0 <= a <= b <= c for a, b, c in zip(min, opt, max)
        ):  # the binding raises RuntimeError ("Shape provided for ... is inconsistent")
            raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
        self.shapes[input] = (Dims(min), Dims(opt), Dims(max))

    def get_shape(self, input: str) -> list[Dims]:  # noqa: A002
        return list(self.shapes.get(input, ()))


class ITimingCache:
    def __init__(self, entries: list[str]) -> None:
        self.entries = list(entries)

    def serialize(self) -> IHostMemory:
        return IHostMemory(json.dumps({"trt": _state().version, "entries": self.entries}).encode())

    def combine(self, input_cache: ITimingCache, ignore_mismatch: bool) -> bool:
        check(
            "ITimingCache.combine",
            input_cache=(input_cache, ITimingCache),
            ignore_mismatch=(ignore_mismatch, bool),
        )
        self.entries += [e for e in input_cache.entries if e not in self.entries]
        return True


class IBuilderConfig:
    def __init__(self) -> None:
        self.flags: set[Any] = {_BuilderFlag.TF32}  # TensorRT's default: "Enabled by default" (NvInfer.h)
        self.pools: dict[MemoryPoolType, int] = {}
        self.profiles: list[IOptimizationProfile] = []
        self.timing_cache: ITimingCache | None = None

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        check(
            "IBuilderConfig.set_memory_pool_limit", pool=(pool, MemoryPoolType), pool_size=(pool_size, "int")
        )
        _state().record("IBuilderConfig.set_memory_pool_limit", pool=pool, pool_size=int(pool_size))
        self.pools[pool] = int(pool_size)

    def set_flag(self, flag: Any) -> None:
        check("IBuilderConfig.set_flag", flag=(flag, _BuilderFlag))
        _state().record("IBuilderConfig.set_flag", flag=flag.name)
        self.flags.add(flag)

    def clear_flag(self, flag: Any) -> None:
        check("IBuilderConfig.clear_flag", flag=(flag, _BuilderFlag))
        _state().record("IBuilderConfig.clear_flag", flag=flag.name)
        self.flags.discard(flag)

    def get_flag(self, flag: Any) -> bool:
        check("IBuilderConfig.get_flag", flag=(flag, _BuilderFlag))
        return flag in self.flags

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        check("IBuilderConfig.add_optimization_profile", profile=(profile, IOptimizationProfile))
        _state().record("IBuilderConfig.add_optimization_profile")
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache: Any) -> ITimingCache:
        check(
            "IBuilderConfig.create_timing_cache", serialized_timing_cache=(serialized_timing_cache, "buffer")
        )
        blob = bytes(serialized_timing_cache)
        _state().record("IBuilderConfig.create_timing_cache", nbytes=len(blob))
        if not blob:
            return ITimingCache([])
        try:
            d = json.loads(blob)
        except ValueError:
            return (
                None  # createTimingCache returns nullptr on a blob it cannot read (pyCore.cpp passes it on)
            )
        cache = ITimingCache(d.get("entries", []))
        cache.version = d.get("trt")
        return cache

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        check(
            "IBuilderConfig.set_timing_cache",
            cache=(cache, ITimingCache),
            ignore_mismatch=(ignore_mismatch, bool),
        )
        _state().record("IBuilderConfig.set_timing_cache", entries=len(cache.entries))
        if getattr(cache, "version", _state().version) != _state().version and not ignore_mismatch:
            return False
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self.timing_cache


class Builder:
    def __init__(self, logger: ILogger) -> None:
        check("Builder.__init__", logger=(logger, ILogger))
        self.logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        check("Builder.create_network", flags=(flags, "int"))
        st = _state()
        known = sum(1 << m.value for m in _NetworkFlag)
        if flags & ~known:
            raise RuntimeError(f"invalid NetworkDefinitionCreationFlags {flags}")
        strongly = _major() >= 11 or bool(flags & (1 << _NetworkFlag.STRONGLY_TYPED.value))
        st.record("Builder.create_network", flags=int(flags), strongly_typed=strongly)
        return INetworkDefinition(int(flags), strongly)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(
        self, network: INetworkDefinition, config: IBuilderConfig
    ) -> IHostMemory | None:
        check(
            "Builder.build_serialized_network",
            network=(network, INetworkDefinition),
            config=(config, IBuilderConfig),
        )
        st = _state()
        st.record("Builder.build_serialized_network")
        err = self._validate(network, config)
        if err:
            self.logger.log(Severity.ERROR, err)
            st.record("build error", message=err)
            return None
        st.builds += 1
        prof = config.profiles[0] if config.profiles else IOptimizationProfile()
        header = {
            "trt": st.version,
            "strongly_typed": network.strongly_typed,
            "flags": sorted(f.name for f in config.flags),
            "profile": {k: [list(d) for d in v] for k, v in prof.shapes.items()},
            "inputs": [[t.name, list(t.shape), t.dtype.name] for t in network._inputs],
            "outputs": [[t.name, list(t.shape), t.dtype.name] for t in network._outputs],
        }
        if config.timing_cache is not None:
            config.timing_cache.entries.append(f"build{st.builds}")
        h = json.dumps(header).encode()
        return IHostMemory(MAGIC + len(h).to_bytes(8, "little") + h + network.onnx)

    @staticmethod
    def _validate(network: INetworkDefinition, config: IBuilderConfig) -> str | None:
        if network.onnx is None:
            return "network has no layers (nothing was parsed)"
        precision = {f.name for f in config.flags} & {"FP16", "BF16", "INT8", "FP8"}
        if network.strongly_typed and precision:
            return f"precision builder flags {sorted(precision)} are not allowed in a strongly typed network"
        if network.qdq and not network.strongly_typed and "INT8" not in precision:
            # TensorRT 10, weakly typed: explicit quantization runs only with BuilderFlag.INT8 set
            return "the network has Q/DQ layers but BuilderFlag.INT8 is not set (weakly typed network)"
        dynamic = [t for t in network._inputs if any(d < 0 for d in t.shape)]
        if dynamic and not config.profiles:
            return "network has dynamic or shape inputs, but no optimization profile has been defined"
        for t in dynamic:
            shapes = config.profiles[0].shapes.get(t.name)
            if shapes is None:
                return f"optimization profile is missing values for input {t.name}"
            for s in shapes:
                if len(s) != len(t.shape) or any(d >= 0 and d != p for d, p in zip(t.shape, s)):
                    return f"profile shape {s} of {t.name} does not match the network input {t.shape}"
        return None


class ICudaEngine:
    def __init__(self, header: dict, onnx_bytes: bytes) -> None:
        self.header, self.onnx = header, onnx_bytes
        self._io = [(n, Dims(s), DataType[d], TensorIOMode.INPUT) for n, s, d in header["inputs"]]
        self._io += [(n, Dims(s), DataType[d], TensorIOMode.OUTPUT) for n, s, d in header["outputs"]]

    @property
    def num_io_tensors(self) -> int:
        return len(self._io)

    @property
    def num_optimization_profiles(self) -> int:
        return 1

    def _find(self, fn: str, name: str):
        check(fn, name=(name, str))
        for t in self._io:
            if t[0] == name:
                return t
        raise AssertionError(f"{fn}: no tensor {name!r} (TensorRT returns an invalid value here)")

    def get_tensor_name(self, index: int) -> str:
        check("ICudaEngine.get_tensor_name", index=(index, "int"))
        return self._io[index][0]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self._find("ICudaEngine.get_tensor_mode", name)[3]

    def get_tensor_shape(self, name: str) -> Dims:
        return self._find("ICudaEngine.get_tensor_shape", name)[1]

    def get_tensor_dtype(self, name: str) -> DataType:
        return self._find("ICudaEngine.get_tensor_dtype", name)[2]

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        check("ICudaEngine.get_tensor_profile_shape", name=(name, str), profile_index=(profile_index, "int"))
        shapes = self.header["profile"].get(name)
        assert shapes is not None and profile_index == 0, (name, profile_index)
        return [Dims(s) for s in shapes]

    def create_execution_context(self) -> IExecutionContext:
        return IExecutionContext(self)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self.shapes: dict[str, Dims] = {}
        self.addresses: dict[str, int] = {}
        self._session = None

    def set_input_shape(self, name: str, shape: Any) -> bool:
        check("IExecutionContext.set_input_shape", name=(name, str), shape=(shape, "dims"))
        _state().record("IExecutionContext.set_input_shape", name=name, shape=tuple(shape))
        t = self.engine._find("IExecutionContext.set_input_shape", name)
        lo, _, hi = self.engine.header["profile"].get(name, (t[1], t[1], t[1]))
        if len(shape) != len(t[1]) or any(not a <= d <= b for a, d, b in zip(lo, shape, hi)):
            return False  # TensorRT logs "... out of the profile bounds" and returns false
        self.shapes[name] = Dims(int(d) for d in shape)
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        t = self.engine._find("IExecutionContext.get_tensor_shape", name)
        if t[3] == TensorIOMode.INPUT:
            return self.shapes.get(name, t[1])
        ins = [x for x in self.engine._io if x[3] == TensorIOMode.INPUT]
        if any(x[0] not in self.shapes for x in ins):
            return t[1]  # not inferable yet: dynamic dims stay -1
        batch = self.shapes[ins[0][0]][0]
        return Dims(batch if d < 0 else d for d in t[1])

    def set_tensor_address(self, name: str, memory: int) -> bool:
        check("IExecutionContext.set_tensor_address", name=(name, str), memory=(memory, "int"))
        _state().record("IExecutionContext.set_tensor_address", name=name)
        self.engine._find("IExecutionContext.set_tensor_address", name)
        if int(memory) not in _state().memory:
            return False
        self.addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        check("IExecutionContext.execute_async_v3", stream_handle=(stream_handle, "int"))
        st = _state()
        st.record("IExecutionContext.execute_async_v3")
        if stream_handle not in st.streams:
            return False
        ins = [x for x in self.engine._io if x[3] == TensorIOMode.INPUT]
        if any(x[0] not in self.shapes for x in ins) or any(
            x[0] not in self.addresses for x in self.engine._io
        ):
            return False  # TensorRT: "not all input shapes / tensor addresses are specified"
        feeds = {}
        for name, _, dt, _ in ins:
            shape, dtype = self.shapes[name], np.dtype(_NP[dt])
            mem = st.memory[self.addresses[name]]
            n = int(np.prod(shape)) * dtype.itemsize
            assert len(mem) >= n, f"input buffer of {name} too small"
            feeds[name] = np.frombuffer(bytes(mem[:n]), dtype).reshape(shape)
        if self._session is None:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            self._session = ort.InferenceSession(self.engine.onnx, so, providers=["CPUExecutionProvider"])
        names = [x[0] for x in self.engine._io if x[3] == TensorIOMode.OUTPUT]
        for name, value in zip(names, self._session.run(names, feeds)):
            value = np.ascontiguousarray(value.astype(_NP[self.engine._find("", name)[2]]))
            mem = st.memory[self.addresses[name]]
            assert len(mem) >= value.nbytes, f"output buffer of {name} too small: {len(mem)} < {value.nbytes}"
            mem[: value.nbytes] = value.tobytes()
        return True


class Runtime:
    def __init__(self, logger: ILogger) -> None:
        check("Runtime.__init__", logger=(logger, ILogger))
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
        check("Runtime.deserialize_cuda_engine", serialized_engine=(serialized_engine, "buffer"))
        data = bytes(serialized_engine)
        _state().record("Runtime.deserialize_cuda_engine", nbytes=len(data))
        if not data.startswith(MAGIC):
            self.logger.log(Severity.ERROR, "the engine plan file is corrupted")
            return None
        n = int.from_bytes(data[8:16], "little")
        header = json.loads(data[16 : 16 + n])
        if header["trt"] != _state().version:  # plans are tied to the TensorRT version
            self.logger.log(Severity.ERROR, "the engine plan file is not compatible with this version")
            return None
        return ICudaEngine(header, data[16 + n :])


def nptype(trt_type: DataType) -> type:
    check("nptype", trt_type=(trt_type, DataType))
    return _NP[trt_type]


def _major() -> int:
    return int(_state().version.split(".")[0])


_BuilderFlag: Any = None
_NetworkFlag: Any = None


# -- polygraphy.cuda ------------------------------------------------------------------------------
class Stream:
    def __init__(self) -> None:
        st = _state()
        self.ptr = next(st._addr)  # a handle, not memory
        st.streams.add(self.ptr)

    def synchronize(self) -> None:
        assert self.ptr in _state().streams, "synchronize on a freed stream"

    def free(self) -> None:
        _state().streams.discard(self.ptr)


class DeviceArray:
    def __init__(self, shape: tuple[int, ...] | None = None, dtype: Any = None) -> None:
        self.dtype = np.dtype(dtype or np.float32)
        self.ptr, self.allocated_nbytes, self.shape = 0, 0, ()
        self.resize(tuple(shape or ()))

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def resize(self, shape: tuple[int, ...]) -> DeviceArray:
        assert all(_is_int(d) and d >= 0 for d in shape), f"bad shape {shape}"
        n = int(np.prod(shape, dtype=np.int64)) * self.dtype.itemsize
        if n > self.allocated_nbytes:  # like Polygraphy: reallocate only when growing (ptr changes)
            self.free()
            self.ptr, self.allocated_nbytes = _state().alloc(n), n
        self.shape = tuple(shape)
        return self

    def _check(self, host: np.ndarray, copying_from: bool) -> None:
        assert isinstance(host, np.ndarray) and host.flags.c_contiguous, (
            "host buffer must be contiguous numpy"
        )
        assert host.dtype == self.dtype, f"host dtype {host.dtype} != device dtype {self.dtype}"
        if copying_from:
            assert host.nbytes <= self.nbytes, "host buffer is larger than the device buffer"
        else:
            assert host.nbytes >= self.nbytes, "host buffer is smaller than the device buffer"

    def copy_from(self, host_buffer: np.ndarray, stream: Stream | None = None) -> DeviceArray:
        self._check(host_buffer, True)
        assert stream is None or stream.ptr in _state().streams
        _state().memory[self.ptr][: host_buffer.nbytes] = host_buffer.tobytes()
        return self

    def copy_to(self, host_buffer: np.ndarray, stream: Stream | None = None) -> np.ndarray:
        self._check(host_buffer, False)
        raw = bytes(_state().memory[self.ptr][: self.nbytes])
        host_buffer[...] = np.frombuffer(raw, self.dtype).reshape(host_buffer.shape)
        return host_buffer

    def free(self) -> None:
        if self.ptr:
            _state().memory.pop(self.ptr, None)
            self.ptr, self.allocated_nbytes = 0, 0


# -- installation -----------------------------------------------------------------------------------
def _flag_enums(major: int) -> tuple[type, type]:
    # values of NvInfer.h's BuilderFlag: NVIDIA/TensorRT main (TensorRT 11.1) and release/10.16
    if major >= 11:  # weak typing removed: no FP16/BF16/INT8/FP8; STRONGLY_TYPED = 0, deprecated
        builder = {"DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "TF32": 6}
        network = {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1, "PREFER_AOT_PYTHON_PLUGINS": 2}
    else:
        builder = {"FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5}
        builder.update({"TF32": 6, "BF16": 17})
        network = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1, "PREFER_JIT_PYTHON_PLUGINS": 2}
        network["PREFER_AOT_PYTHON_PLUGINS"] = 3
    return _Enum("BuilderFlag", builder), _Enum("NetworkDefinitionCreationFlag", network)


def install(monkeypatch, version: str = "10.3.0") -> State:
    """Put fake `tensorrt` (this version) and `polygraphy.cuda` into sys.modules for one test."""
    global STATE, _BuilderFlag, _NetworkFlag
    STATE = State(version)
    _BuilderFlag, _NetworkFlag = _flag_enums(int(version.split(".")[0]))
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    for name in (
        "Logger ILogger Builder OnnxParser Runtime IHostMemory INetworkDefinition IBuilderConfig "
        "IOptimizationProfile ITimingCache ICudaEngine IExecutionContext DataType TensorIOMode "
        "MemoryPoolType Dims nptype"
    ).split():
        setattr(trt, name, globals()[name])
    trt.BuilderFlag, trt.NetworkDefinitionCreationFlag = _BuilderFlag, _NetworkFlag
    poly = types.ModuleType("polygraphy")
    poly.__version__ = "0.49.27"
    cuda = types.ModuleType("polygraphy.cuda")
    cuda.Stream, cuda.DeviceArray = Stream, DeviceArray
    poly.cuda = cuda
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "polygraphy", poly)
    monkeypatch.setitem(sys.modules, "polygraphy.cuda", cuda)
    return STATE


# -- the CUDA driver (libcuda via ctypes), for the compute-capability lookup ------------------------
class FakeLibcuda:
    """cuInit / cuDeviceGetCount / cuDeviceGet / cuDeviceGetAttribute over physical GPUs `caps`
    ('major.minor' each), exposing them in CUDA_VISIBLE_DEVICES order as the real driver does."""

    def __init__(self, caps: list[str]) -> None:
        import os

        self.caps = caps
        vis = os.environ.get("CUDA_VISIBLE_DEVICES")
        self.visible = (
            [int(v) for v in vis.split(",") if v.strip()] if vis is not None else list(range(len(caps)))
        )

    def cuInit(self, flags: int) -> int:  # noqa: N802 (driver API names)
        return 0

    def cuDeviceGetCount(self, count) -> int:  # noqa: N802
        count._obj.value = len(self.visible)
        return 0

    def cuDeviceGet(self, dev, ordinal: int) -> int:  # noqa: N802
        if not 0 <= ordinal < len(self.visible):
            return 101  # CUDA_ERROR_INVALID_DEVICE
        dev._obj.value = self.visible[ordinal]
        return 0

    def cuDeviceGetAttribute(self, value, attrib: int, dev) -> int:  # noqa: N802
        major, minor = self.caps[dev.value].split(".")
        value._obj.value = int(major) if attrib == 75 else int(minor)
        return 0 if attrib in (75, 76) else 1


def install_gpu(monkeypatch, caps: list[str] | None = None) -> FakeLibcuda:
    """A fake CUDA driver with GPUs of these compute capabilities (default one sm 8.7, an Orin)."""
    from codedresnext.runtime.backends.trt import plan as trt_plan

    lib = FakeLibcuda(caps or ["8.7"])
    monkeypatch.setattr(trt_plan, "_load_libcuda", lambda: lib)
    return lib
