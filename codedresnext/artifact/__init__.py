"""The artifact format shared by export and runtime: names, typed manifest, preprocessing, ONNX reading.

Bottom layer: numpy/json (and onnx, imported lazily) only, no torch, no onnxruntime, so a device
with onnx + numpy can read and prune graphs. Submodules:
  keys           GraphKind, precisions, ONNX metadata keys, graph I/O names, file names
  records        strict JSON <-> dataclass conversion (unknown keys are a GraphError)
  manifest       Manifest / ManifestEntry and their parts (manifest.json)
  preprocessing  Preprocessing (how a graph wants its images) and normalize_frames
  handover       how a graph's outputs feed the next graph's inputs (segments, reject pairs)
  onnxfile       load_onnx / read_metadata (GraphError for missing or corrupt files)
  integrity      graph_file / verified_graph: the one way to open an entry's graph (contained,
                 sha256, metadata vs entry; ManifestError otherwise)
The imports below are the package's public names (one list; no __all__ repeats it).
"""

from __future__ import annotations

import os

from .graph_records import (
    CheckResult,
    ExitInfo,
    OutputError,
    RejectChoice,
    RejectFloor,
    RejectInfo,
    RejectProbeInfo,
    RejectRule,
    SegmentInfo,
    TensorInfo,
    Verification,
)
from .handover import features_input_name, handover_feed, handover_source
from .integrity import VerifiedGraph, check_plain_name, contained_path, graph_file, verified_graph
from .keys import (
    DETECTOR_KINDS,
    EXIT_CONFIDENCE_MARGIN,
    EXIT_CONFIDENCE_MAX,
    EXIT_CONFIDENCES,
    FP16,
    FP32,
    GRAPH_SUFFIX,
    HEAD_KINDS,
    IMAGE_INPUTS,
    INPUT_FEATURES_MIDDLE,
    INPUT_FLOAT,
    INPUT_UINT8,
    INT8,
    KINDS,
    MANIFEST_FORMAT,
    MANIFEST_FORMAT_V1,
    MANIFEST_NAME,
    META_CHECKPOINT_SHA256,
    META_CLASSES,
    META_EXITS,
    META_FORMAT,
    META_FORMAT_VERSION,
    META_GRAPH,
    META_KIND,
    META_MODEL_CONFIG,
    META_PREFIX,
    META_PREPROCESSING,
    META_THRESHOLDS,
    META_UNTRAINED,
    OUTPUT_EXIT_SCORES,
    OUTPUT_FEATURES,
    OUTPUT_LOGITS,
    OUTPUT_REJECT_DISTANCE,
    OUTPUT_REJECT_ENERGIES,
    PRECISIONS,
    SOURCE_CHECKPOINT,
    GraphKind,
    check_exit_confidence,
    check_precision,
    exit_energies_name,
    exit_scores_name,
    is_int8,
    precision_suffix,
    reject_distance_name,
    reject_energies_name,
)
from .manifest import (
    CheckpointInfo,
    Manifest,
    ManifestEntry,
    ModelInfo,
    SegmentOrder,
    VerificationSettings,
    finite_thresholds,
)
from .onnxfile import has_metadata, load_onnx, read_metadata
from .preprocessing import Preprocessing, normalize_frames
from .records import json_ready


def load_manifest(directory: str | os.PathLike) -> Manifest:
    """DIR/manifest.json as a Manifest (v1 converted); GraphError if missing, invalid or foreign."""
    return Manifest.load(directory)


def save_manifest(directory: str | os.PathLike, manifest: Manifest | dict) -> None:
    """Validate and write DIR/manifest.json atomically; a dict goes through Manifest.from_dict."""
    if isinstance(manifest, dict):
        manifest = Manifest.from_dict({"format": MANIFEST_FORMAT, **manifest})
    manifest.save(directory)
