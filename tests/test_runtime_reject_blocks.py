"""Early reject at every coded block: the reject probe's distances are the shipped pairs' distances,
the FLOP facts are the pairs' FLOPs, and calibration picks a block whose figures the real
RejectDetector reproduces (shipped demo model, real CIFAR-10 images)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOT

from codedresnext.artifact import (
    GraphKind,
    Manifest,
    load_manifest,
    reject_distance_name,
    reject_energies_name,
)
from codedresnext.runtime import RejectDetector, open_backend
from codedresnext.runtime.api.postprocess import reject_score

DEMO = ROOT / "models" / "demo" / "model.pt"


def _blocks() -> list[int]:
    """The shipped demo model's coded blocks before the last (the reject probe's blocks)."""
    from codedresnext.checkpoint import read_checkpoint
    from codedresnext.model_config import ModelConfig

    cfg = ModelConfig.from_dict(read_checkpoint(DEMO)["model_config"])
    coded = [s.coded for s in cfg.stages for _ in range(s.depth)]
    return [i for i, c in enumerate(coded) if c][:-1]


BLOCKS = _blocks()


def _x(frames):
    x = (frames.astype(np.float32) / 255 - (0.4914, 0.4822, 0.4465)) / (0.2023, 0.1994, 0.2010)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    export = pytest.importorskip("codedresnext.export")
    root = tmp_path_factory.mktemp("reject_blocks")
    kw = {"checkpoint": DEMO}
    probe = root / "probe"
    export.export_graphs(
        export.ExportOptions(
            out=probe, classes=["cat"], reject_block="all", segments=[0], progress=False, **kw
        )
    )
    pairs = {}
    for j in BLOCKS:
        pairs[j] = root / f"pair{j}"
        export.export_graphs(
            export.ExportOptions(
                out=pairs[j], classes=["cat"], reject_block=j, progress=False, verify=False, **kw
            )
        )
    return probe, pairs


def test_probe_distances_and_flops_are_the_pairs(exports, real_images):
    probe, pairs = exports
    m = load_manifest(probe)
    g = m.first(GraphKind.REJECT_PROBE)
    assert g.name == "reject_probe_cat" and g.reject_probe.blocks == BLOCKS
    assert g.reject_probe.class_name == "cat"
    assert g.verification.passed  # every distance output checked against PyTorch
    probed = {f(j) for j in BLOCKS for f in (reject_distance_name, reject_energies_name)}
    assert set(g.verification.random.outputs) == {"logits", *probed}  # each checked against PyTorch
    x = _x(real_images.images)
    out = open_backend("ort", probe / g.file, threads=1).infer({"images": x})
    cls = open_backend("ort", probe / "class_cat.onnx", threads=1).infer({"images": x})["logits"]
    np.testing.assert_allclose(out["logits"], cls, atol=1e-4, rtol=1e-4)
    for j in BLOCKS:
        pm = load_manifest(pairs[j])
        a = open_backend("ort", pairs[j] / "reject_cat_a.onnx", threads=1).infer({"images": x})
        np.testing.assert_allclose(out[reject_distance_name(j)], a["reject_distance"], atol=1e-5, rtol=1e-5)
        e = a["reject_energies"]  # (B, N) normalised energies of every branch: they sum to N
        np.testing.assert_allclose(out[reject_energies_name(j)], e, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(e.sum(1), e.shape[1], rtol=1e-5)
        flops = {e.name: e.flops for e in pm.graphs}
        assert g.reject_probe.pair_flops[str(j)] == {
            "a": flops["reject_cat_a"],
            "b": flops["reject_cat_b"],
        }
    floor = m.reject_floor
    seg0 = m.graph("segment0")  # stem + block 0 = the shared trunk
    assert floor.trunk_blocks == [0] and floor.trunk_flops == seg0.flops
    class_flops = m.graph("class_cat").flops
    assert floor.class_graph_flops == class_flops
    assert floor.fraction_of_class_graph == pytest.approx(seg0.flops / class_flops)


def test_calibration_picks_a_block_the_shipped_detector_reproduces(exports, cifar10_tgz, tmp_path):
    import shutil

    from codedresnext.runtime.thresholds.calibrate import calibrate_directory
    from codedresnext.runtime.thresholds.samples import load_heldout

    probe, pairs = exports
    d = tmp_path / "probe"
    shutil.copytree(probe, d)
    # ~40 cat positives per half: at a 1-point budget not one may be lost (the rule never rejects)
    summary = calibrate_directory(d, cifar10_tgz, max_recall_loss=5.0, limit=400, threads=1)
    er = summary["early_reject_blocks"]
    assert er["rule"]["rule"] == "learned" and "training split" in er["rule"]["fitted_on"]
    assert er["chosen_block"] in BLOCKS and [b["block"] for b in er["blocks"]] == BLOCKS
    cal_cost = {b["block"]: b["calibration_negative_compute_vs_class_graph"] for b in er["blocks"]}
    assert cal_cost[er["chosen_block"]] == min(cal_cost.values())
    floor = er["trunk_floor"]["fraction_of_class_graph"]
    for b in er["blocks"]:
        assert 0.0 <= b["negatives_stopped"] <= 1.0
        assert floor < b["part_a_vs_class_graph"] <= b["negative_compute_vs_class_graph"] + 1e-12
    m = load_manifest(d)  # strict loader: every field the calibration wrote is a typed slot
    assert m.reject_choice.block == er["chosen_block"]
    cat = er["per_class"]["cat"]
    info = m.graph("reject_probe_cat").reject_probe
    assert info.reject_thresholds == {str(b): cat["blocks"][str(b)]["reject_threshold"] for b in BLOCKS}
    assert sorted(info.reject_rules) == sorted(str(b) for b in BLOCKS)
    # the real pair at the chosen block, with the probe's thresholds, gives the same figures
    j = er["chosen_block"]
    row = cat["blocks"][str(j)]
    det = RejectDetector.from_directory(
        pairs[j],
        "cat",
        threshold=cat["decision_threshold"],
        reject_threshold=row["reject_threshold"],
        reject_rule=info.reject_rules[str(j)],
        threads=1,
    )
    ev = load_heldout(cifar10_tgz, limit=400)["evaluation"]
    res = det.run(ev.images, with_b_for_all=True)
    np.testing.assert_allclose(
        res.distance, reject_score(info.reject_rules[str(j)], res.energies), rtol=1e-12
    )
    neg = ev.labels != ev.class_names.index("cat")
    assert np.mean(res.rejected[neg]) == pytest.approx(row["evaluation"]["negatives_stopped"], abs=1e-12)
    cost = np.mean(res.flops[neg]) / floor_class_flops(m)
    assert cost == pytest.approx(row["evaluation"]["negative_compute_vs_class_graph"], rel=1e-9)


def floor_class_flops(m: Manifest) -> float:
    return float(m.reject_floor.class_graph_flops)


def test_demo_summary_prints_the_calibrated_reject_and_exit_figures(exports, cifar10_tgz, tmp_path):
    import shutil

    from codedresnext.demo import _summary
    from codedresnext.runtime.thresholds.calibrate import calibrate_directory

    d = tmp_path / "probe"
    shutil.copytree(exports[0], d)
    cal = calibrate_directory(d, cifar10_tgz, limit=200, threads=1)
    metrics = {"accuracy": 0.786, "binary_mean_f1": 0.69, "early_decoder_accuracy": [0.5, 0.6, 0.7, 0.75]}
    report = {"ratios": {"batch": 32}, "graphs": []}
    text = _summary(metrics, cal, report)
    er = cal["early_reject_blocks"]
    best = next(b for b in er["blocks"] if b["block"] == er["chosen_block"])
    assert f"| {er['chosen_block']} |" in text
    assert f"{100 * best['negatives_stopped']:.1f}% / {best['recall_loss_points']:.2f} pt" in text
    assert f"{100 * er['trunk_floor']['fraction_of_class_graph']:.1f}%" in text
    assert "early_exit" not in cal and "early exit" not in text  # segment0 ends at a plain block


def test_learned_rule_reports_the_distance_beside_it_and_distance_rule_matches(
    exports, cifar10_tgz, tmp_path
):
    """The learned rule's report carries the codeword distance's figures; calibrating with
    reject_rule='distance' reproduces exactly those, and writes no rules."""
    import shutil

    from codedresnext.runtime.thresholds.calibrate import calibrate_directory

    learned, dist = tmp_path / "learned", tmp_path / "distance"
    shutil.copytree(exports[0], learned)
    shutil.copytree(exports[0], dist)
    kw = {"max_recall_loss": 5.0, "limit": 400, "threads": 1, "reject_fit_images": 600}
    a = calibrate_directory(learned, cifar10_tgz, **kw)["early_reject_blocks"]
    b = calibrate_directory(dist, cifar10_tgz, reject_rule="distance", **kw)["early_reject_blocks"]
    assert a["rule"]["rule"] == "learned" and "600 images" in a["rule"]["fitted_on"]
    assert b["rule"]["rule"] == "distance" and b["rule"]["why_not_learned"] == "reject_rule='distance'"
    for ra, rb in zip(a["blocks"], b["blocks"]):
        assert ra["distance_negatives_stopped"] == rb["negatives_stopped"]
        assert ra["distance_recall_loss_points"] == rb["recall_loss_points"]
    assert load_manifest(dist).graph("reject_probe_cat").reject_probe.reject_rules is None
    # the learned score separates this class's negatives better at the first probed block
    first = str(BLOCKS[0])
    row = a["per_class"]["cat"]["blocks"][first]
    assert row["calibration"]["negatives_stopped"] > row["distance_rule"]["calibration"]["negatives_stopped"]
