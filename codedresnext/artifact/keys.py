"""Names of the artifact format: graph kinds, precisions, ONNX metadata keys, I/O names, file names.

Every module spells these through the constants here, so a kind or a tensor name has one
definition. Values are what manifests and graph metadata hold on disk.
"""

from __future__ import annotations

import enum

from ..errors import GraphError

MANIFEST_FORMAT = "codedresnext-manifest-v2"
MANIFEST_FORMAT_V1 = "codedresnext-manifest-v1"  # same fields, not validated; loads (converted)
MANIFEST_NAME = "manifest.json"
SOURCE_CHECKPOINT = "source.pt"  # the weights an export's graphs came from (PyTorch peer, re-export)
GRAPH_SUFFIX = ".onnx"


class GraphKind(str, enum.Enum):
    """What a graph computes. The values are the strings manifests and metadata have always held.

    A str subclass that formats and JSON-encodes as its value (enum.StrEnum needs Python 3.11).
    """

    FULL = "full"  # the whole classifier, (batch, K) logits
    CLASS = "class"  # one class's path, physically pruned: (batch, 1) logit
    SUBSET = "subset"  # the union of several classes' paths: one logit per chosen class
    MULTI_EXIT = "multi-exit"  # full graph + every coded block's early decoder
    SEGMENT = "segment"  # a block range of the cascade (features hand-over, exit scores)
    MASKED = "masked"  # the paper's masked per-class graph (full size, zeroed branches)
    REJECT = "reject"  # early-reject pair part a (distance, energies, features) or part b (logit)
    REJECT_PROBE = (
        "reject-probe"  # a class path reporting the reject distance + energies at every coded block
    )

    __str__ = str.__str__
    __format__ = str.__format__

    # Traits the runtime asks a kind (instead of comparing kind strings); each kind's export side
    # (what it cuts and outputs) is export/kinds/<kind>.py (docs/graph-kinds.md).
    @property
    def is_detector(self) -> bool:
        """Per-class binary graphs with decision thresholds (one logit per kept class)."""
        return self in _DETECTORS

    @property
    def is_head(self) -> bool:
        """Full-network graphs that carry every weight: the pruner can start from them."""
        return self in _HEADS

    @property
    def standalone(self) -> bool:
        """Runs alone on images to logits; segments and reject parts need the cascade / reject APIs."""
        return self not in _PARTS

    @classmethod
    def parse(cls, value: str, where: str = "kind") -> GraphKind:
        try:
            return cls(value)
        except ValueError:
            raise GraphError(
                f"{where}: unknown graph kind {value!r}; one of {[k.value for k in cls]}"
            ) from None


_DETECTORS = frozenset({GraphKind.CLASS, GraphKind.SUBSET})
_HEADS = frozenset({GraphKind.FULL, GraphKind.MULTI_EXIT})
_PARTS = frozenset({GraphKind.SEGMENT, GraphKind.REJECT})

KINDS = tuple(k.value for k in GraphKind)
DETECTOR_KINDS = tuple(k for k in GraphKind if k.is_detector)  # graphs with per-class decision thresholds
HEAD_KINDS = tuple(k for k in GraphKind if k.is_head)  # full-network graphs the pruner can start from

# Precisions of a graph's compute. "int8" is explicit quantization (Q/DQ, symmetric, the form
# TensorRT builds from); names starting with "int8-" are other int8 forms (e.g. "int8-cpu").
FP32, FP16, INT8 = "fp32", "fp16", "int8"
PRECISIONS = (FP32, FP16, INT8)
INT8_VARIANT_PREFIX = "int8-"


# How a segment's exit scores become the confidence its threshold is compared with (calibrate picks):
# "max" = the top score (docs/method.md section 6: softmax(-distance)), "margin" = top score minus
# the runner-up.
EXIT_CONFIDENCE_MAX, EXIT_CONFIDENCE_MARGIN = "max", "margin"
EXIT_CONFIDENCES = (EXIT_CONFIDENCE_MAX, EXIT_CONFIDENCE_MARGIN)


def check_exit_confidence(value: str, where: str = "exit_confidence") -> str:
    if value in EXIT_CONFIDENCES:
        return value
    raise GraphError(f"{where}: unknown exit confidence {value!r}; one of {list(EXIT_CONFIDENCES)}")


def check_precision(value: str, where: str = "precision") -> str:
    """`value` if it names a precision ("fp32", "fp16", "int8" or "int8-<form>"), else GraphError."""
    if isinstance(value, str) and (
        value in PRECISIONS
        or (value.startswith(INT8_VARIANT_PREFIX) and len(value) > len(INT8_VARIANT_PREFIX))
    ):
        return value
    raise GraphError(f"{where}: unknown precision {value!r}; one of {list(PRECISIONS)} or 'int8-<form>'")


def is_int8(precision: str) -> bool:
    return precision == INT8 or precision.startswith(INT8_VARIANT_PREFIX)


def precision_suffix(precision: str) -> str:
    """File-stem suffix of a precision twin: "" for fp32, "_fp16", "_int8", "_int8-cpu" -> "_int8_cpu"."""
    return "" if precision == FP32 else "_" + precision.replace("-", "_")


# ONNX metadata_props keys (values are JSON)
META_FORMAT = "codedresnext.format"  # "1"
META_FORMAT_VERSION = "1"
META_MODEL_CONFIG = "codedresnext.model_config"  # ModelConfig.to_dict(): stages with codewords, classes
META_KIND = "codedresnext.kind"  # a GraphKind value
META_CLASSES = "codedresnext.classes"  # class names of the outputs, in output order
META_THRESHOLDS = "codedresnext.thresholds"  # {class name: logit threshold} for detectors
META_PREPROCESSING = "codedresnext.preprocessing"  # Preprocessing.to_dict()
META_CHECKPOINT_SHA256 = "codedresnext.checkpoint_sha256"
META_UNTRAINED = "codedresnext.untrained"  # true for `export --preset` random weights
META_EXITS = "codedresnext.exits"  # multi-exit / segment exit descriptions
META_GRAPH = "codedresnext.graph"  # what this graph computes: block range, kept branches, precision
META_PREFIX = "codedresnext."

# Graph I/O names
INPUT_FLOAT = "images"  # float32 (batch, 3, H, W), normalised with mean/std
INPUT_UINT8 = "frames"  # uint8 (batch, H, W, 3) RGB, preprocessing inside the graph
IMAGE_INPUTS = (INPUT_FLOAT, INPUT_UINT8)
OUTPUT_LOGITS = "logits"  # (batch, K) full, (batch, k) class/subset
OUTPUT_FEATURES = "features"  # segment hand-over tensor
# A middle segment (features in AND out) cannot reuse one name for both (ONNX SSA): its input is this.
INPUT_FEATURES_MIDDLE = "features_in"
OUTPUT_EXIT_SCORES = "exit_scores"  # (batch, K) softmax(-distance) of an early decoder
OUTPUT_REJECT_DISTANCE = "reject_distance"  # (batch, 1) ||v - w_k|| at the reject block (early reject)
# (batch, N) the normalised energies of ALL branches at the reject block (a learned reject rule reads them)
OUTPUT_REJECT_ENERGIES = "reject_energies"


def exit_scores_name(j: int) -> str:
    """Multi-exit output of the j-th coded block's early decoder (j counts coded blocks only)."""
    return f"exit{j}_scores"


def exit_energies_name(j: int) -> str:
    return f"exit{j}_energies"


def reject_distance_name(block: int) -> str:
    """Reject-probe output: the reject part A distance ("reject_distance") of a pair cut at `block`
    (block index over all blocks), for every coded block at once (calibration picks the block)."""
    return f"reject_distance_block{block}"


def reject_energies_name(block: int) -> str:
    """Reject-probe output: the normalised energies part A of a pair cut at `block` computes."""
    return f"reject_energies_block{block}"
