"""TensorRT build planning that needs no TensorRT: version branching, precision, profiles, cache keys.

Kept apart from engine.py so that it is tested on machines without TensorRT (the version number is an
argument, so tests inject 10.x or 11.x and check the branching without pretending to build).

- TensorRT 10 (JetPack 6): weakly typed networks allowed; fp16 = BuilderFlag.FP16 on the fp32 graph,
  int8 = BuilderFlag.INT8 on a Q/DQ graph (explicit quantization; no implicit calibration), plus
  BuilderFlag.FP16 for the layers outside Q/DQ when asked (`int8_fp16`; off by default: the energy
  sums of squares are kept float32 in every graph we export, FP16 may overflow them).
- TensorRT 11+: networks are strongly typed (NetworkDefinitionCreationFlag.STRONGLY_TYPED), the
  precision builder flags are gone, so precision comes from the graph: fp16 needs the FP16 ONNX that
  `export --fp16` writes, int8 needs Q/DQ nodes (`export --int8` writes NAME_int8).
- INT8 graphs: only the symmetric int8 Q/DQ form (precision "int8") is TensorRT's; the "int8-cpu"
  twins (uint8 activations, int32 bias; ONNX Runtime CPU only) are refused with a pointer to NAME_int8.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ....artifact import FP16, INT8, ManifestEntry, precision_suffix
from ....errors import BackendUnavailable, GraphError

PRECISIONS = ("fp32", "fp16", "int8")


def trt_major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError as e:
        raise BackendUnavailable(f"cannot parse the TensorRT version {version!r}") from e


@dataclass(frozen=True)
class PrecisionPlan:
    """How to build: strongly typed or not, and which BuilderFlag names to set."""

    precision: str
    strongly_typed: bool
    builder_flags: tuple[str, ...]


def graph_precision(path: str | os.PathLike) -> str:
    """'int8' for symmetric int8 Q/DQ, 'int8-cpu' for Q/DQ with uint8 or int32 zero points (ONNX
    Runtime's CPU form), 'fp16' if the weights are float16, else 'fp32'."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    if {"QuantizeLinear", "DequantizeLinear"} & ops:
        inits = {t.name: t.data_type for t in model.graph.initializer}
        zps = {
            inits.get(n.input[2])
            for n in model.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2
        }
        return "int8" if zps <= {onnx.TensorProto.INT8} else "int8-cpu"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return "fp16"
    return "fp32"


def plan_precision(precision: str, *, trt_version: str, graph: str, int8_fp16: bool = False) -> PrecisionPlan:
    """Choose network creation and builder flags for `precision` on TensorRT `trt_version`.

    `graph` is graph_precision() of the ONNX file to build. Raises GraphError (saying which export
    to use) where the wanted precision cannot come from this graph on this TensorRT. `int8_fp16`:
    TensorRT 10 may also run the float (non-Q/DQ) layers of an int8 graph in FP16.
    """
    if precision not in PRECISIONS:
        raise GraphError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    major = trt_major(trt_version)
    if major < 10:
        raise BackendUnavailable(f"TensorRT {trt_version} is too old; install TensorRT 10 or newer")
    if graph == "int8-cpu":
        raise GraphError(
            "this is the ONNX Runtime CPU form of INT8 (uint8 activations, int32 bias: precision "
            "'int8-cpu'), which TensorRT does not take; build the NAME_int8 graph (symmetric int8 Q/DQ)"
        )
    if precision == "int8" and graph != "int8":
        raise GraphError(
            "int8 needs a graph with Q/DQ nodes (explicit quantization); implicit INT8 calibration "
            "is not supported (removed in TensorRT 11). Export the Q/DQ twins with `codedresnext export "
            "CKPT --int8 DATA`, then build with --precision int8"
        )
    if graph == "int8" and precision != "int8":
        raise GraphError("this graph has Q/DQ nodes: build it with --precision int8")
    if major >= 11:
        if precision == "fp16" and graph != "fp16":
            raise GraphError(
                f"TensorRT {trt_version} builds strongly typed networks only (no FP16 builder flag): "
                "fp16 needs the FP16 graph; run `codedresnext export ... --fp16` and build that"
            )
        if precision == "fp32" and graph == "fp16":
            raise GraphError("this graph is FP16: build it with --precision fp16 (or use the fp32 export)")
        return PrecisionPlan(precision, True, ())
    # TensorRT 10: an FP16 (or Q/DQ) graph carries its own types -> strongly typed; else flags
    if graph == "fp16":
        if precision != "fp16":
            raise GraphError("this graph is FP16: build it with --precision fp16 (or use the fp32 export)")
        return PrecisionPlan(precision, True, ())
    flags = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16") if int8_fp16 else ("INT8",)}[precision]
    return PrecisionPlan(precision, False, flags)


def choose_source(
    entry: ManifestEntry, graphs: dict[str, ManifestEntry], precision: str, trt_version: str
) -> ManifestEntry:
    """Which manifest graph to build for `entry` at `precision`.

    fp16 on TensorRT 11+ must use the FP16 graph (`NAME_fp16`, precision "fp16"); on TensorRT 10 the
    fp32 graph with the FP16 builder flag is the JetPack-proven path, so the fp32 graph is built.
    int8 (TensorRT 10 and 11) builds the Q/DQ twin `NAME_int8` (precision "int8").
    """
    if precision == INT8:
        if entry.precision == INT8:
            return entry
        why = (
            "no INT8 (Q/DQ) twin of {name!r} in this export; re-export with "
            "`codedresnext export ... --int8 DATA`"
        )
        return _twin(graphs, entry, INT8, why)
    if precision == "fp16" and trt_major(trt_version) >= 11:
        why = (
            f"TensorRT {trt_version} needs the FP16 graph of {{name!r}} (strongly typed networks only); "
            "re-export with `codedresnext export ... --fp16`"
        )
        return _twin(graphs, entry, FP16, why)
    return entry


def _twin(graphs: dict, entry, precision: str, missing: str):
    """The `precision` twin of `entry` (NAME + its suffix), or GraphError(`missing` with the name)."""
    sib = graphs.get(entry.name + precision_suffix(precision))
    if sib is None or sib.precision != precision:
        raise GraphError(missing.format(name=entry.name))
    return sib


def profile_shapes(
    inputs: list[tuple[str, tuple[int | None, ...]]], *, min_batch: int, opt_batch: int, max_batch: int
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(min, opt, max) shapes per input: the batch (first, dynamic) dimension varies, the rest are fixed."""
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise GraphError(f"need 1 <= min <= opt <= max batch, got {min_batch}/{opt_batch}/{max_batch}")
    out = {}
    for name, shape in inputs:
        if any(d is None or d <= 0 for d in shape[1:]):
            raise GraphError(
                f"input {name!r} has dynamic non-batch dimensions {shape}; re-export with a fixed size"
            )
        rest = tuple(int(d) for d in shape[1:])
        out[name] = ((min_batch, *rest), (opt_batch, *rest), (max_batch, *rest))
    return out


def engine_cache_key(
    *,
    graph_sha256: str,
    precision: str,
    compute_capability: str,
    trt_version: str,
    profile: tuple[int, int, int],
) -> str:
    """Engines are not portable: the key changes with the graph, precision, GPU arch and TensorRT."""
    payload = json.dumps(
        {
            "graph": graph_sha256,
            "precision": precision,
            "sm": compute_capability,
            "trt": trt_version,
            "profile": list(profile),
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(payload.encode()).hexdigest()[:16]
    sm = compute_capability.replace(".", "")
    batch = "_".join(str(b) for b in profile)
    return f"{graph_sha256[:12]}-{precision}-sm{sm}-trt{trt_version}-b{batch}-{digest}"


def engine_cache_path(cache_dir: str | os.PathLike, key: str) -> Path:
    return Path(cache_dir) / f"{key}.plan"


def current_cuda_device() -> int:
    """The CUDA device TensorRT builds for and runs on: the CUDA runtime's current device.

    That is torch's current device where torch has initialised CUDA in this process, else CUDA ordinal
    0, i.e. the first device CUDA_VISIBLE_DEVICES (and CUDA_DEVICE_ORDER) expose. Not "GPU 0 of
    nvidia-smi": nvidia-smi ignores CUDA_VISIBLE_DEVICES and lists GPUs in PCI order.
    """
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return int(torch.cuda.current_device())
    return 0


def _load_libcuda():
    """The CUDA driver library (ctypes), or None where there is no NVIDIA driver."""
    import ctypes

    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


_CC_MAJOR, _CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR (cuda.h)


def _driver_capability(ordinal: int) -> str | None:
    """'major.minor' of CUDA device `ordinal` from the driver API (honours CUDA_VISIBLE_DEVICES)."""
    import ctypes

    lib = _load_libcuda()
    if lib is None or lib.cuInit(0) != 0:
        return None
    count = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return None
    if not 0 <= ordinal < count.value:
        raise BackendUnavailable(f"CUDA device {ordinal} does not exist: {count.value} visible device(s)")
    dev, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
    if lib.cuDeviceGet(ctypes.byref(dev), ordinal) != 0:
        return None
    if lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, dev) != 0:
        return None
    if lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, dev) != 0:
        return None
    return f"{major.value}.{minor.value}"


def gpu_compute_capability(device: int | None = None) -> str:
    """'8.7' style compute capability of the CUDA device in use (see current_cuda_device), asked of
    the CUDA driver, else torch; nvidia-smi only where it lists a single GPU (its order is not
    CUDA's); BackendUnavailable if there is no GPU."""
    import shutil
    import subprocess
    import sys

    ordinal = current_cuda_device() if device is None else int(device)
    cc = _driver_capability(ordinal)
    if cc:
        return cc
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and ordinal < torch.cuda.device_count():
        major, minor = torch.cuda.get_device_capability(ordinal)
        return f"{major}.{minor}"
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout.split()
        except (subprocess.SubprocessError, OSError):
            out = []
        if len(out) == 1 and ordinal == 0:
            return out[0]
        if len(out) > 1:
            raise BackendUnavailable(
                f"nvidia-smi lists {len(out)} GPUs but the CUDA driver library (libcuda) cannot be loaded to "
                "tell which one CUDA uses; fix the driver installation"
            )
    if Path("/etc/nv_tegra_release").exists():  # Jetson (JetPack 6 = Orin, sm 8.7) without libcuda
        return "8.7"
    raise BackendUnavailable("no NVIDIA GPU found (CUDA driver, torch.cuda, nvidia-smi): TensorRT needs one")
