"""User-facing errors: the CLI prints their message (which says how to fix it) and exits non-zero."""


class CodedResNeXtError(Exception):
    """Base class for errors caused by user input (files, names, shapes), not by bugs."""


class DataError(CodedResNeXtError):
    """A dataset path, archive or class list is missing or unusable."""


class CheckpointError(CodedResNeXtError):
    """A checkpoint is missing, corrupt or of another architecture."""


class GraphError(CodedResNeXtError):
    """An ONNX graph is missing, corrupt or lacks the codedresnext metadata."""


class MissingDependency(CodedResNeXtError):
    """An optional library (torch for train/export/evaluate, TensorRT, matplotlib, ...) is not installed."""


class BackendUnavailable(MissingDependency):
    """An optional inference backend (TensorRT, onnxruntime-gpu, torch) is not installed."""


class BackendClosed(CodedResNeXtError):
    """A backend, detector or cascade was used after close() (or after its `with` block ended)."""


class ManifestError(GraphError):
    """manifest.json, or a graph file it lists, is invalid, foreign or does not match the manifest."""


class NonFiniteInput(CodedResNeXtError, ValueError):
    """A float input batch holds NaN or infinity (the graphs would return NaN or plausible garbage)."""
