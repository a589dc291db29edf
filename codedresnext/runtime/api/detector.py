"""Application API for binary and subset detectors, with an optional early-reject stage.

Graphs from an export directory are verified against the manifest (artifact.verified_graph;
verify_hash=False skips the sha256) and float batches with NaN/Inf are refused per call
(NonFiniteInput; check_finite=False, passed on to the backend, opts out).

A detector is one pruned graph (GraphKind.CLASS: one logit; GraphKind.SUBSET: one logit per chosen
class) and a logit threshold per class from the manifest entry or the graph metadata. Detectors own
the backends they open: `with Detector(...) as det:` (or `det.close()`) releases them, and a closed
detector raises BackendClosed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...artifact import (
    FP32,
    OUTPUT_FEATURES,
    OUTPUT_LOGITS,
    OUTPUT_REJECT_DISTANCE,
    OUTPUT_REJECT_ENERGIES,
    GraphKind,
    RejectRule,
    handover_feed,
    load_manifest,
)
from ...errors import GraphError
from ..backends import DEFAULT_BACKEND, Backend, Closing, open_backend
from .graphs import GraphRef, prepare_batch, resolve_graph
from .postprocess import reject_score

# how a class graph gets its decision threshold (fitted on training images, written into the export)
THRESHOLD_FIX = "codedresnext evaluate CHECKPOINT --data DATA --graphs EXPORT_DIR"


class GraphModel(Closing):
    """A graph on a backend with the batch preparation its input needs (owns the backend)."""

    def __init__(self, ref: GraphRef, backend: str, **options: Any) -> None:
        self.ref = ref
        self.backend: Backend = open_backend(backend, ref.path, **options)
        if len(self.backend.inputs) != 1:
            self.backend.close()
            raise GraphError(f"{ref.path} has inputs {self.backend.input_names}; expected one image input")
        self.input = self.backend.inputs[0]

    def prepare(self, x: Any) -> np.ndarray:
        return prepare_batch(x, self.input.name, self.input.shape, self.ref.preprocessing)

    def run(self, x: Any) -> dict[str, np.ndarray]:
        return self.backend.infer({self.input.name: self.prepare(x)})

    def close(self) -> None:
        self.backend.close()

    @property
    def closed(self) -> bool:
        return self.backend.closed


class SubsetDetector(GraphModel):
    """One logit per chosen class; decide() -> (batch, k) booleans, logit > that class's threshold."""

    def __init__(
        self,
        source: str | os.PathLike,
        name: str | None = None,
        *,
        backend: str = DEFAULT_BACKEND,
        thresholds: dict[str, float] | None = None,
        verify_hash: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(resolve_graph(source, name, verify_hash=verify_hash), backend, **options)
        self.classes = self.ref.classes
        self._thresholds = {**self.ref.thresholds(), **(thresholds or {})}

    @property
    def thresholds(self) -> np.ndarray:
        missing = [c for c in self.classes if c not in self._thresholds]
        if missing:
            raise GraphError(
                f"no decision threshold for {missing} in {self.ref.path} or its manifest yet; fit them with "
                f"`{THRESHOLD_FIX}` or pass thresholds={{class: value}}"
            )
        return np.array([self._thresholds[c] for c in self.classes], np.float32)

    def score(self, x: Any) -> np.ndarray:
        """(batch, k) logits."""
        return self.run(x)[OUTPUT_LOGITS]

    def decide(self, x: Any) -> np.ndarray:
        return self.score(x) > self.thresholds


class Detector(SubsetDetector):
    """Binary detector for one class graph: score() -> (batch,) logit, decide() -> (batch,) bool."""

    def __init__(
        self,
        source: str | os.PathLike,
        name: str | None = None,
        *,
        backend: str = DEFAULT_BACKEND,
        threshold: float | None = None,
        verify_hash: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(source, name, backend=backend, verify_hash=verify_hash, **options)
        if len(self.classes) != 1:
            self.close()
            raise GraphError(
                f"{self.ref.name} covers classes {self.classes}; Detector needs a one-class "
                "graph (use SubsetDetector for several)"
            )
        self.class_name = self.classes[0]
        if threshold is not None:
            self._thresholds[self.class_name] = float(threshold)

    @property
    def threshold(self) -> float:
        return float(self.thresholds[0])

    def score(self, x: Any) -> np.ndarray:
        return super().score(x)[:, 0]

    def decide(self, x: Any) -> np.ndarray:
        return self.score(x) > self.threshold


@dataclass
class RejectResult:
    scores: np.ndarray  # (B,) logits; -inf where rejected early
    decisions: np.ndarray  # (B,) bool
    rejected: np.ndarray  # (B,) bool, stopped after part A
    distance: np.ndarray  # (B,) the reject score: part A's reject_distance, or the learned rule's score
    flops: np.ndarray  # (B,) FLOPs spent per sample (nan where the manifest has no FLOPs)
    all_scores: np.ndarray | None = None  # (B,) part B logits of every sample (with_b_for_all only)
    energies: np.ndarray | None = None  # (B, N) part A's normalised energies (None: an older export)


class RejectDetector(Closing):
    """Early reject: part A (stem .. an early coded block) outputs "reject_distance", the energies
    and "features"; samples whose reject score exceeds `reject_threshold` are negatives at once, the
    rest go on (compacted) to part B ("logits"). The score is the distance, or the learned rule's
    score of the energies when part A's manifest entry carries one (`calibrate`; reject_rule= a
    RejectRule overrides it, "distance" forces the distance). Owns both backends (close() / `with`).
    """

    def __init__(
        self,
        part_a: str | os.PathLike,
        part_b: str | os.PathLike,
        *,
        directory: str | os.PathLike | None = None,
        backend: str = DEFAULT_BACKEND,
        threshold: float | None = None,
        reject_threshold: float | None = None,
        reject_rule: RejectRule | str | None = None,
        verify_hash: bool = True,
        **options: Any,
    ) -> None:
        v = verify_hash
        ref_a = (
            resolve_graph(directory, str(part_a), verify_hash=v)
            if directory
            else resolve_graph(part_a, verify_hash=v)
        )
        ref_b = (
            resolve_graph(directory, str(part_b), verify_hash=v)
            if directory
            else resolve_graph(part_b, verify_hash=v)
        )
        self.a = GraphModel(ref_a, backend, **options)
        try:
            self.b = open_backend(backend, ref_b.path, **options)
        except BaseException:
            self.a.close()
            raise
        self.ref_b = ref_b
        try:
            self.class_name = self._check_pair(ref_a, ref_b)
        except GraphError:
            self.close()
            raise
        th = {**ref_a.thresholds(), **ref_b.thresholds()}
        self.threshold = float(threshold) if threshold is not None else th.get(self.class_name)
        if reject_threshold is None:
            reject_threshold = next(
                (
                    r.entry.reject_threshold
                    for r in (ref_a, ref_b)
                    if r.entry and r.entry.reject_threshold is not None
                ),
                None,
            )
        self.reject_threshold = float("inf") if reject_threshold is None else float(reject_threshold)
        if reject_rule == "distance":  # force the codeword distance, whatever the manifest holds
            reject_rule = None
        elif reject_rule is None and ref_a.entry is not None:
            reject_rule = ref_a.entry.reject_rule
        elif isinstance(reject_rule, str):
            raise GraphError(f"reject_rule must be a RejectRule, 'distance' or None, not {reject_rule!r}")
        self.reject_rule = reject_rule
        self.flops_a = ref_a.flops
        self.flops_b = ref_b.flops

    def _check_pair(self, ref_a: GraphRef, ref_b: GraphRef) -> str:
        """The pair's one class; GraphError unless part A outputs distance and features."""
        outs = self.a.backend.output_names
        if OUTPUT_REJECT_DISTANCE not in outs or OUTPUT_FEATURES not in outs:
            raise GraphError(
                f"{ref_a.path} is not a reject part A (outputs {outs}; "
                f"needs {OUTPUT_REJECT_DISTANCE!r} and {OUTPUT_FEATURES!r})"
            )
        classes = ref_b.classes or ref_a.classes
        if len(classes) != 1:
            raise GraphError(f"early reject needs a one-class pair, got classes {classes}")
        return classes[0]

    def close(self) -> None:
        self.a.close()
        self.b.close()

    @classmethod
    def from_directory(cls, directory: str | os.PathLike, class_name: str, **kw: Any) -> RejectDetector:
        """The fp32 reject pair of `class_name` in an export directory (two GraphKind.REJECT graphs)."""
        manifest = load_manifest(directory)
        for r in manifest.reject or []:  # the exporter's pair list
            if r.class_name == class_name:
                return cls(r.a, r.b, directory=directory, **kw)
        pair = [g for g in manifest.of_kind(GraphKind.REJECT, precision=FP32) if class_name in g.classes]
        a = [g for g in pair if OUTPUT_REJECT_DISTANCE in g.output_names]
        b = [g for g in pair if OUTPUT_LOGITS in g.output_names]
        if len(a) != 1 or len(b) != 1:
            probes = [g for g in manifest.of_kind(GraphKind.REJECT_PROBE) if class_name in g.classes]
            how = (
                f"it holds a reject probe for {class_name!r} (export --reject-block all), which measures "
                "every coded block for calibration: run `codedresnext calibrate "
                f"{directory} --data DATA` to pick the block J, then `codedresnext export CHECKPOINT "
                "--reject-block J --out DIR` for the pair RejectDetector runs"
                if probes
                else "export one with `codedresnext export CHECKPOINT --reject-block J --out DIR`"
            )
            raise GraphError(f"no early-reject pair for class {class_name!r} in {directory}: {how}")
        return cls(a[0].name, b[0].name, directory=directory, **kw)

    def run(self, x: Any, *, with_b_for_all: bool = False) -> RejectResult:
        """with_b_for_all runs part B on every sample too (calibration needs the logits of all)."""
        out_a = self.a.run(x)
        energies = out_a.get(OUTPUT_REJECT_ENERGIES)
        dist = out_a[OUTPUT_REJECT_DISTANCE].reshape(-1)
        if self.reject_rule is not None:
            if energies is None:
                raise GraphError(
                    f"{self.a.ref.path} does not output {OUTPUT_REJECT_ENERGIES!r}, which the learned "
                    "reject rule reads: re-export the pair"
                )
            dist = reject_score(self.reject_rule, energies)
        rejected = dist > self.reject_threshold
        keep = np.arange(len(dist)) if with_b_for_all else np.flatnonzero(~rejected)
        scores = np.full(len(dist), -np.inf, np.float32)
        if len(keep):
            logits = self.b.infer(handover_feed(out_a, self.b.input_names, keep))[OUTPUT_LOGITS]
            scores[keep] = logits[:, 0]
        all_scores = None
        if with_b_for_all:
            all_scores = scores.copy()
            scores = np.where(rejected, -np.inf, all_scores).astype(np.float32)
        fa = np.nan if self.flops_a is None else float(self.flops_a)
        fb = np.nan if self.flops_b is None else float(self.flops_b)
        flops = np.where(rejected, fa, fa + fb)
        decisions = scores > (self.threshold if self.threshold is not None else np.inf)
        return RejectResult(scores, decisions, rejected, dist, flops, all_scores, energies)

    def score(self, x: Any) -> np.ndarray:
        return self.run(x).scores

    def decide(self, x: Any) -> np.ndarray:
        if self.threshold is None:
            raise GraphError(f"no decision threshold for {self.class_name!r}; pass threshold=")
        return self.run(x).decisions
