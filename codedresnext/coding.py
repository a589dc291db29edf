"""Coding schemes: which branches each class uses (docs/method.md section 3). The generator for a
scheme of your own (the paper's Algorithm 1) is coding_search.generate_scheme.

A scheme is K binary codewords of length N with exactly N_act ones. Class k's path through a coded
block is the set of branches where its codeword is 1. This module is numpy-only so that an edge
device without PyTorch can read schemes from ONNX metadata and prune graphs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from .errors import CodedResNeXtError


@dataclass(frozen=True)
class CodingScheme:
    """K codewords of length N, each with N_act ones; stored as '0101...' strings (row k = class k)."""

    codewords: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.codewords:
            raise CodedResNeXtError("a coding scheme needs at least one codeword")
        n = len(self.codewords[0])
        for k, w in enumerate(self.codewords):
            if len(w) != n or set(w) - {"0", "1"}:
                raise CodedResNeXtError(f"codeword {k} ({w!r}) must be a string of {n} characters '0'/'1'")
        weights = {w.count("1") for w in self.codewords}
        if len(weights) != 1:
            raise CodedResNeXtError(
                f"every codeword must have the same number of ones (N_act); got {sorted(weights)}"
            )
        if 0 in weights:
            raise CodedResNeXtError("codewords need at least one active branch")

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> CodingScheme:
        m = np.asarray(matrix)
        return cls(tuple("".join("1" if v else "0" for v in row) for row in m))

    @classmethod
    def uncoded(cls, num_classes: int, n: int) -> CodingScheme:
        """All-ones scheme (r = 1): a plain ResNeXt block."""
        return cls(("1" * n,) * num_classes)

    @property
    def matrix(self) -> np.ndarray:
        """(K, N) float32 array of 0/1."""
        return np.array([[c == "1" for c in w] for w in self.codewords], dtype=np.float32)

    @property
    def num_classes(self) -> int:
        return len(self.codewords)

    @property
    def n(self) -> int:
        return len(self.codewords[0])

    @property
    def n_act(self) -> int:
        return self.codewords[0].count("1")

    @property
    def ratio(self) -> float:
        return self.n_act / self.n

    @property
    def is_coded(self) -> bool:
        return self.n_act < self.n

    @property
    def label(self) -> str:
        return f"{self.n_act}/{self.n}"

    def column_sums(self) -> np.ndarray:
        return self.matrix.sum(0).astype(int)

    def min_distance(self) -> int:
        """Minimum pairwise Hamming distance H_min (N+1 if only one class)."""
        m = self.matrix.astype(np.int32)
        if len(m) < 2:
            return self.n + 1
        d = (m[:, None, :] != m[None, :, :]).sum(-1)
        np.fill_diagonal(d, self.n + 1)
        return int(d.min())

    def is_balanced(self) -> bool:
        s = self.column_sums()
        return int(s.max() - s.min()) <= (0 if (self.n_act * self.num_classes) % self.n == 0 else 1)

    def kept_branches(self, classes: list[int] | tuple[int, ...]) -> list[int]:
        """Branches used by any of `classes` (the union of their paths), in order."""
        m = self.matrix
        for c in classes:
            if not 0 <= c < self.num_classes:
                raise CodedResNeXtError(f"class index {c} out of range 0..{self.num_classes - 1}")
        return [n for n in range(self.n) if any(m[c, n] for c in classes)]

    def properties(self) -> dict:
        s = self.column_sums()
        return {
            "K": self.num_classes,
            "N": self.n,
            "N_act": self.n_act,
            "H_min": self.min_distance(),
            "column_sum_min": int(s.min()),
            "column_sum_max": int(s.max()),
            "balanced": self.is_balanced(),
        }


@cache
def _paper_tables() -> dict:
    text = resources.files("codedresnext").joinpath("resources/paper_coding_schemes.json").read_text()
    return json.loads(text)


def paper_scheme(dataset: str, label: str) -> CodingScheme:
    """The paper's exact table, e.g. paper_scheme('cifar10', '5/10'); rows in official class order."""
    tables = _paper_tables()
    if dataset not in tables or label not in tables[dataset]:
        avail = {d: sorted(v) for d, v in tables.items()}
        raise CodedResNeXtError(f"no paper scheme {dataset!r} {label!r}; available: {avail}")
    return CodingScheme(tuple(tables[dataset][label]))
