"""Triton Inference Server model repository: REPO/<graph>/config.pbtxt + REPO/<graph>/1/model.onnx|plan.

Dims in config.pbtxt exclude the batch dimension because max_batch_size > 0 (Triton then batches
requests itself: dynamic_batching). I/O specs come from the graph file (the manifest's names/dtypes
are checked against it).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np

from .._io import atomic_path, write_text
from ..artifact import ManifestEntry, graph_file, load_manifest
from ..errors import GraphError
from ..runtime.backends import TensorSpec, onnx_io_specs

TRITON_DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "float64": "TYPE_FP64",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "bool": "TYPE_BOOL",
}
PLATFORMS = {"onnx": ("onnxruntime_onnx", "model.onnx"), "plan": ("tensorrt_plan", "model.plan")}


def _model_name(name: str) -> str:
    """Triton model names become directory names: keep letters, digits, '_', '-', '.'."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def tensors_pbtxt(name: str, specs: list[TensorSpec]) -> str:
    """config.pbtxt tensor entries; dims drop the (dynamic) batch dimension Triton batches over."""
    items = []
    for s in specs:
        if s.shape and s.shape[0] is not None:
            raise GraphError(
                f"{name}: tensor {s.name!r} has a fixed batch {s.shape[0]}; re-export with a "
                "dynamic batch dimension for Triton batching"
            )
        dims = ", ".join(str(d if d is not None else -1) for d in s.shape[1:])
        dt = TRITON_DTYPES.get(np.dtype(s.dtype).name)
        if dt is None:
            raise GraphError(f"{name}: no Triton type for {s.dtype} ({s.name})")
        items.append(f'  {{\n    name: "{s.name}"\n    data_type: {dt}\n    dims: [ {dims} ]\n  }}')
    return ",\n".join(items)


def batching_pbtxt(max_batch_size: int, preferred_batch: list[int], queue_delay_us: int) -> str:
    prefs = ", ".join(str(b) for b in preferred_batch if b <= max_batch_size)
    return (
        f"dynamic_batching {{\n  preferred_batch_size: [ {prefs} ]\n"
        f"  max_queue_delay_microseconds: {queue_delay_us}\n}}\n"
    )


def config_pbtxt(
    name: str,
    platform: str,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    *,
    max_batch_size: int,
    preferred_batch: list[int],
    queue_delay_us: int,
    instances: int,
    kind: str = "KIND_CPU",
) -> str:
    return (
        f'name: "{name}"\nplatform: "{platform}"\nmax_batch_size: {max_batch_size}\n'
        f"input [\n{tensors_pbtxt(name, inputs)}\n]\noutput [\n{tensors_pbtxt(name, outputs)}\n]\n"
        + batching_pbtxt(max_batch_size, preferred_batch, queue_delay_us)
        + f"instance_group [\n  {{\n    count: {instances}\n    kind: {kind}\n  }}\n]\n"
    )


def write_repository(
    directory: str | os.PathLike,
    out: str | os.PathLike,
    *,
    graphs: list[str] | None = None,
    engines: dict[str, str | os.PathLike] | None = None,
    max_batch_size: int = 32,
    preferred_batch: tuple[int, ...] = (8, 32),
    queue_delay_us: int = 500,
    instances: int = 1,
    gpu: bool = False,
    engine_profiles: dict[str, dict] | None = None,
) -> list[Path]:
    """Write one Triton model per graph (ONNX by default; a TensorRT plan where `engines` names one).

    A plan's batch profile ({"min", "opt", "max"}: `engine_profiles`, else the build record
    PLAN.json that `codedresnext build` writes beside it) must span 1..max_batch_size, since Triton
    sends batches of any size up to max_batch_size and refuses to load a plan whose profile is smaller.
    """
    directory, out = Path(directory), Path(out)
    manifest = load_manifest(directory)
    entries = manifest.graphs
    if graphs:
        manifest.select(graphs)  # GraphError naming any unknown graph
        entries = [g for g in entries if g.name in graphs]  # manifest order
    engines = engines or {}
    if max_batch_size < 1:
        raise GraphError("max_batch_size must be >= 1 (Triton batching needs a dynamic batch dimension)")
    # before writing anything: a refused plan or graph leaves no half-written repository
    sources = {g.name: graph_file(directory, g) for g in entries}  # verified against the manifest
    for g in entries:
        if g.name in engines:
            prof = (engine_profiles or {}).get(g.name) or engine_profile(engines[g.name])
            check_engine_profile(g.name, engines[g.name], prof, max_batch_size)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for g in entries:
        src = sources[g.name]
        inputs, outputs = onnx_io_specs(src)
        _check_manifest_io(g, inputs, outputs)
        fmt = "plan" if g.name in engines else "onnx"
        platform, fname = PLATFORMS[fmt]
        model = _model_name(g.name)
        mdir = out / model
        (mdir / "1").mkdir(parents=True, exist_ok=True)
        with atomic_path(mdir / "1" / fname) as tmp:
            shutil.copyfile(engines.get(g.name, src), tmp)
        cfg = config_pbtxt(
            model,
            platform,
            inputs,
            outputs,
            max_batch_size=max_batch_size,
            preferred_batch=list(preferred_batch),
            queue_delay_us=queue_delay_us,
            instances=instances,
            kind="KIND_GPU" if (gpu or fmt == "plan") else "KIND_CPU",
        )
        write_text(mdir / "config.pbtxt", cfg)
        written.append(mdir)
    return written


def engine_profile(plan: str | os.PathLike) -> dict | None:
    """The batch profile recorded beside an engine by `codedresnext build` (PLAN.json), or None."""
    import json

    meta = Path(plan).with_suffix(".json")
    try:
        return json.loads(meta.read_text()).get("profile")
    except (OSError, ValueError):
        return None


def check_engine_profile(name: str, plan, profile: dict | None, max_batch_size: int) -> None:
    """GraphError unless the engine's batch profile spans 1..max_batch_size (see write_repository)."""
    if not profile:
        raise GraphError(
            f"{name}: engine {plan} has no build record ({Path(plan).with_suffix('.json').name} beside "
            f"it), so max_batch_size {max_batch_size} cannot be checked against its batch profile; build "
            "it with `codedresnext build` and pass its engines-PRECISION.json"
        )
    lo, hi = int(profile["min"]), int(profile["max"])
    if max_batch_size > hi:
        raise GraphError(
            f"{name}: --max-batch-size {max_batch_size} exceeds the engine's profile (batch {lo}..{hi}); "
            f"Triton would refuse the model. Use --max-batch-size {hi} or rebuild with "
            f"`codedresnext build --batch 1,OPT,{max_batch_size}`"
        )
    if lo > 1:
        raise GraphError(
            f"{name}: the engine's profile starts at batch {lo}, but Triton sends batches from 1 up; rebuild "
            f"with `codedresnext build --batch 1,OPT,{hi}`"
        )


def _check_manifest_io(entry: ManifestEntry, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
    """The manifest's I/O names (when listed) must be the graph's real ones."""
    for key, names, specs in (
        ("inputs", entry.input_names, inputs),
        ("outputs", entry.output_names, outputs),
    ):
        if names and sorted(names) != sorted(s.name for s in specs):
            raise GraphError(
                f"manifest {key} of {entry.name} {names} differ from the graph's "
                f"{[s.name for s in specs]}; re-export"
            )


def parse_config(text: str) -> dict:
    """Minimal parser for the config.pbtxt subset written here (tests and users checking a repo)."""
    out: dict = {"input": [], "output": []}
    m = re.search(r'^name:\s*"([^"]+)"', text, re.M)
    out["name"] = m and m.group(1)
    m = re.search(r'^platform:\s*"([^"]+)"', text, re.M)
    out["platform"] = m and m.group(1)
    m = re.search(r'^backend:\s*"([^"]+)"', text, re.M)
    out["backend"] = m and m.group(1)
    m = re.search(r"^max_batch_size:\s*(\d+)", text, re.M)
    out["max_batch_size"] = int(m.group(1)) if m else None
    out["dynamic_batching"] = bool(re.search(r"^dynamic_batching\s*\{", text, re.M))
    for section in ("input", "output"):
        m = re.search(rf"^{section} \[\n(.*?)\n\]", text, re.M | re.S)
        if not m:
            continue
        for blk in re.finditer(r'name:\s*"([^"]+)"\s*data_type:\s*(\w+)\s*dims:\s*\[([^\]]*)\]', m.group(1)):
            dims = [int(d) for d in blk.group(3).replace(" ", "").split(",") if d]
            out[section].append({"name": blk.group(1), "data_type": blk.group(2), "dims": dims})
    return out
