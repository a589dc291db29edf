"""Early-exit inference over segment graphs, with batch compaction on the host.

Segments (GraphKind.SEGMENT graphs, in order) chain stem..block i, block i+1..j, ...: each passes the
next one its "features" (renamed as the next graph's input wants by artifact.handover_feed, the one
place that naming lives) and, except the last, reports its exit's class scores ("exit_scores",
softmax(-distance) of the early decoder). A sample stops at the first exit whose confidence (the
max exit score, or its margin over the runner-up: the segment's `exit_confidence`, which calibrate
picks) is above that exit's threshold; only the others run the next segment. Not built on
ONNX/TensorRT `If` (that decides per batch, not per sample). The cascade owns its segment backends:
`with EarlyExitClassifier.from_directory(D) as casc:` or `close()`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...artifact import (
    EXIT_CONFIDENCE_MAX,
    FP16,
    FP32,
    OUTPUT_EXIT_SCORES,
    OUTPUT_LOGITS,
    GraphKind,
    Manifest,
    ManifestEntry,
    check_exit_confidence,
    handover_feed,
    handover_source,
    is_int8,
    load_manifest,
)
from ...errors import GraphError
from ..backends import DEFAULT_BACKEND, Backend, Closing, open_backend
from .graphs import GraphRef, prepare_batch, resolve_graph
from .postprocess import exit_confidence, softmax


@dataclass
class CascadeResult:
    predictions: np.ndarray  # (B,) class index
    exit_index: np.ndarray  # (B,) 0..n_exits-1 for an early exit, n_exits for the final classifier
    confidence: np.ndarray  # (B,) the exit's confidence (early) or max softmax of the logits (final)
    flops: np.ndarray  # (B,) FLOPs spent on each sample (sum of the segments it ran)

    def mean_flops(self) -> float:
        return float(np.mean(self.flops)) if len(self.flops) else 0.0


def segment_entries(manifest: Manifest, precision: str = FP32) -> list[ManifestEntry]:
    """Segment graph entries in cascade order: the manifest's "segments" order if given (fp32), else
    the entries' segment index, else manifest order. precision "fp16" / "int8" / "int8-cpu" picks
    those twins."""
    segs = manifest.of_kind(GraphKind.SEGMENT, precision=precision)
    if not segs:
        raise GraphError(
            f"no {precision} segment graphs in this export; run `codedresnext export ... --segments`"
            + (" --fp16" if precision == FP16 else " --int8 DATA" if is_int8(precision) else "")
        )
    order = manifest.segments.order if manifest.segments else None
    if order and precision == FP32:
        by_name = {g.name: g for g in segs}
        if set(order) <= set(by_name):
            return [by_name[n] for n in order]
    if all(g.segment is not None for g in segs):
        segs = sorted(segs, key=lambda g: g.segment.index)
    return segs


class EarlyExitClassifier(Closing):
    """Runs segment graphs in cascade; thresholds[j] belongs to exit j (the j-th segment's exit)."""

    def __init__(
        self,
        refs: list[GraphRef],
        *,
        backend: str = DEFAULT_BACKEND,
        thresholds: list[float] | None = None,
        confidence: str | None = None,
        **options: Any,
    ) -> None:
        if not refs:
            raise GraphError("an early-exit cascade needs at least one segment graph")
        self.refs = refs
        self.segments: list[Backend] = []
        try:
            for r in refs:
                self.segments.append(open_backend(backend, r.path, **options))
            self._check_chain(refs)
        except BaseException:
            self.close()
            raise
        # exits: every segment but the last that outputs exit scores
        self.exit_segments = [
            i for i, s in enumerate(self.segments[:-1]) if OUTPUT_EXIT_SCORES in s.output_names
        ]
        n = len(self.exit_segments)
        if thresholds is None:
            thresholds = [_exit_threshold(refs[i]) for i in self.exit_segments]
        if len(thresholds) != n:
            self.close()
            raise GraphError(f"{len(thresholds)} thresholds given for {n} exits")
        self.thresholds = [float(t) for t in thresholds]
        try:  # per exit: "max" | "margin"
            rules = [confidence or _exit_confidence(refs[i]) for i in self.exit_segments]
            self.confidences = [check_exit_confidence(r) for r in rules]
        except GraphError:
            self.close()
            raise
        self.segment_flops = [float(r.flops) if r.flops is not None else np.nan for r in refs]

    def _check_chain(self, refs: list[GraphRef]) -> None:
        """One image input first, logits last, and each segment's inputs among the previous outputs."""
        first = self.segments[0]
        if len(first.inputs) != 1:
            raise GraphError(
                f"first segment {refs[0].path} must take one image input, has {first.input_names}"
            )
        if OUTPUT_LOGITS not in self.segments[-1].output_names:
            raise GraphError(f"last segment {refs[-1].path} has no {OUTPUT_LOGITS!r} output")
        for prev, nxt, r in zip(self.segments, self.segments[1:], refs[1:]):
            missing = [n for n in nxt.input_names if handover_source(n) not in prev.output_names]
            if missing:
                raise GraphError(
                    f"segment {r.name} needs {missing}, which the previous segment does not output"
                )

    def close(self) -> None:
        for seg in self.segments:
            seg.close()

    @classmethod
    def from_directory(
        cls, directory: str | os.PathLike, *, precision: str = FP32, verify_hash: bool = True, **kw: Any
    ) -> EarlyExitClassifier:
        """The `precision` segments of an export, verified (artifact.verified_graph); kw: thresholds,
        confidence, backend and backend options (check_finite=False skips the NaN/Inf check)."""
        entries = segment_entries(load_manifest(directory), precision)
        refs = [resolve_graph(directory, g.name, verify_hash=verify_hash) for g in entries]
        return cls(refs, **kw)

    @property
    def num_exits(self) -> int:
        return len(self.exit_segments)

    def _first_feed(self, x: Any) -> dict[str, np.ndarray]:
        spec = self.segments[0].inputs[0]
        return {spec.name: prepare_batch(x, spec.name, spec.shape, self.refs[0].preprocessing)}

    def predict(self, x: Any) -> CascadeResult:
        """Per-sample early exit with batch compaction: each segment runs only on the live samples."""
        feed = self._first_feed(x)
        B = next(iter(feed.values())).shape[0]
        preds = np.full(B, -1, np.int64)
        exit_idx = np.full(B, self.num_exits, np.int64)
        conf = np.zeros(B, np.float32)
        flops = np.zeros(B, np.float64)
        live = np.arange(B)  # original indices of the samples still running
        for si, seg in enumerate(self.segments):
            out = seg.infer({n: feed[n] for n in seg.input_names})
            flops[live] += self.segment_flops[si]
            if si == len(self.segments) - 1:
                logits = out[OUTPUT_LOGITS]
                preds[live] = logits.argmax(1)
                conf[live] = softmax(logits).max(1)
                break
            stop = np.zeros(len(live), bool)
            if si in self.exit_segments:
                j = self.exit_segments.index(si)
                scores = out[OUTPUT_EXIT_SCORES]
                c = exit_confidence(scores, self.confidences[j])
                stop = c > self.thresholds[j]
                preds[live[stop]] = scores[stop].argmax(1)
                exit_idx[live[stop]] = j
                conf[live[stop]] = c[stop]
            keep = ~stop
            live = live[keep]
            if len(live) == 0:
                break
            nxt = self.segments[si + 1]
            feed = handover_feed(out, nxt.input_names, keep)  # host compaction
        return CascadeResult(preds, exit_idx, conf, flops)

    def run_all(self, x: Any) -> tuple[list[np.ndarray], np.ndarray]:
        """Every segment on every sample: ([exit scores (B, K) per exit], final logits (B, K))."""
        feed = self._first_feed(x)
        exits = []
        for si, seg in enumerate(self.segments):
            out = seg.infer({n: feed[n] for n in seg.input_names})
            if si in self.exit_segments:
                exits.append(out[OUTPUT_EXIT_SCORES])
            if si == len(self.segments) - 1:
                return exits, out[OUTPUT_LOGITS]
            feed = handover_feed(out, self.segments[si + 1].input_names)
        raise AssertionError("unreachable")


def _exit_confidence(ref: GraphRef) -> str:
    """The confidence rule calibrate chose for a segment's exit ("max" before calibration)."""
    rule = ref.entry.exit_confidence if ref.entry else None
    return rule or EXIT_CONFIDENCE_MAX


def _exit_threshold(ref: GraphRef) -> float:
    """The calibrated exit threshold of a segment, or +inf (never exit) before calibration."""
    t = ref.entry.exit_threshold if ref.entry else None
    return float("inf") if t is None else t
