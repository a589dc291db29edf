"""Cascades of 3+ real segments (exporter output, the shipped demo model): hand-over between
segments, calibration, fp16 thresholds and the early-exit benchmark, with exits at every coded block."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROOT

from codedresnext.artifact import FP16, FP32, GraphKind, load_manifest
from codedresnext.runtime import EarlyExitClassifier, open_backend

DEMO = ROOT / "models" / "demo" / "model.pt"
INF = float("inf")


def _coded_blocks() -> list[int]:
    """The shipped demo model's coded block indices (from its checkpoint, so the tests follow it)."""
    from codedresnext.checkpoint import read_checkpoint
    from codedresnext.model_config import ModelConfig

    cfg = ModelConfig.from_dict(read_checkpoint(DEMO)["model_config"])
    blocks = [s.coded for s in cfg.stages for _ in range(s.depth)]
    return [i for i, coded in enumerate(blocks) if coded]


def _x(frames):
    x = (frames.astype(np.float32) / 255 - (0.4914, 0.4822, 0.4465)) / (0.2023, 0.1994, 0.2010)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32)


@pytest.fixture(scope="module")
def all_exits(tmp_path_factory):
    """`export models/demo/model.pt --segments all --multi-exit --fp16`: a cut after every coded
    block but the last (one exit each; small: blocks 1-5 -> six segments, five exits)."""
    export = pytest.importorskip("codedresnext.export")
    out = tmp_path_factory.mktemp("segments_all") / "export"
    export.export_graphs(
        export.ExportOptions(
            out=out, checkpoint=DEMO, segments="all", multi_exit=True, fp16=True, progress=False, verify=False
        )
    )
    return out


def test_export_cli_cut_list_with_a_middle_segment_runs_as_a_cascade(tmp_path, real_images):
    """The reported defect: `export --preset tiny --segments 0,2` gave a middle segment whose input
    ("features_in") the cascade could not find among the previous segment's outputs."""
    from codedresnext.cli import main

    d = tmp_path / "d"
    assert main(["export", "--preset", "tiny", "--out", str(d), "--segments", "0,2", "--quiet"]) == 0
    m = load_manifest(d)
    assert [g.blocks for g in m.of_kind(GraphKind.SEGMENT)] == [[0, 0], [1, 2], [3, 4]]
    casc = EarlyExitClassifier.from_directory(d, threads=1)
    assert casc.exit_segments == [1]  # block 0 is plain: no exit there; block 2 is coded
    x = _x(real_images.images[:16])
    full = open_backend("ort", d / "full.onnx", threads=1).infer({"images": x})["logits"]
    _, logits = casc.run_all(x)
    np.testing.assert_allclose(logits, full, atol=1e-4, rtol=1e-4)
    res = casc.predict(x)  # uncalibrated: nobody leaves early
    np.testing.assert_array_equal(res.predictions, full.argmax(1))
    assert (res.exit_index == 1).all()


def test_every_coded_block_exit_equals_the_multi_exit_graph(all_exits, real_images):
    coded = _coded_blocks()
    cuts = coded[:-1]
    m = load_manifest(all_exits)
    segs = m.of_kind(GraphKind.SEGMENT, precision=FP32)
    starts = [0] + [c + 1 for c in cuts]
    assert [g.blocks for g in segs] == [[a, b] for a, b in zip(starts, [*cuts, coded[-1]])]
    assert len(cuts) >= 3  # 4+ segments: hand-over between middle segments is exercised
    casc = EarlyExitClassifier.from_directory(all_exits, threads=1)
    n = casc.num_exits
    assert n == len(cuts)
    x = _x(real_images.images)
    me = open_backend("ort", all_exits / "multi_exit.onnx", threads=1).infer({"images": x})
    exits, logits = casc.run_all(x)
    np.testing.assert_allclose(logits, me["logits"], atol=1e-4, rtol=1e-4)
    for j in range(n):  # the coded blocks before the last are exits 0..n-1 of the multi-exit graph
        np.testing.assert_allclose(exits[j], me[f"exit{j}_scores"], atol=1e-5, rtol=1e-4)
    # per-sample exits at every exit, with compaction between every pair of segments
    c = [e.max(1) for e in exits]
    th = [float(np.quantile(c[j], q)) for j, q in enumerate(np.linspace(0.85, 0.5, n))]
    expect = np.full(len(x), n)
    for j in reversed(range(n)):  # the first exit whose confidence clears its threshold
        expect = np.where(c[j] > th[j], j, expect)
    assert (np.bincount(expect, minlength=n + 1) > 0).sum() >= 4
    res = EarlyExitClassifier.from_directory(all_exits, thresholds=th, threads=1).predict(x)
    np.testing.assert_array_equal(res.exit_index, expect)
    preds = np.choose(expect, [e.argmax(1) for e in exits] + [logits.argmax(1)])
    np.testing.assert_array_equal(res.predictions, preds)
    np.testing.assert_allclose(res.flops, np.cumsum([g.flops for g in segs])[expect])


def test_calibrate_and_bench_on_every_coded_block(all_exits, cifar10_tgz, tmp_path):
    """Calibration writes a threshold for every exit into BOTH precisions (the fp16 cascade used to
    keep inf and never exit), and `bench --data` runs the cascade of every segment."""
    import shutil

    from codedresnext.runtime.bench.options import BenchOptions
    from codedresnext.runtime.bench.run import run_bench
    from codedresnext.runtime.thresholds.calibrate import calibrate_directory

    d = tmp_path / "e"
    shutil.copytree(all_exits, d)
    # guard "none" (exact fit): on 600 images a half the default cv guard keeps all five exits of the
    # small demo model shut (at 1500 it opens them); the guard itself: test_runtime_exit_search
    summary = calibrate_directory(d, cifar10_tgz, max_accuracy_loss=1.0, limit=600, threads=1, guard="none")
    ee = summary["early_exit"]
    assert ee["calibration"]["accuracy_loss_points"] <= 1.0 + 1e-9
    n = len(_coded_blocks()) - 1
    assert 0 < ee["evaluation"]["compute_saved"] < 1 and len(ee["exits"]) == n
    greedy = ee["search"]["greedy_baseline"]["calibration"]
    assert ee["calibration"]["compute_saved"] >= greedy["compute_saved"] - 1e-12
    assert [p["max_accuracy_loss"] for p in ee["curve"]][:3] == [0.0, 0.1, 0.25]
    fp32 = EarlyExitClassifier.from_directory(d, threads=1)
    fp16 = EarlyExitClassifier.from_directory(d, precision="fp16", threads=1)
    assert np.isfinite(fp32.thresholds).all() and fp16.thresholds == fp32.thresholds
    chosen = ee["confidence"]["chosen"]  # the confidence rule travels with the thresholds
    assert set(ee["confidence"]["candidates"]) == {"max", "margin"}
    assert fp32.confidences == fp16.confidences == [chosen] * n
    m = load_manifest(d)
    assert {g.exit_threshold_calibrated_on for g in m.of_kind(GraphKind.SEGMENT, precision=FP16)} == {
        "fp32 segments",
        None,  # the last segment has no exit
    }
    strict = json.loads((d / "manifest.json").read_text(), parse_constant=_refuse)  # no Infinity/NaN
    assert strict["calibration"]["early_exit"]["thresholds"] == dict(
        zip([fp32.refs[i].name for i in fp32.exit_segments], fp32.thresholds)
    )
    ev = load_heldout_eval(cifar10_tgz, 256)
    r32, r16 = fp32.predict(ev.images), fp16.predict(ev.images)
    assert (r16.exit_index < n).mean() > 0.05  # the fp16 cascade exits early now
    assert np.mean(r16.exit_index == r32.exit_index) > 0.95
    assert np.mean(r16.predictions == r32.predictions) > 0.95
    rep = run_bench(
        d,
        BenchOptions(
            batches=[16],
            warmup=0.01,
            duration=0.05,
            rounds=1,
            threads=1,
            graphs=["full"],
            min_iterations=1,
            memory=False,
            torch_peer=False,
            data=str(cifar10_tgz),
            early_exit_limit=200,
            progress=False,
        ),
    )
    be = rep["early_exit"]
    assert be["calibrated"] and len(be["exit_fractions"]) == n + 1
    assert be["compute_saved"] == pytest.approx(1 - be["mean_flops_per_sample"] / be["full_flops"])


def _refuse(name):
    raise ValueError(f"non-standard JSON constant {name}")


def load_heldout_eval(data, n):
    from codedresnext.runtime.thresholds.samples import load_heldout

    return load_heldout(data, limit=n)["evaluation"]
