"""Learned exit heads: fitting on real images, the checkpoint round trip, the exported exits
(ONNX == PyTorch on real images), the `fit-exits` command and its errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from cli_helpers import run_cli

from codedresnext import data
from codedresnext.artifact import OUTPUT_EXIT_SCORES, load_manifest
from codedresnext.checkpoint import load_checkpoint, save_checkpoint
from codedresnext.errors import CheckpointError
from codedresnext.exit_heads import ExitHeads, fit_exit_heads, head_accuracy, head_scores, pooled
from codedresnext.export import ExportOptions, export_graphs
from codedresnext.model import CodedResNeXt, to_input
from codedresnext.model_config import build_config


@pytest.fixture(scope="module")
def train_small(small_tree):
    return data.load_dataset(small_tree, "train")  # 20 real images per class


@pytest.fixture(scope="module")
def headed(train_small):
    """A tiny model (seeded random weights, BN in eval) with heads fitted on 200 real images."""
    torch.manual_seed(0)
    m = CodedResNeXt(build_config("tiny")).eval()
    m.exit_heads = fit_exit_heads(m, train_small.images, train_small.labels, l2=1e-2)
    return m


def test_heads_fit_every_coded_block_and_learn_the_training_images(headed, train_small):
    heads = headed.exit_heads
    assert sorted(heads.weights) == headed.coded_blocks and heads.pool == 2
    for i, w in heads.weights.items():
        assert w.shape == (10, headed.blocks[i].c_out * 4) and heads.biases[i].shape == (10,)
    acc = head_accuracy(headed, heads, train_small.images, train_small.labels)
    assert min(acc.values()) >= 0.5  # 10 classes: chance is 0.1; the features of 200 images separate
    assert heads.fitted["l2"] == {str(i): 1e-2 for i in headed.coded_blocks}


def test_l2_auto_picks_per_block_from_the_grid_by_held_out_log_loss(train_small):
    torch.manual_seed(1)
    m = CodedResNeXt(build_config("tiny")).eval()
    heads = fit_exit_heads(m, train_small.images[:100], train_small.labels[:100])
    from codedresnext.exit_heads import L2_GRID

    for i in m.coded_blocks:
        losses = heads.fitted["l2_heldout_log_loss"][str(i)]
        assert set(losses) == {f"{v:g}" for v in L2_GRID}
        assert losses[f"{heads.fitted['l2'][str(i)]:g}"] == min(losses.values())


def test_checkpoint_round_trip_and_refused_heads(headed, tmp_path):
    p = tmp_path / "h.pt"
    save_checkpoint(p, headed)
    m, state = load_checkpoint(p)
    assert state["exit_heads"]["pool"] == 2
    for i in headed.coded_blocks:
        np.testing.assert_array_equal(m.exit_heads.weights[i], headed.exit_heads.weights[i])
        np.testing.assert_array_equal(m.exit_heads.biases[i], headed.exit_heads.biases[i])
    state["exit_heads"]["blocks"][str(headed.coded_blocks[0])]["weight"] = torch.zeros(10, 7)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="refit them with `codedresnext fit-exits`"):
        load_checkpoint(tmp_path / "bad.pt")
    state["exit_heads"]["blocks"] = {"0": state["exit_heads"]["blocks"][str(headed.coded_blocks[0])]}
    torch.save(state, tmp_path / "plain.pt")  # block 0 of tiny is not coded
    with pytest.raises(CheckpointError, match="not a coded block"):
        load_checkpoint(tmp_path / "plain.pt")


def test_exported_exits_are_the_heads_on_real_images(headed, tmp_path, real_images):
    out = tmp_path / "e"
    export_graphs(
        ExportOptions(out=out, segments="all", multi_exit=True, progress=False, verify=True), model=headed
    )
    m = load_manifest(out)
    assert all(g.verification.passed for g in m.graphs)  # ONNX == the PyTorch reference (with heads)
    reloaded, _ = load_checkpoint(out / "source.pt")  # the graphs' source carries the heads
    assert reloaded.exit_heads is not None
    import onnxruntime as ort

    x = to_input(torch.from_numpy(real_images.images[:16]), headed.cfg.mean, headed.cfg.std)
    with torch.no_grad():
        h = headed.stem(x)
        outs = {}
        for i, blk in enumerate(headed.blocks):
            h, _ = blk(h)
            if i in headed.exit_heads.weights:
                outs[i] = (h, head_scores(headed.exit_heads, i, h).numpy())
    seg0 = onnx.load(str(out / "segment0.onnx"))
    ops = {n.name: n.op_type for n in seg0.graph.node}
    b = headed.coded_blocks[0]
    assert ops[f"block{b}/exit/pool"] == "AveragePool" and ops[f"block{b}/exit/head"] == "Gemm"
    assert not any(name.endswith("/exit/distance") for name in ops)  # no codeword decoder
    s = ort.InferenceSession(str(out / "segment0.onnx"), providers=["CPUExecutionProvider"])
    got = s.run([OUTPUT_EXIT_SCORES], {"images": x.numpy()})[0]
    np.testing.assert_allclose(got, outs[b][1], atol=1e-5)
    assert got.argmax(1).tolist() == outs[b][1].argmax(1).tolist()
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    # pooled cells in the (channel, row, column) order Flatten of AveragePool gives
    h0 = outs[b][0]
    cells = pooled(h0, 2).view(len(h0), -1, 2, 2)
    np.testing.assert_allclose(
        cells[:, :, 0, 1].numpy(),
        h0[:, :, : h0.shape[2] // 2, h0.shape[3] // 2 :].mean((2, 3)).numpy(),
        atol=1e-6,
    )


def test_without_heads_the_exits_stay_the_codeword_decoder(tmp_path):
    export_graphs(
        ExportOptions(out=tmp_path / "p", preset="tiny", segments="all", progress=False, verify=False)
    )
    ops = {n.name for n in onnx.load(str(tmp_path / "p" / "segment0.onnx")).graph.node}
    assert any(n.endswith("/exit/distance") for n in ops) and not any(n.endswith("/exit/head") for n in ops)


def test_fit_exits_cli_writes_a_checkpoint_with_heads(headed, small_tree, tmp_path, capsys, monkeypatch):
    from codedresnext import exit_heads

    src = tmp_path / "m.pt"
    plain = CodedResNeXt(headed.cfg)
    plain.load_state_dict(headed.state_dict())
    save_checkpoint(src, plain)
    monkeypatch.setattr(exit_heads, "L2_GRID", (1e-2,))  # the CLI's auto L2, over one value: seconds
    argv = ["fit-exits", str(src), "--data", str(small_tree), "--out", str(tmp_path / "h.pt")]
    assert run_cli([*argv, "--images", "120", "--evaluate", "50", "--quiet"]) == 0
    m, state = load_checkpoint(tmp_path / "h.pt")
    fitted = m.exit_heads.fitted
    assert fitted["images"] == 120 and fitted["test_images"] == 50 and fitted["seed"] == 0
    assert set(fitted["test_accuracy"]) == {str(i) for i in m.coded_blocks}
    assert "test accuracy per coded block" in capsys.readouterr().out
    for bad, msg in (
        (["--images", "0"], "--images: expected a whole number >= 1"),
        (["--evaluate", "-1"], ">= 0"),
    ):
        argv[-1] = str(tmp_path / "x.pt")
        assert run_cli([*argv, *bad]) == 2
        assert msg in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_training_from_a_checkpoint_drops_its_heads(headed, tmp_path):
    from codedresnext.train.run import init_from as _init_from

    save_checkpoint(tmp_path / "h.pt", headed)
    m = _init_from(str(tmp_path / "h.pt"), headed.cfg)
    assert m.exit_heads is None  # heads fit the old weights only


def test_exit_heads_state_is_plain_tensors(headed):
    st = headed.exit_heads.to_state()
    again = ExitHeads.from_state(st, headed, "here")
    assert all(isinstance(v["weight"], torch.Tensor) for v in st["blocks"].values())
    assert again.pool == 2 and sorted(again.weights) == sorted(headed.exit_heads.weights)
