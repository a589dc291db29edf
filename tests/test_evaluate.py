"""codedresnext evaluate: class-path passes, removal study, energies, the report, the ONNX path.

A micro Coded ResNeXt (the tiny preset's codes, narrower and shallower) with random weights and
non-trivial BatchNorm statistics keeps these tests fast; images are real CIFAR-10 / CIFAR-100.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from codedresnext import artifact
from codedresnext._io import sha256_file
from codedresnext.checkpoint import save_checkpoint
from codedresnext.data import ArrayDataset
from codedresnext.errors import GraphError
from codedresnext.evaluate.energy import codeword_agreement, mean_energy_per_class
from codedresnext.evaluate.inference import forward_from, forward_prefix, run_passes
from codedresnext.evaluate.removal import keep_mask, removal_curves, removal_orders
from codedresnext.model import CodedResNeXt, to_input
from codedresnext.model_config import build_config

ROOT = Path(__file__).resolve().parents[1]


def micro_model(seed: int = 0) -> CodedResNeXt:
    base = build_config("tiny")
    s = base.stages
    stages = (
        dataclasses.replace(s[0], out_channels=16, width=2, depth=1),
        dataclasses.replace(s[1], out_channels=16, width=2, depth=1),
        dataclasses.replace(s[2], out_channels=32, width=2, depth=2),
    )
    torch.manual_seed(seed)
    model = CodedResNeXt(dataclasses.replace(base, stages=stages, stem_channels=8))
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():  # BN away from the identity init (last gamma is 0 at init)
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = 0.5 + torch.rand(n, generator=g)
            m.bias.data = 0.2 * torch.randn(n, generator=g)
            m.running_mean = 0.1 * torch.randn(n, generator=g)
            m.running_var = 0.5 + torch.rand(n, generator=g)
    return model.eval()


@pytest.fixture(scope="module")
def model() -> CodedResNeXt:
    return micro_model()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, model) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "micro.pt"
    save_checkpoint(path, model)
    return path


@pytest.fixture(scope="module")
def heads(model):
    """Random exit heads (pool 2) for every coded block of the micro model."""
    from codedresnext.exit_heads import ExitHeads

    rng = np.random.default_rng(4)
    K, coded = model.cfg.num_classes, model.coded_blocks
    w = {i: rng.standard_normal((K, model.blocks[i].c_out * 4)).astype(np.float32) for i in coded}
    b = {i: rng.standard_normal(K).astype(np.float32) for i in coded}
    return ExitHeads(2, w, b, {"images": 0})


@pytest.fixture(scope="module")
def ckpt_heads(tmp_path_factory, heads) -> Path:
    """The micro model's checkpoint with exit heads (a copy: the module's `model` stays without)."""
    m = micro_model()
    m.exit_heads = heads
    path = tmp_path_factory.mktemp("ckpt_heads") / "micro_heads.pt"
    save_checkpoint(path, m)
    return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory, cifar10_test) -> Path:
    """An ImageFolder tree of real CIFAR-10 images: 20 train and 15 test images per class."""
    from PIL import Image

    root = tmp_path_factory.mktemp("tree")
    rng = np.random.default_rng(0)
    for k, name in enumerate(cifar10_test.class_names):
        idx = rng.permutation(np.nonzero(cifar10_test.labels == k)[0])[:35]
        for split, part in (("train", idx[:20]), ("test", idx[20:])):
            d = root / split / name
            d.mkdir(parents=True)
            for i in part:
                Image.fromarray(cifar10_test.images[i]).save(d / f"{i:05d}.png")
    return root


@pytest.fixture(scope="module")
def ood_npz(tmp_path_factory, cifar100_npz) -> Path:
    d = np.load(cifar100_npz)
    path = tmp_path_factory.mktemp("ood") / "ood.npz"
    np.savez(
        path,
        images=d["images"][:60],
        fine_labels=d["fine_labels"][:60],
        fine_label_names=d["fine_label_names"],
    )
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CODEDRESNEXT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_class_path_pass_equals_masked_model(model, real_images):
    ds = real_images.subset(np.arange(24))
    res = run_passes(model, ds, full=True, class_paths=True, batch_size=10)
    x = to_input(torch.from_numpy(ds.images), model.cfg.mean, model.cfg.std)
    with torch.no_grad():
        ref = model(x)
        np.testing.assert_allclose(res["logits"], ref.logits.numpy(), atol=1e-5, rtol=1e-5)
        for e, r in zip(res["energies"], ref.energies):
            np.testing.assert_allclose(e, r.numpy(), atol=1e-5, rtol=1e-5)
        for k in range(10):
            masked = model(x, keep_classes=[k]).logits[:, k].numpy()
            np.testing.assert_allclose(res["binary"][:, k], masked, atol=1e-5, rtol=1e-5)
        # the masked paths really differ from the full model (the test would catch a no-op mask)
        assert np.abs(res["binary"] - res["logits"]).max() > 1e-3


def test_forward_from_with_branch_keep_matches_model(model, real_images):
    x = to_input(torch.from_numpy(real_images.images[:8]), model.cfg.mean, model.cfg.std)
    keeps = [None] * len(model.blocks)
    keeps[3] = torch.tensor([1, 0, 1, 1, 0, 1, 1, 1, 0, 1.0])
    with torch.no_grad():
        ref = model(x, branch_keep=keeps).logits
        got, _ = forward_from(model, forward_prefix(model, x, 2), 2, keeps)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-5, rtol=1e-5)


def test_removal_orders_are_nested_seeded_and_respect_the_codeword(model):
    words = model.blocks[3].codewords.numpy()  # (10, 10), 3 ones each
    orders = removal_orders(words, draws=4, seed=7)
    assert orders["active"].shape == (4, 10, 3) and orders["inactive"].shape == (4, 10, 7)
    for d in range(4):
        for c in range(10):
            assert sorted(orders["active"][d, c]) == np.nonzero(words[c])[0].tolist()
            assert sorted(orders["inactive"][d, c]) == np.nonzero(words[c] == 0)[0].tolist()
    assert len({tuple(orders["inactive"][d, 0]) for d in range(4)}) > 1  # draws differ
    again = removal_orders(words, draws=4, seed=7)
    assert all(np.array_equal(orders[k], again[k]) for k in orders)
    keep = keep_mask(orders["active"][0, 2], 2, 10)
    assert keep.sum() == 8 and set(np.nonzero(keep == 0)[0]) <= set(np.nonzero(words[2])[0])


def test_removal_constructed_case(real_images):
    """All samples of class c; the chosen block's branches outside w_c carry no signal (zero
    expand weights), and labels are the model's own predictions. Then removing inactive branches
    changes nothing (accuracy stays 1), and removing all N_act active branches gives exactly the
    accuracy of model(x, branch_keep = 1 - w_c at that block)."""
    model = micro_model(seed=1)
    c, bi = 4, 3
    block = model.blocks[bi]
    w = block.codewords[c]  # (N,)
    inactive = (w == 0).repeat_interleave(block.width)
    with torch.no_grad():
        block.expand.weight[:, inactive] = 0.0
    images = real_images.images[:40]
    x = to_input(torch.from_numpy(images), model.cfg.mean, model.cfg.std)
    with torch.no_grad():
        labels = model(x).logits.argmax(1)
    keep_pred = labels == labels.mode().values  # samples the model assigns to one class
    if int(keep_pred.sum()) < 5:
        pytest.skip("the random model spreads these images over too many classes")
    cls = int(labels.mode().values)
    # relabel: every sample is "class c" for the masks; use the model's predicted class as truth
    # by permuting the class rows so that class c's row is the predicted class's row
    with torch.no_grad():
        perm = torch.arange(10)
        perm[c], perm[cls] = cls, c
        model.fc.weight.data = model.fc.weight.data[perm]
    sel = keep_pred.numpy()
    ds = ArrayDataset(images[sel], np.full(int(sel.sum()), c, np.int64), real_images.class_names)
    rem = removal_curves(model, ds, coded_index=2, draws=2, seed=0, batch_size=7)
    assert rem["block_index"] == bi and rem["n_active"] == 3 and rem["k"] == [0, 1, 2, 3]
    assert rem["active"][0] == pytest.approx(1.0) and rem["inactive"] == pytest.approx([1.0] * 4)
    keeps = [None] * len(model.blocks)
    keeps[bi] = 1.0 - w
    xs = to_input(torch.from_numpy(ds.images), model.cfg.mean, model.cfg.std)
    with torch.no_grad():
        expect = float((model(xs, branch_keep=keeps).logits.argmax(1) == c).float().mean())
    assert rem["active"][3] == pytest.approx(expect, abs=1e-12)
    assert rem["active"][3] < 1.0  # removing the class's own branches does hurt here
    with pytest.raises(ValueError, match="out of range"):
        removal_curves(model, ds, coded_index=4)


def test_energy_per_class_and_codeword_agreement():
    words = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
    e = np.array([[1.9, 1.8, 0.2, 0.1], [1.7, 2.1, 0.1, 0.1], [0.1, 0.2, 1.9, 1.8], [9, 9, 1, 1.0]])
    labels = np.array([0, 0, 1, 1])  # class 2 absent
    mean = mean_energy_per_class(e, labels, 3)
    np.testing.assert_allclose(mean[0], [1.8, 1.95, 0.15, 0.1])
    np.testing.assert_allclose(mean[1], [4.55, 4.6, 1.45, 1.4])
    assert np.all(np.isnan(mean[2]))
    assert codeword_agreement(mean, words) == pytest.approx(0.5)  # class 0 right, class 1 wrong


def _run_cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CODEDRESNEXT_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "codedresnext.cli", "evaluate", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )


def test_evaluate_cli_builds_the_report(tmp_path, ckpt_heads, heads, tree, ood_npz, model):
    out = tmp_path / "report"
    r = _run_cli(
        str(ckpt_heads),
        "--data",
        str(tree),
        "--out",
        str(out),
        "--ood",
        str(ood_npz),
        "--quiet",
        cache=tmp_path / "cache",
    )
    assert r.returncode == 0, r.stderr
    assert "accuracy" in r.stdout and "report.html" in r.stdout
    pngs = [
        "pr_scatter.png",
        "logit_histograms.png",
        "early_decoders.png",
        "removal.png",
        "energy_heatmap.png",
    ]
    for name in ["metrics.json", "summary.md", "report.html", *pngs]:
        assert (out / name).stat().st_size > 100, name
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = json.loads((out / "metrics.json").read_text())
    assert (m["test_samples"], m["train_samples"], m["ood_samples"]) == (150, 200, 60)
    # accuracy recomputed independently with the model on the same 150 test images
    from codedresnext.data import load_dataset

    test = load_dataset(tree, "test")
    x = to_input(torch.from_numpy(test.images), model.cfg.mean, model.cfg.std)
    with torch.no_grad():
        logits = model(x).logits
        acc = float((logits.argmax(1).numpy() == test.labels).mean())
    assert m["accuracy"] == pytest.approx(acc, abs=1e-9) and m["flip_tta"] is False
    assert len(m["early_decoder_accuracy"]) == 3 and all(0 <= a <= 1 for a in m["early_decoder_accuracy"])
    # the exit heads' accuracy, recomputed from the block outputs with the heads' own formula
    from codedresnext.exit_heads import head_scores

    with torch.no_grad():
        h, want = model.stem(x), []
        for i, blk in enumerate(model.blocks):
            h, _ = blk(h)
            if i in model.coded_blocks:
                want.append(float((head_scores(heads, i, h).argmax(1).numpy() == test.labels).mean()))
    assert m["exit_head_accuracy"] == pytest.approx(want, abs=1e-9)
    assert "last exit head" in r.stdout and "| exit head accuracy |" in (out / "summary.md").read_text()
    assert len(m["per_class"]) == 10
    for c in m["per_class"]:
        assert np.isfinite(c["threshold"])
        assert c["positives"] == 15 and c["negatives"] == 135
        assert c["ood_negatives"] == 60
        for key in ("precision", "recall", "f1", "auc", "ood_precision", "ood_recall", "ood_f1", "ood_auc"):
            assert 0.0 <= c[key] <= 1.0, key
        assert c["ood_recall"] == c["recall"]  # same positives, same threshold
    assert m["binary_mean_f1"] == pytest.approx(np.mean([c["f1"] for c in m["per_class"]]))
    assert m["removal"]["samples"] == 150 and m["removal"]["k"] == [0, 1, 2, 3]  # all 150 (limit 2000)
    assert m["removal"]["active"][0] == m["removal"]["inactive"][0]
    assert len(m["energy"]["mean_energy"]) == 3
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and "src='http" not in html
    assert "| airplane |" in (out / "summary.md").read_text()
    assert not list(out.glob(".*.tmp"))


def test_evaluate_cli_errors_are_clear(tmp_path, ckpt, tree, cifar100_npz):
    from codedresnext.errors import CodedResNeXtError
    from codedresnext.evaluate.run import EvalConfig, evaluate

    with pytest.raises(CodedResNeXtError, match=r"removal_block 7 .*0\.\.2"):  # an API argument
        evaluate(EvalConfig(str(ckpt), str(tree), str(tmp_path / "o"), removal_block=7, progress=False))
    r = _run_cli(
        str(tmp_path / "missing.pt"),
        "--data",
        str(tree),
        "--out",
        str(tmp_path / "o"),
        cache=tmp_path / "cache",
    )
    assert r.returncode == 2 and "no such file: " in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "metrics.json").exists()


# --- the ONNX path ---------------------------------------------------------------------------


def test_onnx_detector_metrics_equal_pytorch_and_thresholds_are_written(tmp_path, ckpt, tree, ood_npz, model):
    from codedresnext.evaluate.graphs import check_same_checkpoint
    from codedresnext.evaluate.run import EvalConfig, compute, evaluate
    from codedresnext.export.exporter import ExportOptions, export_graphs
    from codedresnext.runtime.thresholds.detector import read_thresholds

    export = tmp_path / "export"  # the real exporter: physically pruned class graphs
    export_graphs(ExportOptions(out=export, checkpoint=ckpt, classes="all", verify=False, progress=False))
    common = dict(
        checkpoint=str(ckpt),
        data=str(tree),
        ood=str(ood_npz),
        removal_limit=30,
        removal_draws=1,
        progress=False,
        batch_size=64,
    )
    ref, _ = compute(EvalConfig(out=str(tmp_path / "t"), **common))
    got = evaluate(EvalConfig(out=str(tmp_path / "o"), graphs=str(export), **common))
    assert ref["detector_source"] == "PyTorch masked model" and got["detector_source"].startswith("ONNX")
    assert got["onnx_max_abs_diff_vs_torch"] < 1e-4
    for a, b in zip(ref["per_class"], got["per_class"]):
        assert a["class"] == b["class"]
        assert b["threshold"] == pytest.approx(a["threshold"], abs=1e-4)
        for key in ("precision", "recall", "f1", "auc", "ood_precision", "ood_recall", "ood_f1", "ood_auc"):
            assert b[key] == pytest.approx(a[key], abs=1e-6), (a["class"], key)
    assert got["binary_mean_f1"] == pytest.approx(ref["binary_mean_f1"], abs=1e-6)

    written = read_thresholds(export)
    assert len(written) == 10 and len(got["thresholds_written_to"]) == 10
    for c in got["per_class"]:
        assert written[f"class_{c['class']}"] == {c["class"]: pytest.approx(c["threshold"], abs=0)}
    manifest = artifact.load_manifest(export)
    for g in manifest.graphs:
        assert g.sha256 == sha256_file(export / g.file)
    assert manifest.thresholds_source["train_samples"] == 200

    other = tmp_path / "other.pt"
    save_checkpoint(other, micro_model(seed=3))
    with pytest.raises(GraphError, match="another checkpoint"):
        check_same_checkpoint(export / "class_cat.onnx", other)


def test_int8_class_graphs_are_scored_and_get_their_own_thresholds(tmp_path, ckpt, tree):
    """--precision int8-cpu scores the INT8 twins (close to fp32 ones), writes thresholds fitted on
    their own scores to those twins only, and a precision the export lacks says how to export it."""
    from codedresnext.evaluate.run import EvalConfig, evaluate
    from codedresnext.export.exporter import ExportOptions, export_graphs
    from codedresnext.export.int8 import Int8Options
    from codedresnext.runtime.thresholds.detector import read_thresholds

    export = tmp_path / "export"
    int8 = Int8Options(calibration=str(tree), images=64, eval_images=0)
    export_graphs(
        ExportOptions(out=export, checkpoint=ckpt, classes="all", int8=int8, verify=False, progress=False)
    )
    common = dict(checkpoint=str(ckpt), data=str(tree), graphs=str(export), removal_limit=30, removal_draws=1)
    common.update(progress=False, batch_size=64)
    fp32 = evaluate(EvalConfig(out=str(tmp_path / "fp32"), **common))
    before = read_thresholds(export)
    q = evaluate(EvalConfig(out=str(tmp_path / "q"), precision="int8-cpu", **common))
    assert q["detector_precision"] == "int8-cpu" and "int8-cpu class graphs" in q["detector_source"]
    assert sorted(q["thresholds_written_to"]) == sorted(f"class_{c}_int8_cpu" for c in q["classes"])
    after = read_thresholds(export)
    for c in q["per_class"]:
        k = c["class"]
        assert after[f"class_{k}_int8_cpu"] == {k: pytest.approx(c["threshold"], abs=0)}
        assert after[f"class_{k}"] == before[f"class_{k}"]  # fp32 and the TensorRT form untouched
        assert after[f"class_{k}_int8"] == before[f"class_{k}_int8"]
    assert artifact.load_manifest(export).thresholds == {
        c["class"]: c["threshold"] for c in fp32["per_class"]
    }
    # INT8 moves the detectors little: same ranking quality within a few points of AUC
    assert abs(q["binary_mean_auc"] - fp32["binary_mean_auc"]) < 0.05
    # the INT8 full graph's accuracy on the whole test set, against the fp32 ONNX graph (== PyTorch)
    g = q["graph_full_accuracy"]
    assert (g["graph"], g["reference"], g["images"]) == ("full_int8_cpu", "full", q["test_samples"])
    assert abs(g["reference_top1"] - fp32["accuracy"]) <= 2 / q["test_samples"]
    assert g["loss_points"] == pytest.approx(100 * (g["reference_top1"] - g["top1"]))
    assert 0.5 < g["top1_agreement"] <= 1.0 and "graph_full_accuracy" not in fp32
    summary = (tmp_path / "q" / "summary.md").read_text()
    assert "full graph `full_int8_cpu` (int8-cpu, ONNX Runtime)" in summary
    with pytest.raises(GraphError, match="no fp16 class graph.*--fp16"):
        evaluate(EvalConfig(out=str(tmp_path / "h"), precision="fp16", **common))
