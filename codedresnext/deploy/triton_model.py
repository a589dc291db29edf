"""Triton Python-backend models a CPU Triton can run: one per detector, and the cascade as one model.

Each model is REPO/<name>/config.pbtxt + REPO/<name>/1/{model.py, graphs, manifest.json}, where
model.py is triton_python_model.py: it opens the graphs with the project's runtime (ONNX Runtime),
so the decision rule and the cascade's per-sample exits are the same code as in-process. Detector
models are named "<graph>_py" and output "score" (the logits) and "decision" (score > the manifest
threshold); the cascade model "cascade_py" outputs each sample's "prediction", "exit_index" (the
number of exits for the final classifier) and "flops". Triton's own onnxruntime / TensorRT
backends are not needed, so the pip-installable server (nvidia-pytriton's) loads them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from .._io import atomic_path, write_text
from ..artifact import Manifest, ManifestEntry, load_manifest
from ..errors import GraphError
from ..runtime.backends import TensorSpec, onnx_io_specs
from .subset import detector_entries, segment_names, write_subset
from .triton import _model_name, batching_pbtxt, tensors_pbtxt

MODEL_SOURCE = Path(__file__).with_name("triton_python_model.py")
CASCADE_MODEL = "cascade_py"
PY_SUFFIX = "_py"


def python_config(
    name: str,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    params: dict[str, str],
    *,
    max_batch_size: int,
    preferred_batch: list[int],
    queue_delay_us: int,
    instances: int,
    preprocessing: str,
) -> str:
    """config.pbtxt of a Python-backend model (KIND_CPU: the runtime inside picks its device)."""
    comment = "".join(f"# {line}\n" for line in preprocessing.splitlines())
    pars = ",\n".join(
        f'  {{\n    key: "{k}"\n    value: {{ string_value: "{v}" }}\n  }}' for k, v in params.items()
    )
    return (
        comment + f'name: "{name}"\nbackend: "python"\nmax_batch_size: {max_batch_size}\n'
        f"input [\n{tensors_pbtxt(name, inputs)}\n]\noutput [\n{tensors_pbtxt(name, outputs)}\n]\n"
        + batching_pbtxt(max_batch_size, preferred_batch, queue_delay_us)
        + f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_CPU\n  }}\n]\n"
        + f"parameters [\n{pars}\n]\n"
    )


def preprocessing_note(manifest: Manifest, image_input: TensorSpec) -> str:
    """What a client must send, written at the top of config.pbtxt."""
    pre = manifest.preprocessing
    if np.dtype(image_input.dtype) == np.uint8:
        return (
            f'input "{image_input.name}": raw RGB uint8 frames, batch x H x W x 3 (HWC); the graph '
            "divides by 255 and normalises itself"
            + (f" (mean {list(pre.mean)}, std {list(pre.std)})" if pre else "")
        )
    how = f"(x / 255 - mean) / std per channel, mean {list(pre.mean)}, std {list(pre.std)}" if pre else ""
    return f'input "{image_input.name}": float32 RGB, batch x 3 x H x W (CHW), normalised {how}'.rstrip()


def _spec(name: str, dtype: type, width: int) -> TensorSpec:
    return TensorSpec(name, np.dtype(dtype), (None, width))


def _write_model(
    directory: Path,
    manifest: Manifest,
    model: str,
    graphs: list[ManifestEntry],
    outputs: list[TensorSpec] | None,
    params: dict[str, str],
    out: Path,
    batching: dict,
) -> Path:
    """outputs None: the graph's own (a "graph" model, one segment of a BLS cascade)."""
    first = directory / graphs[0].file
    inputs, own = onnx_io_specs(first)
    if outputs is None:
        outputs = own
    elif len(inputs) != 1:
        raise GraphError(
            f"{first} has inputs {[s.name for s in inputs]}; a served model needs one image input"
        )
    mdir = out / model
    write_subset(directory, [g.name for g in graphs], mdir / "1")
    with atomic_path(mdir / "1" / "model.py") as tmp:
        shutil.copyfile(MODEL_SOURCE, tmp)
    cfg = python_config(
        model, inputs, outputs, params, preprocessing=preprocessing_note(manifest, inputs[0]), **batching
    )
    write_text(mdir / "config.pbtxt", cfg)
    return mdir


def write_python_models(
    directory: str | os.PathLike,
    out: str | os.PathLike,
    *,
    graphs: list[str] | None = None,
    cascade: bool = True,
    max_batch_size: int = 32,
    preferred_batch: tuple[int, ...] = (8, 32),
    queue_delay_us: int = 500,
    instances: int = 1,
    threads: int = 1,
    segment_calls: str | None = None,
    cascade_model: str = CASCADE_MODEL,
) -> list[Path]:
    """One Python-backend model per detector graph (those in `graphs`, default all) and, when the
    export has fp32 segments and `cascade`, the cascade model. ORT threads per instance: `threads`.

    segment_calls: None, the cascade model runs its segments itself (ONNX Runtime); "engines", it
    sends each segment to the model named after the segment (the TensorRT plans `write_repository`
    writes with engines, on a GPU Triton) by BLS requests; "python", it does the same with one
    "<segment>_py" Python model per segment, written here (BLS on a CPU Triton)."""
    if segment_calls not in (None, "engines", "python"):
        raise GraphError(f"segment_calls must be None, 'engines' or 'python', not {segment_calls!r}")
    directory, out = Path(directory), Path(out)
    if max_batch_size < 1 or instances < 1 or threads < 1:
        raise GraphError("--max-batch-size, --instances and --threads must be >= 1")
    manifest = load_manifest(directory)
    detectors = detector_entries(manifest)
    if graphs:
        manifest.select(graphs)
        detectors = [g for g in detectors if g.name in graphs]
    segs = segment_names(manifest) if cascade else []
    if not detectors and not segs:
        raise GraphError(
            f"{directory} has no detector or segment graphs to serve; export with --classes or --segments"
        )
    batching = dict(
        max_batch_size=max_batch_size,
        preferred_batch=list(preferred_batch),
        queue_delay_us=queue_delay_us,
        instances=instances,
    )
    written = []
    for g in detectors:
        k = len(g.classes)
        outputs = [_spec("score", np.float32, k), _spec("decision", np.bool_, k)]
        params = {"codedresnext_kind": "detector", "graph": g.name, "threads": str(threads)}
        params["classes"] = ",".join(g.classes)
        model = _model_name(g.name) + PY_SUFFIX
        written.append(_write_model(directory, manifest, model, [g], outputs, params, out, batching))
    if segs:
        outputs = [
            _spec("prediction", np.int64, 1),
            _spec("exit_index", np.int64, 1),
            _spec("flops", np.float64, 1),
        ]
        params = {"codedresnext_kind": "cascade", "threads": str(threads), "segments": ",".join(segs)}
        entries = manifest.select(segs)
        if segment_calls:
            suffix = PY_SUFFIX if segment_calls == "python" else ""
            params["segment_models"] = ",".join(f"{g}={_model_name(g)}{suffix}" for g in segs)
        for g in entries if segment_calls == "python" else []:
            graph_params = {"codedresnext_kind": "graph", "graph": g.name, "threads": str(threads)}
            model = _model_name(g.name) + PY_SUFFIX
            written.append(_write_model(directory, manifest, model, [g], None, graph_params, out, batching))
        written.append(
            _write_model(directory, manifest, cascade_model, entries, outputs, params, out, batching)
        )
    return written
