"""Run a graph with ONNX Runtime and compare EVERY output it declares with the PyTorch reference.

Errors per output: max_abs = max |ort - ref|; max_rel = max_abs / max(max |ref|, 1e-6), i.e.
relative to the output's largest magnitude (an elementwise ratio explodes near zero logits).
Pass rule: max_abs <= tolerance for logits, exit scores/energies and reject distances (the issue's
"1e-4 abs on logits"); for the "features" hand-over tensor of segments, whose activations can be
large, max_abs <= tolerance * max(1, max |ref|).

Completeness: the outputs a graph declares and the outputs `Reference` computes for its spec
must be the same set. An output added to the builder but not to export/reference.py would
otherwise never be checked; `check_coverage` makes the export fail and names it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..artifact import INPUT_FLOAT, INPUT_UINT8, OUTPUT_FEATURES, CheckResult, OutputError, Verification
from ..errors import CodedResNeXtError
from ..runtime.backends.onnxrt.session import create_session


class UnverifiedOutputError(CodedResNeXtError):
    """A graph declares an output the PyTorch reference does not produce (or lacks one it does)."""


@dataclass
class VerifyRun:
    """One verification input set: the reference for it and what the first graph input gets."""

    reference: object  # export.reference.Reference (torch), called with a GraphSpec
    graph_input: np.ndarray  # images (float NCHW) or frames (uint8 NHWC) for graphs starting at 0


def ort_session(model_bytes: bytes):
    """A one-thread ONNX Runtime session (small verification batches; no contention on shared hosts)."""
    return create_session(model_bytes, threads=1)


def check_coverage(graph: str, declared: list[str], expected: dict[str, np.ndarray]) -> None:
    """UnverifiedOutputError unless the graph's declared outputs are exactly the reference's."""
    unverified = [n for n in declared if n not in expected]
    missing = [n for n in expected if n not in declared]
    if unverified:
        raise UnverifiedOutputError(
            f"graph {graph!r} declares output(s) {unverified} that the PyTorch reference "
            "(export/reference.py, Reference.__call__) does not compute, so they cannot be verified; "
            "add them to the reference (nothing was written)"
        )
    if missing:
        raise UnverifiedOutputError(
            f"graph {graph!r} lacks output(s) {missing} that the PyTorch reference computes for its "
            "spec; the builder and export/reference.py disagree (nothing was written)"
        )


def compare(got: dict[str, np.ndarray], ref: dict[str, np.ndarray], tolerance: float) -> CheckResult:
    per = {}
    passed = True
    for name, r in ref.items():
        g = got[name].astype(np.float64)
        r = r.astype(np.float64)
        if g.shape != r.shape:
            per[name] = OutputError(float("inf"), float("inf"), list(g.shape))
            passed = False
            continue
        scale = float(np.abs(r).max()) if r.size else 0.0
        err = float(np.abs(g - r).max()) if r.size else 0.0
        per[name] = OutputError(err, err / max(scale, 1e-6))
        limit = tolerance * max(1.0, scale) if name == OUTPUT_FEATURES else tolerance
        passed &= bool(err <= limit)
    return CheckResult(
        max_abs=max((v.max_abs for v in per.values()), default=0.0),
        max_rel=max((v.max_rel for v in per.values()), default=0.0),
        outputs=per,
        passed=passed,
    )


def verify_graph(
    name: str, model_bytes: bytes, spec, runs: dict[str, VerifyRun], tolerance: float, images_note: str
) -> Verification:
    """Run the graph on every run's input and compare all its declared outputs with the reference."""
    sess = ort_session(model_bytes)
    declared = [o.name for o in sess.get_outputs()]
    results: dict[str, CheckResult] = {}
    for key, run in runs.items():
        feed, expected = run.reference(spec)
        check_coverage(name, declared, expected)
        if spec.start == 0:
            feed = run.graph_input
        got = dict(zip(declared, sess.run(declared, {sess.get_inputs()[0].name: feed})))
        results[key] = compare(got, expected, tolerance)
    return Verification(
        tolerance=tolerance,
        random=results.get("random"),
        images=results.get("images") or CheckResult(skipped=images_note),
        max_abs=max((r.max_abs for r in results.values()), default=0.0),  # over random and images
        max_rel=max((r.max_rel for r in results.values()), default=0.0),
        passed=all(r.passed for r in results.values()),
    )


def input_name(uint8: bool) -> str:
    return INPUT_UINT8 if uint8 else INPUT_FLOAT
