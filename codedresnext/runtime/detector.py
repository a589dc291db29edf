"""Application API for binary and subset detectors, with an optional early-reject stage.

A detector is one pruned graph (kind "class": one logit; kind "subset": one logit per chosen class)
and a logit threshold per class from the manifest entry or the graph metadata.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..artifact import OUTPUT_FEATURES, OUTPUT_LOGITS, handover_feed
from ..errors import GraphError
from .backend import Backend, open_backend
from .graphs import GraphRef, prepare_batch, resolve_graph

OUTPUT_REJECT = "reject_distance"


class _GraphModel:
    """A graph on a backend with the batch preparation its input needs."""

    def __init__(self, ref: GraphRef, backend: str, **options: Any) -> None:
        self.ref = ref
        self.backend: Backend = open_backend(backend, ref.path, **options)
        if len(self.backend.inputs) != 1:
            raise GraphError(f"{ref.path} has inputs {self.backend.input_names}; expected one image input")
        self.input = self.backend.inputs[0]

    def prepare(self, x: Any) -> np.ndarray:
        return prepare_batch(x, self.input.name, self.input.shape, self.ref.preprocessing)

    def run(self, x: Any) -> dict[str, np.ndarray]:
        return self.backend.infer({self.input.name: self.prepare(x)})


class SubsetDetector(_GraphModel):
    """One logit per chosen class; decide() -> (batch, k) booleans, logit > that class's threshold."""

    def __init__(
        self,
        source: str | os.PathLike,
        name: str | None = None,
        *,
        backend: str = "ort",
        thresholds: dict[str, float] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(resolve_graph(source, name), backend, **options)
        self.classes = self.ref.classes
        self._thresholds = {**self.ref.thresholds(), **(thresholds or {})}

    @property
    def thresholds(self) -> np.ndarray:
        missing = [c for c in self.classes if c not in self._thresholds]
        if missing:
            raise GraphError(
                f"no decision threshold for {missing} in {self.ref.path} or its manifest; export from a "
                "trained checkpoint (thresholds are fitted there) or pass thresholds={class: value}"
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
        backend: str = "ort",
        threshold: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(source, name, backend=backend, **options)
        if len(self.classes) != 1:
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
    distance: np.ndarray  # (B,) reject_distance from part A
    flops: np.ndarray  # (B,) FLOPs spent per sample (nan where the manifest has no FLOPs)
    all_scores: np.ndarray | None = None  # (B,) part B logits of every sample (with_b_for_all only)


class RejectDetector:
    """Early reject: part A (stem .. an early coded block) outputs "reject_distance" and "features";
    samples whose distance exceeds `reject_threshold` are negatives at once, the rest go on (compacted)
    to part B ("logits").
    """

    def __init__(
        self,
        part_a: str | os.PathLike,
        part_b: str | os.PathLike,
        *,
        directory: str | os.PathLike | None = None,
        backend: str = "ort",
        threshold: float | None = None,
        reject_threshold: float | None = None,
        **options: Any,
    ) -> None:
        ref_a = resolve_graph(directory, str(part_a)) if directory else resolve_graph(part_a)
        ref_b = resolve_graph(directory, str(part_b)) if directory else resolve_graph(part_b)
        self.a = _GraphModel(ref_a, backend, **options)
        self.b = open_backend(backend, ref_b.path, **options)
        self.ref_b = ref_b
        if (
            OUTPUT_REJECT not in self.a.backend.output_names
            or OUTPUT_FEATURES not in self.a.backend.output_names
        ):
            raise GraphError(
                f"{ref_a.path} is not a reject part A (outputs {self.a.backend.output_names}; "
                f"needs {OUTPUT_REJECT!r} and {OUTPUT_FEATURES!r})"
            )
        classes = ref_b.classes or ref_a.classes
        if len(classes) != 1:
            raise GraphError(f"early reject needs a one-class pair, got classes {classes}")
        self.class_name = classes[0]
        th = {**ref_a.thresholds(), **ref_b.thresholds()}
        self.threshold = float(threshold) if threshold is not None else th.get(self.class_name)
        if reject_threshold is None:
            reject_threshold = ref_a.entry.get("reject_threshold", ref_b.entry.get("reject_threshold"))
        self.reject_threshold = float("inf") if reject_threshold is None else float(reject_threshold)
        self.flops_a = ref_a.flops
        self.flops_b = ref_b.flops

    @classmethod
    def from_directory(cls, directory: str | os.PathLike, class_name: str, **kw: Any) -> RejectDetector:
        """The reject pair of `class_name` in an export directory (two graphs of kind "reject")."""
        from ..artifact import load_manifest

        manifest = load_manifest(directory)
        for r in manifest.get("reject") or []:  # the exporter's pair list: {"class", "a", "b", ...}
            if r.get("class") == class_name and r.get("a") and r.get("b"):
                return cls(r["a"], r["b"], directory=directory, **kw)
        pair = [
            g
            for g in manifest["graphs"]
            if g.get("kind") == "reject"
            and g.get("precision", "fp32") == "fp32"
            and class_name in (g.get("classes") or [])
        ]
        a = [g for g in pair if OUTPUT_REJECT in _names(g.get("outputs"))]
        b = [g for g in pair if OUTPUT_LOGITS in _names(g.get("outputs"))]
        if len(a) != 1 or len(b) != 1:
            raise GraphError(
                f"no early-reject pair for class {class_name!r} in {directory}; export with reject graphs"
            )
        return cls(a[0]["name"], b[0]["name"], directory=directory, **kw)

    def run(self, x: Any, *, with_b_for_all: bool = False) -> RejectResult:
        """with_b_for_all runs part B on every sample too (calibration needs the logits of all)."""
        out_a = self.a.run(x)
        dist = out_a[OUTPUT_REJECT].reshape(-1)
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
        return RejectResult(scores, decisions, rejected, dist, flops, all_scores)

    def score(self, x: Any) -> np.ndarray:
        return self.run(x).scores

    def decide(self, x: Any) -> np.ndarray:
        if self.threshold is None:
            raise GraphError(f"no decision threshold for {self.class_name!r}; pass threshold=")
        return self.run(x).decisions


def _names(specs: Any) -> list[str]:
    if not specs:
        return []
    return [s["name"] if isinstance(s, dict) else str(s) for s in specs]
