"""`codedresnext bundle`: a self-contained device bundle. Copied elsewhere (the export gone), its
run.py gives the source export's scores on ONNX Runtime without torch; build.sh hands trtexec the
right flags for TensorRT 10 / 11 and DLA; the calibration cache holds the export's int8 scales."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_runtime_graphs import make_export

from codedresnext.artifact import load_manifest
from codedresnext.deploy.bundle import TRT_CACHE_HEADER, read_trt_calibration_cache, write_bundle
from codedresnext.errors import GraphError
from codedresnext.runtime import SubsetDetector

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    d = make_export(tmp_path_factory.mktemp("bundle_export"))
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorsData

    from codedresnext.export.quantize import CALIBRATION_FILE, save_ranges

    ranges = {"images": (np.float32(-2.5), np.float32(2.0)), "features": (np.float32(0.0), np.float32(6.35))}
    save_ranges(TensorsData(CalibrationMethod.MinMax, ranges), d / CALIBRATION_FILE)
    return d


def _run(cmd: list[str], env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}  # this checkout's package
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, **kw)


def test_bundle_runs_elsewhere_without_torch_and_matches_the_export(export_dir, tmp_path, real_images):
    b = tmp_path / "b"
    write_bundle(export_dir, ["cat", "dog"], b)
    assert sorted(load_manifest(b).names) == ["class_cat", "class_dog", "subset_cat_dog"]
    frames = real_images.images[:16]
    ref = {}
    for name in ("class_cat", "class_dog", "subset_cat_dog"):
        with SubsetDetector(export_dir, name, threads=1) as det:
            ref[name] = (det.score(frames), det.thresholds)
    moved = tmp_path / "elsewhere" / "bundle"
    shutil.copytree(b, moved)
    shutil.rmtree(b)
    np.save(tmp_path / "frames.npy", frames)
    block_torch = "import sys, runpy; sys.modules['torch'] = None; sys.argv = sys.argv[1:]; "
    block_torch += "runpy.run_path(sys.argv[0], run_name='__main__')"
    r = _run([sys.executable, "-c", block_torch, str(moved / "run.py"), str(tmp_path / "frames.npy")])
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["graphs"]
    assert sorted(got) == sorted(ref)
    for name, (scores, th) in ref.items():
        np.testing.assert_allclose(
            np.array(got[name]["scores"]).reshape(scores.shape), scores, rtol=1e-6, atol=1e-6
        )
        np.testing.assert_array_equal(np.array(got[name]["decisions"]).reshape(scores.shape), scores > th)
    thresholds = json.loads((moved / "thresholds.json").read_text())
    assert thresholds["class_cat"] == load_manifest(export_dir).graph("class_cat").thresholds
    assert (moved / "labels.txt").read_text() == "cat\ndog\n"


def test_calibration_cache_holds_the_int8_scales(export_dir, tmp_path):
    write_bundle(export_dir, ["cat"], tmp_path / "b")
    text = (tmp_path / "b" / "calibration.cache").read_text()
    assert text.splitlines()[0] == TRT_CACHE_HEADER
    scales = read_trt_calibration_cache(text)
    assert scales == pytest.approx({"images": 2.5 / 127, "features": 6.35 / 127}, rel=1e-6)
    line = next(s for s in text.splitlines() if s.startswith("images: "))
    assert line == "images: " + struct.pack(">f", 2.5 / 127).hex()  # big-endian float32 bits
    assert (tmp_path / "b" / "int8_calibration.json").read_bytes() == (
        export_dir / "int8_calibration.json"
    ).read_bytes()


@pytest.mark.parametrize(
    ("env", "want", "absent"),
    [
        ({"TRT_MAJOR": "10", "PRECISION": "fp16"}, ["--fp16", "--timingCacheFile=engines/timing.cache"],
         ["--stronglyTyped"]),
        ({"TRT_MAJOR": "11", "PRECISION": "fp16"}, ["--stronglyTyped"], ["--fp16"]),
        ({"TRT_MAJOR": "10", "PRECISION": "fp32", "DLA_CORE": "1"}, ["--useDLACore=1", "--allowGPUFallback"],
         ["--fp16"]),
    ],
)  # fmt: skip
def test_build_script_calls_trtexec_with_the_right_flags(export_dir, tmp_path, env, want, absent):
    b = tmp_path / "b"
    write_bundle(export_dir, ["cat"], b, batch=(1, 4, 16))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "trtexec.log"
    (bindir / "trtexec").write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    (bindir / "trtexec").chmod(0o755)
    r = _run(["bash", str(b / "build.sh")], env={**env, "PATH": f"{bindir}:{os.environ['PATH']}"})
    assert r.returncode == 0, r.stderr
    calls = log.read_text().splitlines()
    assert len(calls) == 1  # the one fp32 class graph
    args = calls[0].split()
    assert "--onnx=class_cat.onnx" in args and "--minShapes=images:1x3x32x32" in args
    assert "--maxShapes=images:16x3x32x32" in args
    assert all(w in args for w in want) and not any(a in args for a in absent), args


def test_bad_options_exit_2_with_one_line(export_dir, tmp_path):
    with pytest.raises(GraphError, match="no detector graph for class"):
        write_bundle(export_dir, ["zebra"], tmp_path / "z")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    for extra in (
        ["--classes", "cat", "--out", str(tmp_path / "full")],
        ["--classes", "zebra", "--out", "n"],
    ):
        r = _run([sys.executable, "-m", "codedresnext.cli", "bundle", str(export_dir), *extra], cwd=tmp_path)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "n").exists()
