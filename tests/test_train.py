"""Training on real CIFAR-10 JPEGs: loss goes down, metrics/config/checkpoints, resume after SIGKILL,
torchrun (gloo, 2 processes) against one process with --grad-accum 2, schedules, flag validation.

Runs use a small real tree (20 train / 10 test images per class from the shared archive) and the
tiny preset so that the file stays fast on a 2-core CPU.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codedresnext import data
from codedresnext.checkpoint import load_checkpoint, read_checkpoint
from codedresnext.errors import CodedResNeXtError
from codedresnext.model import create_model
from codedresnext.train import TrainConfig
from codedresnext.train.evaluation import classifier_metrics
from codedresnext.train.loop import _draw_paths, _path_step, lr_at, train

ROOT = Path(__file__).resolve().parents[1]


def _cli(args: list[str], cache: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "CODEDRESNEXT_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def _train_cmd(tree: Path, out: Path, *extra: str, **recipe) -> list[str]:
    """The command line of a tiny run; `recipe` fields (and seed 3) go to a `--config` file."""
    cfg = out.parent / f"{out.name}.recipe.json"
    cfg.write_text(json.dumps({"seed": 3, **recipe}))
    return [
        sys.executable,
        "-m",
        "codedresnext.cli",
        "train",
        "--preset",
        "tiny",
        "--data",
        str(tree),
        "--config",
        str(cfg),
        "--batch-size",
        "40",
        "--lr",
        "0.1",
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]


def _finish(p: subprocess.Popen, timeout: float = 900) -> None:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _train(cfg: TrainConfig, cache: Path) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODEDRESNEXT_CACHE", str(cache))
        return train(cfg)


def _state(run: Path) -> dict:
    return read_checkpoint(run / "last.pt")


# --- a real training run ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_run(small_tree, tmp_path_factory, session_cache):
    """4 epochs of 5 steps on 200 real images (no RandAugment so that 20 steps can fit them)."""
    out = tmp_path_factory.mktemp("smoke") / "run"
    cfg = TrainConfig(
        preset="tiny",
        data=str(small_tree),
        out=str(out),
        epochs=4,
        batch_size=40,
        lr=0.1,
        no_randaugment=True,
        seed=0,
        progress=False,
    )
    return out, _train(cfg, session_cache)


def test_training_lowers_the_loss_on_real_images(smoke_run):
    out, res = smoke_run
    hist = _metrics(out)
    assert [m["step"] for m in hist] == [5, 10, 15, 20] and res["step"] == 20
    first, last = hist[0], hist[-1]
    # chance level is ln 10 = 2.303; the tiny net must clearly fit its 200 training images
    assert first["train_cross_entropy"] > 2.15
    assert last["train_cross_entropy"] < first["train_cross_entropy"] - 0.25
    assert last["train_accuracy"] > max(0.2, first["train_accuracy"] + 0.05)  # chance: 0.1
    # the coding loss (mu = 6) goes down too, in every coded block
    assert all(b < a for a, b in zip(first["train_coding_loss"], last["train_coding_loss"]))


def test_metrics_config_and_checkpoints(smoke_run, small_tree):
    out, res = smoke_run
    rec = _metrics(out)[-1]
    n_coded = 4  # tiny: one 10/10 block, then 2 blocks of 5/10 and 2 of 3/10
    for key in ("train_coding_loss", "test_coding_loss", "early_decoder_accuracy"):
        assert len(rec[key]) == n_coded
    assert all(0.0 <= a <= 1.0 for a in rec["early_decoder_accuracy"])
    assert rec["test_images"] == 100
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["preset"] == "tiny" and cfg["train"]["batch_size"] == 40
    assert len(cfg["model"]["stages"]) == 3 and cfg["model"]["num_classes"] == 10
    # best.pt rebuilds its own model, and re-evaluating it reproduces the logged accuracy
    model, state = load_checkpoint(out / "best.pt")
    assert state["best_accuracy"] == res["best_accuracy"] == max(m["test_accuracy"] for m in _metrics(out))
    test = data.load_dataset(small_tree, "test")
    again = classifier_metrics(model, test)
    assert again["accuracy"] == pytest.approx(state["metrics"]["test_accuracy"], abs=1e-6)
    assert again["early_decoder_accuracy"] == pytest.approx(
        state["metrics"]["early_decoder_accuracy"], abs=1e-6
    )
    assert "optimizer" not in state  # best.pt is weights only; last.pt resumes
    assert _state(out)["step"] == 20 and "optimizer" in _state(out)


def test_a_finished_run_is_not_overwritten(smoke_run, small_tree):
    out, _ = smoke_run
    before = (out / "last.pt").read_bytes()
    with pytest.raises(CodedResNeXtError, match="already holds a run"):
        train(TrainConfig(preset="tiny", data=str(small_tree), out=str(out), progress=False))
    assert (out / "last.pt").read_bytes() == before


def test_own_class_count_gets_a_generated_scheme(small_tree, tmp_path):
    tree = tmp_path / "four"
    classes = ("bird", "cat", "dog", "horse")
    for split in ("train", "test"):
        for c in classes:
            shutil.copytree(small_tree / split / c, tree / split / c)
    out = tmp_path / "run"
    train(
        TrainConfig(
            preset="tiny",
            data=str(tree),
            out=str(out),
            batch_size=40,
            max_steps=2,
            no_randaugment=True,
            progress=False,
        )
    )
    model, _ = load_checkpoint(out / "last.pt")
    assert model.cfg.class_names == classes and model.cfg.num_classes == 4
    for s in model.cfg.stages[1:]:
        words = s.scheme.matrix  # (4, 10)
        assert words.shape == (4, 10) and set(words.sum(1)) == {s.active}
        assert len({w for w in s.codewords}) == 4  # distinct paths per class
    assert model(torch.zeros(2, 3, 32, 32)).logits.shape == (2, 4)


# --- warm restart (--init) ---------------------------------------------------------------------


def test_init_starts_a_new_run_from_the_checkpoint_weights(smoke_run, small_tree, tmp_path, session_cache):
    """--init takes best.pt's weights (not its optimizer or step): after one step at a negligible
    LR the parameters are still best.pt's, the new run counts from step 0 and records its origin."""
    out, _ = smoke_run
    new = tmp_path / "warm"
    cfg = TrainConfig(
        preset="tiny",
        data=str(small_tree),
        out=str(new),
        init=str(out / "best.pt"),
        max_steps=1,
        batch_size=40,
        lr=1e-9,
        no_randaugment=True,
        eval_limit=0,
        progress=False,
    )
    assert _train(cfg, session_cache)["step"] == 1
    start, _ = load_checkpoint(out / "best.pt")
    warm, state = load_checkpoint(new / "last.pt")
    assert state["step"] == 1
    ref = dict(start.named_parameters())
    for name, p in warm.named_parameters():
        assert torch.allclose(p, ref[name], atol=1e-6), name
    # the evaluation after that step matches best.pt's own: the run really started from it
    again = classifier_metrics(start, data.load_dataset(small_tree, "test"))
    assert _metrics(new)[-1]["test_accuracy"] == pytest.approx(again["accuracy"], abs=0.03)
    assert json.loads((new / "config.json").read_text())["train"]["init"] == str(out / "best.pt")
    # resuming the warm run (no --init: the weights come from last.pt) keeps its origin on record
    _train(dataclasses.replace(cfg, init=None, resume=True, max_steps=2), session_cache)
    assert json.loads((new / "config.json").read_text())["train"]["init"] == str(out / "best.pt")
    assert read_checkpoint(new / "last.pt")["step"] == 2


def test_init_refuses_other_classes_resume_and_missing_files(smoke_run, small_tree, tmp_path):
    out, _ = smoke_run
    renamed = tmp_path / "renamed"
    shutil.copytree(small_tree, renamed)
    for split in ("train", "test"):
        (renamed / split / "cat").rename(renamed / split / "kitten")
    kw = dict(preset="tiny", out=str(tmp_path / "run"), max_steps=1, batch_size=40, progress=False)
    with pytest.raises(CodedResNeXtError, match="trained on classes"):
        train(TrainConfig(data=str(renamed), init=str(out / "best.pt"), **kw))
    with pytest.raises(CodedResNeXtError, match="--resume continues one"):
        TrainConfig(data=str(small_tree), init=str(out / "best.pt"), resume=True, **kw).validate()
    with pytest.raises(CodedResNeXtError, match="no checkpoint at"):
        TrainConfig(data=str(small_tree), init=str(tmp_path / "nope.pt"), **kw).validate()
    assert not (tmp_path / "run" / "last.pt").exists()


# --- path training ----------------------------------------------------------------------------


def test_draw_paths_own_class_or_the_hardest_other():
    y = torch.tensor([0, 1, 2, 3] * 50)
    logits = torch.zeros(len(y), 10)
    logits[torch.arange(len(y)), y] = 9.0  # the true class scores highest ...
    logits[torch.arange(len(y)), (y + 4) % 10] = 5.0  # ... then the one a detector confuses
    torch.manual_seed(0)
    hard = _draw_paths(y, logits, 10)
    assert set(hard.tolist()) <= set(y.tolist()) | set(((y + 4) % 10).tolist())
    own = hard == y
    assert torch.equal(hard[~own], (y[~own] + 4) % 10)
    assert 0.35 < float(own.float().mean()) < 0.65
    uniform = _draw_paths(y, None, 10)
    others = uniform[uniform != y]
    assert len(set(others.tolist())) == 10 and bool(((others >= 0) & (others < 10)).all())


def test_path_step_trains_the_pruned_graph_and_leaves_batchnorm_alone():
    """The path pass is the masked model in eval mode (the exported class graph): its gradient is
    path_weight x that of the graph's cross-entropy; running statistics stay, train mode returns."""
    torch.manual_seed(0)
    model = create_model("tiny")
    for b in model.blocks:  # gamma starts at 0: give the branches a say
        torch.nn.init.normal_(b.bn.weight)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    cfg = TrainConfig(path_fraction=0.5, path_weight=0.3, path_negatives="uniform")
    run = SimpleNamespace(
        cfg=cfg, model=model, net=model, model_cfg=model.cfg, dist=SimpleNamespace(world=1, device=x.device)
    )
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model.train()
    torch.manual_seed(1)
    _path_step(run, x, y, torch.zeros(8, 10), sync=True)
    assert model.training
    assert all(torch.equal(model.state_dict()[k], v) for k, v in stats.items())
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    torch.manual_seed(1)
    cls = _draw_paths(y[:4], None, 10)  # the same draw
    model.zero_grad()
    model.eval()
    rows = [model(x[i : i + 1], keep_classes=[int(k)]).logits for i, k in enumerate(cls)]
    (0.3 * F.cross_entropy(torch.cat(rows), y[:4])).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(got[n], p.grad, rtol=1e-4, atol=1e-6, msg=n)
    assert any(float(g.abs().max()) > 0 for g in got.values())


# --- resume after a kill ----------------------------------------------------------------------


def _kill_after_first_checkpoint(proc, run: Path, poll_s: float = 0.01) -> None:
    """SIGKILL the training process `proc` as soon as `run`/last.pt exists (no clean shutdown)."""
    last = run / "last.pt"
    deadline = time.time() + 600
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(poll_s)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"


def test_resume_after_sigkill_reaches_the_same_weights(small_tree, tmp_path, session_cache):
    """A run killed (SIGKILL) right after a mid-epoch checkpoint, then resumed, ends bit-identical to
    an uninterrupted run: same weights, BatchNorm statistics, optimizer state and metrics (path
    training on: its class draws come from the micro-batch's seeded generator too)."""
    extra = ("--epochs", "2")
    recipe = {"save_every": 1, "p_drop": 0.2, "randaugment": [2, 9], "path_fraction": 0.25}
    ref = _cli(_train_cmd(small_tree, tmp_path / "ref", *extra, **recipe), session_cache)
    killed = _cli(_train_cmd(small_tree, tmp_path / "killed", *extra, **recipe), session_cache)
    _kill_after_first_checkpoint(killed, tmp_path / "killed")
    step_at_kill = _state(tmp_path / "killed")["step"]
    assert 1 <= step_at_kill < 10
    _finish(_cli(_train_cmd(small_tree, tmp_path / "killed", *extra, "--resume", **recipe), session_cache))
    _finish(ref)
    a, b = _state(tmp_path / "ref"), _state(tmp_path / "killed")
    assert a["step"] == b["step"] == 10
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    ma, mb = _metrics(tmp_path / "ref"), _metrics(tmp_path / "killed")
    for m in ma + mb:
        del m["elapsed_s"]  # wall-clock time, the only field allowed to differ
    assert len(ma) == 2 and ma == mb


# --- torchrun ---------------------------------------------------------------------------------


def test_torchrun_two_processes_equal_grad_accum(small_tree, tmp_path, session_cache):
    """gloo, 2 processes x micro-batch 20 == 1 process with --grad-accum 2 (dropSubNN on). The
    torchrun job streams the tree from disk through a DataLoader worker per process; the single
    process holds it in memory and augments in the main process: the same micro-batches. Path
    training is on at weight 0: its backward is the synced one, which must all-reduce the whole
    network's gradients too. (At a nonzero weight the two differ slightly by design: DDP broadcasts
    rank 0's BatchNorm buffers at every forward, and the path pass runs on running statistics.)"""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this python")
    extra = ("--max-steps", "3")
    recipe = {"p_drop": 0.1, "no_randaugment": True, "eval_limit": 40, "path_fraction": 0.5, "path_weight": 0}
    single = _cli(_train_cmd(small_tree, tmp_path / "single", *extra, grad_accum=2, **recipe), session_cache)
    ddp_cmd = [
        str(torchrun),
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        *_train_cmd(small_tree, tmp_path / "ddp", *extra, "--workers", "1", **recipe)[2:],
    ]
    _finish(_cli(ddp_cmd, session_cache))
    _finish(single)
    a, b = _state(tmp_path / "single"), _state(tmp_path / "ddp")
    assert a["step"] == b["step"] == 3 and b["micro_batches"] == a["micro_batches"] == 2
    params = {n for n, _ in load_checkpoint(tmp_path / "single" / "last.pt")[0].named_parameters()}
    worst = max(float((a["model"][n] - b["model"][n]).abs().max()) for n in params)
    assert worst < 1e-4
    # the train metrics are summed over both processes: the same numbers as the single process
    ma, mb = _metrics(tmp_path / "single")[-1], _metrics(tmp_path / "ddp")[-1]
    assert mb["train_cross_entropy"] == pytest.approx(ma["train_cross_entropy"], rel=1e-5)
    assert mb["train_accuracy"] == ma["train_accuracy"]
    assert mb["train_coding_loss"] == pytest.approx(ma["train_coding_loss"], rel=1e-4)
    ddp_cfg = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert ddp_cfg["world_size"] == 2 and ddp_cfg["streamed"] is True


# --- schedule and flags -----------------------------------------------------------------------


def test_cosine_schedule_matches_the_paper():
    cfg = TrainConfig(batch_size=512, min_lr=1e-5)
    assert cfg.resolved_lr() == pytest.approx(0.1)
    total = 100
    assert lr_at(cfg, 0, total) == pytest.approx(0.1)
    assert lr_at(cfg, 50, total) == pytest.approx(1e-5 + 0.5 * (0.1 - 1e-5))
    assert lr_at(cfg, 100, total) == pytest.approx(1e-5)
    lrs = [lr_at(cfg, s, total) for s in range(total)]
    assert all(b < a for a, b in zip(lrs, lrs[1:]))


def test_warmup_then_onecycle_decay():
    cfg = TrainConfig(lr=0.2, schedule="onecycle", warmup_frac=0.2, min_lr=0.0)
    assert [lr_at(cfg, s, 10) for s in range(2)] == pytest.approx([0.1, 0.2])
    assert lr_at(cfg, 2, 10) == pytest.approx(0.2)
    assert lr_at(cfg, 6, 10) == pytest.approx(0.2 * (1 - 4 / 8))
    assert TrainConfig(batch_size=128).resolved_lr() == pytest.approx(0.025)


def test_eval_subset_defaults():
    assert TrainConfig().resolved_eval_limit() is None
    assert TrainConfig(max_steps=30).resolved_eval_limit() == 2000
    assert TrainConfig(max_steps=30, eval_limit=0).resolved_eval_limit() is None
    assert TrainConfig(eval_limit=500).resolved_eval_limit() == 500
    # RandAugment: the preset's default (docs/method.md section 4), --randaugment, --no-randaugment
    assert TrainConfig(preset="cifar100").resolved_randaugment() == (1, 2)
    assert TrainConfig(preset="cifar10").resolved_randaugment() == (3, 4)
    assert TrainConfig(preset="imagenet").resolved_randaugment() == (2, 10)
    assert TrainConfig().resolved_randaugment() is None  # tiny: the CPU preset
    assert TrainConfig(preset="small").resolved_randaugment() is None
    assert TrainConfig(randaugment=(2, 5)).resolved_randaugment() == (2, 5)
    assert TrainConfig(preset="cifar10", no_randaugment=True).resolved_randaugment() is None


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"preset": "resnet50"}, "unknown preset 'resnet50'"),
        ({"p_drop": 1.0}, "p_drop"),
        ({"batch_size": 0}, "--batch-size"),
        ({"epochs": 0}, "--epochs"),
        ({"lr": -0.1}, "--lr"),
        ({"schedule": "step"}, "unknown schedule"),
        ({"max_steps": 0}, "--max-steps"),
        ({"path_fraction": 1.0}, "path_fraction"),
        ({"path_weight": -1.0}, "path_weight"),
        ({"path_negatives": "random"}, "path_negatives must be one of hardest, uniform"),
    ],
)
def test_bad_settings_fail_before_reading_data(tmp_path, kw, message):
    cfg = TrainConfig(data=str(tmp_path / "does-not-exist"), out=str(tmp_path / "run"), **kw)
    with pytest.raises(CodedResNeXtError, match=message):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_batch_must_split_into_micro_batches(small_tree, tmp_path):
    cfg = TrainConfig(data=str(small_tree), out=str(tmp_path / "run"), batch_size=30, grad_accum=4)
    with pytest.raises(CodedResNeXtError, match="multiple of processes x grad_accum"):
        train(cfg)
    cfg = TrainConfig(data=str(small_tree), out=str(tmp_path / "run"), batch_size=400)
    with pytest.raises(CodedResNeXtError, match="exceeds the 200 training images"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_lr_is_finite_everywhere():
    cfg = TrainConfig(lr=0.1, warmup_frac=0.5)
    assert all(math.isfinite(lr_at(cfg, s, 3)) and lr_at(cfg, s, 3) > 0 for s in range(3))
    assert np.isclose(lr_at(cfg, 0, 3), 0.1)
