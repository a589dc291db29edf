"""One small interface over every inference backend: load a graph, infer dicts of numpy, time it.

No torch or onnxruntime at module level: a device that has only numpy and one runtime can import
this. Backends register by name in `BACKENDS` and import their library inside `load`. A backend
has a lifecycle (Polygraphy's runners are the model): `with open_backend(...) as be:` closes its
session / engine / device buffers at the end; `close()` does it by hand, is idempotent, and any
later `infer` raises BackendClosed.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ... import _optional
from ...artifact import load_onnx
from ...errors import BackendClosed, BackendUnavailable, GraphError, NonFiniteInput

# ONNX tensor element types -> numpy (the subset our graphs use)
_ONNX_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 9: np.bool_, 10: np.float16}


@dataclass(frozen=True)
class TensorSpec:
    """Name, numpy dtype and shape of one graph input/output; None marks a dynamic dimension."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": np.dtype(self.dtype).name, "shape": list(self.shape)}


@dataclass
class Timing:
    """Per-call wall-clock latencies in seconds, collected by `Backend.infer` when timing is on."""

    latencies_s: list[float] = field(default_factory=list)

    def reset(self) -> None:
        self.latencies_s.clear()


class Closing:
    """Context-manager protocol over `close()` for objects that own backends (detectors, cascades)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Backend:
    """Base class: `load(path)` once, then `infer({name: array}) -> {name: array}`, then `close()`.

    Subclasses implement `_load`, `_run` and (when they hold resources) `_close`; this class
    validates inputs, records timing and guards use after close.
    """

    name = "base"

    def __init__(self) -> None:
        self.path: Path | None = None
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self.timing = Timing()
        self.record_timing = False
        self.check_finite = True
        self._closed = False

    # -- interface -------------------------------------------------------------------------
    def load(self, path: str | os.PathLike, *, check_finite: bool = True, **options: Any) -> Backend:
        """check_finite=False skips the per-call NaN/Inf check of float inputs (for callers that
        validate upstream; see infer)."""
        self.check_finite = bool(check_finite)
        self.path = Path(path)
        if not self.path.is_file():
            raise GraphError(f"graph file {self.path} does not exist")
        self._load(self.path, **options)
        return self

    def infer(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Run one batch; `feeds` must name every graph input with its dtype. Float inputs holding
        NaN or Inf raise NonFiniteInput naming the batch indices (unless loaded with
        check_finite=False): fp32 graphs would answer NaN, int8 ones plausible finite garbage."""
        self._check_open()
        self._check_feeds(feeds)
        t0 = time.perf_counter()
        out = self._run(feeds, outputs)
        if self.record_timing:
            self.timing.latencies_s.append(time.perf_counter() - t0)
        return out

    def info(self) -> dict:
        """What a benchmark records about this backend (library version, providers, threads)."""
        return {"backend": self.name}

    def random_feed(self, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
        """Seeded random inputs of batch size `batch` for every input (uint8 in [0, 255], else N(0, 1)):
        what benchmarks and the memory probe run, since timing does not depend on the values."""
        rng = np.random.default_rng(seed)
        feeds = {}
        for s in self.inputs:
            shape = (batch, *[d or 1 for d in s.shape[1:]])
            if s.dtype == np.uint8:
                feeds[s.name] = rng.integers(0, 256, shape, dtype=np.uint8)
            else:
                feeds[s.name] = rng.standard_normal(shape).astype(s.dtype)
        return feeds

    def close(self) -> None:
        """Release the session / engine / buffers; idempotent. Later `infer` raises BackendClosed."""
        if not self._closed:
            self._closed = True
            self._close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- to implement ----------------------------------------------------------------------
    def _load(self, path: Path, **options: Any) -> None:
        raise NotImplementedError

    def _run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _close(self) -> None:
        """Free what `_load` acquired (nothing by default)."""

    # -- helpers ---------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def _check_open(self) -> None:
        if self._closed:
            raise BackendClosed(
                f"the {self.name} backend for {self.path} was closed; open the graph again "
                "(open_backend) to run it"
            )

    def _check_feeds(self, feeds: dict[str, np.ndarray]) -> None:
        missing = [s.name for s in self.inputs if s.name not in feeds]
        if missing:
            raise GraphError(f"missing input(s) {missing}; {self.path} takes {self.input_names}")
        for s in self.inputs:
            a = feeds[s.name]
            if not isinstance(a, np.ndarray) or a.dtype != s.dtype:
                got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
                raise GraphError(
                    f"input {s.name!r} must be a numpy {np.dtype(s.dtype).name} array, not {got}"
                )
            if len(a.shape) != len(s.shape) or any(
                d is not None and d != n for d, n in zip(s.shape, a.shape)
            ):
                raise GraphError(f"input {s.name!r} has shape {a.shape}; the graph expects {_fmt(s.shape)}")
            if self.check_finite and a.dtype.kind == "f":
                check_finite(a, s.name)


def check_finite(a: np.ndarray, name: str) -> None:
    """NonFiniteInput naming the batch indices of `a` (batch first) that hold NaN or Inf.

    The fast path is one float64 sum (NaN/Inf propagate, finite float32/float16 values cannot
    overflow it); only a failing batch pays for the per-sample scan."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf: NaN, the answer we look for
        if np.isfinite(np.sum(a, dtype=np.float64)):
            return
    bad = np.flatnonzero(~np.isfinite(a.reshape(len(a), -1)).all(axis=1)) if a.ndim else np.array([0])
    shown = ", ".join(map(str, bad[:10])) + (f", ... ({len(bad)} in all)" if len(bad) > 10 else "")
    raise NonFiniteInput(
        f"input {name!r} holds NaN or Inf at batch index {shown}; drop or repair those samples "
        "(or open the graph with check_finite=False if the caller validates its inputs)"
    )


def _fmt(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"


def onnx_io_specs(path: str | os.PathLike) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of an ONNX file, read with onnx (no runtime needed)."""
    model = load_onnx(path)

    def spec(v) -> TensorSpec:
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
        return TensorSpec(v.name, np.dtype(_ONNX_DTYPES.get(t.elem_type, np.float32)), dims)

    inits = {i.name for i in model.graph.initializer}
    return [spec(v) for v in model.graph.input if v.name not in inits], [spec(v) for v in model.graph.output]


@dataclass(frozen=True)
class BackendInfo:
    """A backend's registry entry: where it lives and what it can do. Code outside backends/ asks
    these questions instead of comparing backend names."""

    name: str  # the CLI's --backend value
    label: str  # what reports call it
    module: str  # where its Backend subclass lives
    cls: str
    library: str  # the Python module it imports in load (its version goes into reports)
    streams: bool = False  # several concurrent sessions in one process (bench --streams)
    providers: bool = False  # takes provider= and spinning= (execution providers, intra-op threads)
    devices: bool = False  # takes device= (cpu / cuda) and cuda_graph=
    batch_profile: bool = False  # builds for a batch range: batch=(min, opt, max)
    builds_precision: bool = False  # builds each twin at its graph's precision (precision=); runs
    # only the Q/DQ int8 form, not ONNX Runtime's CPU int8 form


# the registry: CLI choices (commands/) and open_backend read it; "ort" is the default
DEFAULT_BACKEND = "ort"
BACKENDS: dict[str, BackendInfo] = {
    b.name: b
    for b in (
        BackendInfo(
            "ort",
            "ONNX Runtime",
            "codedresnext.runtime.backends.onnxrt.session",
            "OrtBackend",
            "onnxruntime",
            streams=True,
            providers=True,
        ),
        BackendInfo(
            "trt",
            "TensorRT",
            "codedresnext.runtime.backends.trt.engine",
            "TrtBackend",
            "tensorrt",
            batch_profile=True,
            builds_precision=True,
        ),
        BackendInfo(
            "torch",
            "the ONNX graph through PyTorch",
            "codedresnext.runtime.backends.pytorch.runner",
            "TorchBackend",
            "torch",
            devices=True,
        ),
    )
}


def backend_info(kind: str) -> BackendInfo:
    """The registry entry of `kind`; BackendUnavailable naming the choices for an unknown one."""
    if kind not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {kind!r}; choose one of {sorted(BACKENDS)}")
    return BACKENDS[kind]


def open_backend(kind: str, path: str | os.PathLike, **options: Any) -> Backend:
    """Load `path` on backend `kind` (a BACKENDS key); BackendUnavailable if not installed.

    Use it as a context manager (`with open_backend(...) as be:`) or call `be.close()`."""
    import importlib

    info = backend_info(kind)
    backend: Backend = getattr(importlib.import_module(info.module), info.cls)()
    try:
        return backend.load(path, **options)
    except BaseException:
        with contextlib.suppress(Exception):  # free what _load acquired; the load error is the news
            backend.close()
        raise


def require(module: str, package: str, why: str) -> Any:
    """Import `module` or raise BackendUnavailable naming the pip package that provides it."""
    return _optional.require(module, why=why, install=f"pip install {package}", error=BackendUnavailable)
