"""Precise BN: the re-estimated statistics are exactly the clean, all-branch batch statistics."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from cli_helpers import run_cli

from codedresnext.checkpoint import read_checkpoint, save_checkpoint
from codedresnext.cli import main
from codedresnext.model import create_model, to_input
from codedresnext.train.precise_bn import bn_layers, recalibrate_bn


def _noisy_model():
    """A tiny model whose BN statistics come from dropSubNN training-mode passes on noise."""
    torch.manual_seed(0)
    model = create_model("tiny")
    model.p_drop = 0.5
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 3, 32, 32) * 2 + 0.5)
    return model


def _clean_batch_stats(model, images: np.ndarray) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per BN layer: mean and unbiased variance of its input, train mode, p_drop = 0, one batch."""
    ref = copy.deepcopy(model)
    ref.p_drop = 0.0
    ref.train()
    stats, hooks = [], []
    for bn in bn_layers(ref):
        hooks.append(
            bn.register_forward_pre_hook(
                lambda m, inp: stats.append((inp[0].mean((0, 2, 3)), inp[0].var((0, 2, 3), unbiased=True)))
            )
        )
    with torch.no_grad():
        ref(to_input(torch.from_numpy(images), model.cfg.mean, model.cfg.std))
    for h in hooks:
        h.remove()
    return stats


def test_statistics_are_the_clean_batch_statistics(real_images):
    model = _noisy_model()
    weights = {k: v.clone() for k, v in model.named_parameters()}
    momenta = [bn.momentum for bn in bn_layers(model)]
    n = recalibrate_bn(model, real_images, images=64, batch_size=64)
    assert n == 64
    expected = _clean_batch_stats(model, real_images.images)  # the subset is all 64, in order
    for bn, (mean, var) in zip(bn_layers(model), expected, strict=True):
        torch.testing.assert_close(bn.running_mean, mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.running_var, var, rtol=1e-4, atol=1e-5)
    assert all(torch.equal(p, weights[k]) for k, p in model.named_parameters())  # weights untouched
    assert not model.training and model.p_drop == 0.5  # eval mode, dropSubNN setting restored
    assert [bn.momentum for bn in bn_layers(model)] == momenta


def test_several_batches_weigh_equally_and_the_subset_is_seeded(real_images):
    model = _noisy_model()
    recalibrate_bn(model, real_images, images=64, batch_size=16)
    per_batch = [_clean_batch_stats(model, real_images.images[i : i + 16]) for i in range(0, 64, 16)]
    for j, bn in enumerate(bn_layers(model)):
        mean = torch.stack([b[j][0] for b in per_batch]).mean(0)
        torch.testing.assert_close(bn.running_mean, mean, rtol=1e-4, atol=1e-5)
    a, b, c = _noisy_model(), _noisy_model(), _noisy_model()
    for m, seed in ((a, 1), (b, 1), (c, 2)):
        recalibrate_bn(m, real_images, images=20, batch_size=20, seed=seed)
    first = bn_layers(a)[0].running_mean
    assert torch.equal(first, bn_layers(b)[0].running_mean)
    assert not torch.allclose(first, bn_layers(c)[0].running_mean)


def test_precise_bn_cli_writes_a_recorded_checkpoint(small_tree, tmp_path, capsys):
    src, out = tmp_path / "src.pt", tmp_path / "pbn.pt"
    model = _noisy_model()
    save_checkpoint(src, model, optimizer={"state": {}}, step=7)
    argv = ["precise-bn", str(src), "--data", str(small_tree), "--out", str(out), "--images", "50"]
    assert main([*argv, "--evaluate", "40", "--quiet"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    state = read_checkpoint(out)
    rec = state["precise_bn"]
    assert rec["images"] == 50 and rec["test_images"] == 40 and rec["source"] == str(src)
    assert 0.0 <= rec["test_accuracy_before"] <= 1.0 and 0.0 <= rec["test_accuracy_after"] <= 1.0
    assert len(rec["early_decoder_accuracy_after"]) == len(model.coded_blocks)
    assert state["step"] == 7 and "optimizer" not in state
    before = read_checkpoint(src)["model"]
    stats = [k for k in before if k.endswith("running_mean")]
    weights = [k for k in before if k.endswith("weight")]
    assert stats and all(not torch.equal(before[k], state["model"][k]) for k in stats)
    assert all(torch.equal(before[k], state["model"][k]) for k in weights)
    assert main([*argv[:-4], "--out", str(out), "--images", "10", "--quiet"]) == 0  # again: replaced
    assert read_checkpoint(out)["precise_bn"]["images"] == 10


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"not a checkpoint"), "not a readable codedresnext checkpoint"),
        (lambda p: None, "argument checkpoint: no such file"),
    ],
)
def test_bad_checkpoints_are_refused_and_nothing_is_written(small_tree, tmp_path, capsys, make, message):
    src, out = tmp_path / "bad.pt", tmp_path / "out.pt"
    make(src)
    rc = run_cli(["precise-bn", str(src), "--data", str(small_tree), "--out", str(out), "--quiet"])
    assert rc == 2 and message in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".out.pt.*"))


def test_data_of_another_class_count_is_refused(tmp_path, capsys):
    src, out = tmp_path / "src.pt", tmp_path / "out.pt"
    save_checkpoint(src, _noisy_model())
    tree = tmp_path / "tree"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            d = tree / split / cls
            d.mkdir(parents=True)
            from PIL import Image

            Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(d / "0.png")
    rc = main(["precise-bn", str(src), "--data", str(tree), "--out", str(out), "--quiet"])
    assert rc == 2 and "2 classes but the model 10" in capsys.readouterr().err
    assert not out.exists()
