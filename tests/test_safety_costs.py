"""benchmarks/safety_costs.py runs end to end at tiny size (it makes the figures in docs/safety.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_safety_costs_script_measures_every_figure(tmp_path):
    pytest.importorskip("torch")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "safety_costs.py"), "--preset", "tiny", "--reps", "2",
         "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((tmp_path / "safety_costs.json").read_text())
    assert rep["preset"] == "tiny" and rep["cpu"]
    assert all(v["sha256_ms"] > 0 and v["bytes"] > 0 for v in rep["sha256"].values())
    assert rep["sha256"]["full"]["bytes"] > rep["sha256"]["class_cat"]["bytes"]
    assert rep["open"]["verified_ms"] > 0 and rep["open"]["verified_vs_bare_session"] > 0
    assert set(rep["finite"]) == {"batch_1", "batch_32"}
    assert all(0 < v["check_ms"] < v["score_ms_unchecked"] for v in rep["finite"].values())
    assert "| 32 |" in (tmp_path / "safety_costs.md").read_text()
