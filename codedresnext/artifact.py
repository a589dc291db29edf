"""The artifact format shared by export and runtime: ONNX metadata keys, I/O names, manifest.

Bottom layer: numpy/json only (no torch, no onnxruntime), so a device with onnx + numpy can read
and prune graphs. Metadata values are JSON strings under the keys below.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ._io import write_json
from .errors import GraphError

MANIFEST_FORMAT = "codedresnext-manifest-v1"
MANIFEST_NAME = "manifest.json"

# ONNX metadata_props keys (values are JSON)
META_FORMAT = "codedresnext.format"  # "1"
META_MODEL_CONFIG = "codedresnext.model_config"  # ModelConfig.to_dict(): stages with codewords, classes
META_KIND = "codedresnext.kind"  # one of KINDS
META_CLASSES = "codedresnext.classes"  # class names of the outputs, in output order
META_THRESHOLDS = "codedresnext.thresholds"  # {class name: logit threshold} for detectors
META_PREPROCESSING = "codedresnext.preprocessing"  # {"mean", "std", "size", "layout", "dtype"}
META_CHECKPOINT_SHA256 = "codedresnext.checkpoint_sha256"
META_UNTRAINED = "codedresnext.untrained"  # true for `export --preset` random weights
META_EXITS = "codedresnext.exits"  # multi-exit / segment exit descriptions
META_GRAPH = "codedresnext.graph"  # what this graph computes: block range, kept branches, precision

KINDS = ("full", "class", "subset", "multi-exit", "segment", "masked", "reject", "reject-probe")

# Graph I/O names
INPUT_FLOAT = "images"  # float32 (batch, 3, H, W), normalised with mean/std
INPUT_UINT8 = "frames"  # uint8 (batch, H, W, 3) RGB, preprocessing inside the graph
OUTPUT_LOGITS = "logits"  # (batch, K) full, (batch, k) class/subset
OUTPUT_FEATURES = "features"  # segment hand-over tensor
# A middle segment (features in AND out) cannot reuse one name for both (ONNX SSA): its input is this.
INPUT_FEATURES_MIDDLE = "features_in"
OUTPUT_EXIT_SCORES = "exit_scores"  # (batch, K) softmax(-distance) of an early decoder
OUTPUT_REJECT_DISTANCE = "reject_distance"  # (batch, 1) ||v - w_k|| at the reject block (early reject)


def features_input_name(*, head: bool) -> str:
    """Input name of a graph that starts after the stem: "features" when it ends with the head (its
    only feature tensor), "features_in" when it also hands features on (ONNX SSA: one name cannot be
    input and output). `handover_source` is the runtime's inverse: keep the two together."""
    return OUTPUT_FEATURES if head else INPUT_FEATURES_MIDDLE


def handover_source(input_name: str) -> str:
    """The previous graph's output that feeds `input_name` of the next one (segments, reject part B).

    "features_in" and "features" both take the previous graph's "features"; any other name is passed
    on under its own name (graphs that agree on names, e.g. hand-made ones)."""
    return OUTPUT_FEATURES if input_name in (INPUT_FEATURES_MIDDLE, OUTPUT_FEATURES) else input_name


def handover_feed(outputs: dict[str, Any], input_names: list[str], keep: Any = None) -> dict[str, Any]:
    """{next graph input: previous graph output}, rows `keep` only (host batch compaction) if given."""
    feed = {}
    for n in input_names:
        src = handover_source(n)
        if src not in outputs:
            raise GraphError(
                f"the next graph needs {n!r} (from output {src!r}); the previous one outputs "
                f"{sorted(outputs)}"
            )
        feed[n] = outputs[src] if keep is None else outputs[src][keep]
    return feed


def exit_scores_name(j: int) -> str:
    """Multi-exit output of the j-th coded block's early decoder (j counts coded blocks only)."""
    return f"exit{j}_scores"


def exit_energies_name(j: int) -> str:
    return f"exit{j}_energies"


def reject_distance_name(block: int) -> str:
    """Reject-probe output: the reject part A distance ("reject_distance") of a pair cut at `block`
    (block index over all blocks), for every coded block at once (calibration picks the block)."""
    return f"reject_distance_block{block}"


def read_metadata(model_or_path: Any) -> dict[str, Any]:
    """Decode the codedresnext.* metadata of an onnx.ModelProto or file; GraphError if absent."""
    import onnx

    if isinstance(model_or_path, (str, os.PathLike)):
        path = Path(model_or_path)
        if not path.is_file():
            raise GraphError(f"ONNX file {path} does not exist")
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # onnx raises DecodeError and others for corrupt files
            raise GraphError(f"{path} is not a readable ONNX file ({e}); re-export it") from e
    else:
        model = model_or_path
    props = {p.key: p.value for p in model.metadata_props}
    if META_FORMAT not in props:
        raise GraphError(
            "this ONNX graph has no codedresnext metadata; export it with `codedresnext export` "
            "(the pruner needs the coding scheme stored there)"
        )
    out = {}
    for k, v in props.items():
        if k.startswith("codedresnext."):
            try:
                out[k] = json.loads(v)
            except json.JSONDecodeError:
                out[k] = v
    return out


def load_manifest(directory: str | os.PathLike) -> dict:
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise GraphError(f"no {MANIFEST_NAME} in {directory}; run `codedresnext export` to create one")
    try:
        m = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise GraphError(f"{path} is not valid JSON: {e}") from e
    if m.get("format") != MANIFEST_FORMAT:
        raise GraphError(f"{path} is not a codedresnext manifest (format {m.get('format')!r})")
    return m


def save_manifest(directory: str | os.PathLike, manifest: dict) -> None:
    manifest = {"format": MANIFEST_FORMAT, **{k: v for k, v in manifest.items() if k != "format"}}
    write_json(Path(directory) / MANIFEST_NAME, manifest)


def find_graph(manifest: dict, name: str) -> dict:
    for g in manifest.get("graphs", []):
        if g["name"] == name:
            return g
    names = [g["name"] for g in manifest.get("graphs", [])]
    raise GraphError(f"no graph named {name!r} in the manifest; available: {names}")
