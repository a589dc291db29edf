"""GPU checks (`pytest -m gpu`): training steps on CUDA, CUDA inference through the torch backend
(with and without CUDA graphs) against ONNX Runtime on real images, and resume after a kill on CUDA.

Skipped, with the reason, where torch sees no CUDA GPU. CODEDRESNEXT_TEST_DEVICE=cpu runs the same
checks on the CPU: `benchmarks/gpu_suite.py --device cpu --quick` uses that to test itself in CI.
`python benchmarks/gpu_suite.py` runs them on a GPU machine together with the GPU benchmarks.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

DEVICE = os.environ.get("CODEDRESNEXT_TEST_DEVICE", "cuda")
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
FP32_TOL, FP16_TOL = 1e-4, 2e-2  # relative to max(1, max |ONNX Runtime output|), as in test_onnx_torch


def _graphs(directory) -> list[dict]:
    """The manifest's graph entries as plain JSON (the file format, whatever the manifest API)."""
    import json

    return json.loads((directory / "manifest.json").read_text())["graphs"]


@pytest.fixture(scope="module")
def device():
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(
            f"no CUDA GPU here (torch {torch.__version__}, CUDA build {torch.version.cuda}); these tests "
            "need one: run `python benchmarks/gpu_suite.py` on a GPU machine (CODEDRESNEXT_TEST_DEVICE=cpu "
            "runs them on the CPU)"
        )
    if DEVICE.startswith("cuda"):  # fp32 means fp32 for the parity checks below
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return torch.device(DEVICE)


@pytest.fixture(scope="module")
def real_images(small_tree):
    """The 100 real test JPEGs of the small tree (decoding the whole CIFAR-10 test split, as the
    session fixture of the same name does, would dominate a CPU run of this file)."""
    from codedresnext.data import load_dataset

    return load_dataset(small_tree, "test")


def _images(frames: np.ndarray) -> np.ndarray:
    x = (frames.astype(np.float32) / 255 - MEAN) / STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32)


def test_forward_and_a_training_step_match_the_cpu(device, real_images):
    """The same tiny model, real images: eval logits and one SGD step on `device` equal the CPU's."""
    import torch.nn.functional as F

    from codedresnext.model import create_model

    torch.manual_seed(0)
    cpu = create_model("tiny")
    cpu.p_drop = 0.0  # dropSubNN masks come from the device's RNG: off for a like-for-like step
    dev = create_model("tiny").to(device)
    dev.load_state_dict(cpu.state_dict())
    dev.p_drop = 0.0
    x = torch.from_numpy(_images(real_images.images[:16]))
    y = torch.from_numpy(real_images.labels[:16].astype(np.int64))
    with torch.no_grad():
        a = cpu.eval()(x).logits
        b = dev.eval()(x.to(device)).logits.cpu()
    torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    for m in (cpu, dev):
        m.train()
        opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True)
        d = next(m.parameters()).device
        o = m(x.to(d), targets=y.to(d))
        loss = F.cross_entropy(o.logits, y.to(d)) + 6.0 * torch.stack(o.coding_loss).sum()
        loss.backward()
        opt.step()
    for (k, p), q in zip(cpu.state_dict().items(), dev.state_dict().values()):
        if p.is_floating_point():
            torch.testing.assert_close(q.cpu(), p, atol=2e-4, rtol=2e-4, msg=k)


def test_training_run_on_device(device, small_tree, tmp_path, session_cache):
    """The trainer on `device` (bf16 autocast on CUDA), RandAugment on: steps run, loss is finite,
    the checkpoint rebuilds its model."""
    from codedresnext.checkpoint import load_checkpoint
    from codedresnext.train import TrainConfig
    from codedresnext.train.loop import train

    cfg = TrainConfig(
        preset="tiny",
        data=str(small_tree),
        out=str(tmp_path / "run"),
        max_steps=4,
        batch_size=20,
        lr=0.05,
        randaugment=(3, 4),
        eval_limit=40,
        device=str(device),
        progress=False,
    )
    res = train(cfg)
    assert res["step"] == 4 and np.isfinite(res["history"][-1]["train_cross_entropy"])
    model, state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["step"] == 4 and all(torch.isfinite(p).all() for p in model.parameters())


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    from codedresnext.export import ExportOptions, export_graphs

    out = tmp_path_factory.mktemp("gpu_export") / "e"
    export_graphs(
        ExportOptions(
            out=out,
            preset="tiny",
            classes=["cat"],
            multi_exit=True,
            segments=True,
            fp16=True,
            progress=False,
            verify=False,
        )
    )
    return out


@pytest.mark.parametrize("cuda_graph", [False, True], ids=["eager", "cuda-graph"])
def test_inference_parity_on_device(device, export_dir, real_images, cuda_graph):
    """Every image graph of the export through PyTorch on `device` equals ONNX Runtime (CPU) on real
    images, at two batch sizes (CUDA graphs: one capture per size, replayed with new data)."""
    from codedresnext.runtime import open_backend

    if cuda_graph and device.type != "cuda":
        pytest.skip("CUDA graphs need a CUDA device")
    graphs = [g for g in _graphs(export_dir) if g["inputs"][0]["name"] == "images"]
    assert {g["kind"] for g in graphs} >= {"full", "class", "multi-exit", "segment"}
    for g in graphs:
        path = export_dir / g["file"]
        be = open_backend("torch", path, device=str(device), cuda_graph=cuda_graph, threads=1)
        ref = open_backend("ort", path, threads=1)
        tol = FP16_TOL if g.get("precision") == "fp16" else FP32_TOL
        for batch in (8, 3, 8):  # back to 8: the first capture is replayed on new inputs
            frames = real_images.images[np.random.default_rng(batch).permutation(len(real_images))[:batch]]
            feeds = {"images": _images(frames)}
            r, t = ref.infer(feeds), be.infer(feeds)
            for k in r:
                err = float(np.abs(t[k] - r[k]).max())
                assert err <= tol * max(1.0, float(np.abs(r[k]).max())), (g["name"], k, batch, err)
        if cuda_graph:
            assert len(be._runner.captured_shapes) == 2
        be.close()


def test_resume_after_kill_on_device(device, small_tree, tmp_path, session_cache):
    """Killed after a checkpoint and resumed on `device`: the weights equal an uninterrupted run's
    (bit-exact on CPU; on CUDA within the run-to-run noise of cuDNN's non-deterministic kernels)."""
    from test_train import _cli, _finish, _kill_after_first_checkpoint, _state, _train_cmd

    extra = ("--epochs", "6", "--max-steps", "30", "--device", str(device))
    recipe = {"save_every": 3, "eval_limit": 20}
    ref = _cli(_train_cmd(small_tree, tmp_path / "ref", *extra, **recipe), session_cache)
    _finish(ref)
    killed = _cli(_train_cmd(small_tree, tmp_path / "killed", *extra, **recipe), session_cache)
    _kill_after_first_checkpoint(killed, tmp_path / "killed", poll_s=0.005)
    assert 1 <= _state(tmp_path / "killed")["step"] < 30
    _finish(_cli(_train_cmd(small_tree, tmp_path / "killed", *extra, "--resume", **recipe), session_cache))
    a, b = _state(tmp_path / "ref"), _state(tmp_path / "killed")
    assert a["step"] == b["step"] == 30
    for k in a["model"]:
        if device.type == "cpu":
            assert torch.equal(a["model"][k], b["model"][k]), k
        elif a["model"][k].is_floating_point():
            torch.testing.assert_close(b["model"][k], a["model"][k], atol=1e-3, rtol=1e-3, msg=k)
