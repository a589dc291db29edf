"""Issue 28 item 4 / deliver 3: a class with no positive (or no negative) in a sample gets null with
the reason in the manifest and the reports, and never aborts an export or a report.

Tried here (and what each gives now):
- `export --int8` whose data holds none of the exported classes (a real CIFAR-10 tree of airplane
  and automobile only): the export is written, each INT8 detector's AUC is null with
  "no positive ... undefined" beside it, manifest.json is strict JSON (no NaN).
- calibrate's early-reject pairs with no positive in the calibration half: the reject stays shut
  (null in manifest.json) with the reason, instead of a ValueError from the F1 threshold.
- evaluate's binary report and summary on a sample without positives / negatives: AUC null +
  reason, means over the classes where defined.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from codedresnext.artifact import GraphKind, load_manifest
from codedresnext.evaluate.binary import summarise
from codedresnext.evaluate.metrics import binary_report


@pytest.fixture(scope="module")
def other_classes(small_tree, tmp_path_factory) -> Path:
    """A real CIFAR-10 ImageFolder tree holding airplane and automobile only."""
    dest = tmp_path_factory.mktemp("other") / "tree"
    for split in ("train", "test"):
        for cls in ("airplane", "automobile"):
            shutil.copytree(small_tree / split / cls, dest / split / cls)
    return dest


def _strict(path: Path) -> dict:
    def refuse(token: str):
        raise AssertionError(f"{path} holds {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_int8_export_with_no_positive_in_the_accuracy_sample(other_classes, small_tree, tmp_path):
    pytest.importorskip("torch")
    from codedresnext import export
    from codedresnext.export.options import Int8Options
    from codedresnext.model_config import build_config

    out = tmp_path / "export"
    export.export_graphs(
        export.ExportOptions(
            out=out,
            preset="tiny",
            classes=["cat"],
            reject_block=build_config("tiny").coded_blocks[0],
            int8=Int8Options(other_classes, images=16, precisions=("int8-cpu",), eval_images=20),
            progress=False,
            verify=False,
        )
    )
    m = _strict(out / "manifest.json")
    acc = {g["name"]: g["accuracy"] for g in m["graphs"] if g.get("accuracy")}
    cat = acc["class_cat_int8_cpu"]
    assert cat["images"] == 20 and cat["auc"] == {"cat": None}
    assert "no positive among the 20 samples" in cat["auc_undefined"]["cat"]
    assert cat["reference"]["auc"] == {"cat": None}
    assert "cat" not in cat["decision_agreement"]
    assert np.isfinite(cat["logits_max_abs_diff"])
    full = acc["full_int8_cpu"]
    assert 0.0 <= full["top1"] <= 1.0  # what is defined is still measured

    # calibrate's early reject with no cat in the calibration half: the reject stays shut, with the reason
    from codedresnext.data import load_dataset
    from codedresnext.runtime.thresholds.calibrate import _calibrate_pairs
    from codedresnext.runtime.thresholds.samples import no_fit

    test = load_dataset(small_tree, "test")
    cat = list(test.class_names).index("cat")
    split = {
        "calibration": test.subset(np.flatnonzero(test.labels != cat)),
        "evaluation": test.subset(np.arange(len(test))),
    }
    manifest = load_manifest(out)
    rej = _calibrate_pairs(
        out, manifest, split, 1.0, backend="ort", threads=1, batch=32, fit=no_fit("distance asked")
    )
    assert rej["classes"]["cat"]["reject_threshold"] is None
    assert "no positive among the 90 samples" in rej["classes"]["cat"]["undefined"]
    pair = manifest.of_kind(GraphKind.REJECT, precision=None)
    assert pair and all(g.reject_threshold == float("inf") for g in pair)  # never rejects
    manifest.save(out)
    assert all(
        g["reject_threshold"] is None
        for g in _strict(out / "manifest.json")["graphs"]
        if g["kind"] == "reject"
    )


def test_binary_report_without_positives_or_negatives():
    scores = np.array([0.3, -1.2, 2.5, 0.1])
    none_pos = binary_report(scores, np.zeros(4, bool), 0.0)
    assert none_pos["auc"] is None and "no positive among the 4 samples" in none_pos["auc_undefined"]
    assert none_pos["positives"] == 0 and none_pos["fp"] == 3
    none_neg = binary_report(scores, np.ones(4, bool), 0.0)
    assert none_neg["auc"] is None and "no negative" in none_neg["auc_undefined"]
    both = binary_report(scores, np.array([False, False, True, True]), 0.0)
    assert both["auc"] == pytest.approx(0.75) and "auc_undefined" not in both
    rows = [
        {"precision": 1.0, "recall": 0.5, "f1": 0.6, "auc": None},
        {"precision": 0.5, "recall": 1.0, "f1": 0.8, "auc": 0.9},
    ]
    s = summarise(rows)
    assert s["binary_mean_auc"] == pytest.approx(0.9) and s["binary_mean_f1"] == pytest.approx(0.7)
    assert summarise([{"precision": 1.0, "recall": 0.5, "f1": 0.6, "auc": None}])["binary_mean_auc"] is None
