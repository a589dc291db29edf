"""`codedresnext train` with bad input: a clear message, exit code 2, nothing half-written."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cli_helpers import run_cli

from codedresnext import cli
from codedresnext.checkpoint import save_checkpoint
from codedresnext.model import create_model

ROOT = Path(__file__).resolve().parents[1]


def _train(capsys, *args: str) -> tuple[int, str]:
    rc = run_cli(["train", "--quiet", *args])
    return rc, capsys.readouterr().err


def test_missing_data_path_subprocess(tmp_path, session_cache):
    """Through the real entry point: exit code 2, one line saying what to pass instead."""
    env = {**os.environ, "CODEDRESNEXT_CACHE": str(session_cache)}
    out = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-m", "codedresnext.cli", "train", "--preset", "tiny",
         "--data", str(tmp_path / "no-such-data"), "--out", str(out)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "codedresnext train: error: argument --data: no such file or directory" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_corrupt_archive(cifar10_tgz, tmp_path, capsys):
    cut = tmp_path / "cifar10-jpeg.tar.gz"
    cut.write_bytes(cifar10_tgz.read_bytes()[:400_000])  # a download that stopped early
    rc, err = _train(capsys, "--data", str(cut), "--out", str(tmp_path / "run"))
    assert rc == 2 and "corrupt or truncated" in err
    assert not (tmp_path / "run").exists()


def test_path_traversal_archive(tmp_path, capsys, session_cache):
    arc = tmp_path / "evil.tar.gz"
    with tarfile.open(arc, "w:gz") as tar:
        m = tarfile.TarInfo("train/../../../outside.jpg")
        m.size = 4
        tar.addfile(m, io.BytesIO(b"evil"))
    rc, err = _train(capsys, "--data", str(arc), "--out", str(tmp_path / "run"))
    assert rc == 2 and "refusing to extract" in err
    assert not (tmp_path / "run").exists()
    # where '../../..' from cache/extracted/.extract-*/ would have written it
    assert (
        not (session_cache / "outside.jpg").exists() and not (session_cache.parent / "outside.jpg").exists()
    )


def test_unknown_preset_fails_before_reading_data(small_tree, tmp_path, capsys):
    rc, err = _train(capsys, "--preset", "resnet50", "--data", str(small_tree), "--out", str(tmp_path / "r"))
    assert rc == 2 and "invalid choice: 'resnet50'" in err and "cifar10" in err
    assert not (tmp_path / "r").exists()


def test_resume_with_a_checkpoint_of_another_preset(small_tree, tmp_path, capsys):
    run = tmp_path / "run"
    save_checkpoint(run / "last.pt", create_model("cifar10"), optimizer={}, step=3, best_accuracy=0.5)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    rc, err = _train(capsys, "--preset", "tiny", "--data", str(small_tree), "--out", str(run), "--resume")
    assert rc == 2
    assert "holds a 'cifar10' model" in err and "'tiny'" in err and "--preset" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing written or changed


@pytest.mark.parametrize(
    "args, message",
    [
        (["--resume"], "no checkpoint at"),
        (["--batch-size", "1000"], "exceeds the 200 training images"),
        (["--lr", "0"], "argument --lr: expected a number > 0, not '0'"),
    ],
)
def test_other_bad_runs(small_tree, tmp_path, capsys, args, message):
    run = tmp_path / "run"
    rc, err = _train(capsys, "--data", str(small_tree), "--out", str(run), *args)
    assert rc == 2 and message in err
    assert not run.exists()


def test_bad_flag_values_are_argparse_errors(tmp_path, capsys):
    assert run_cli(["train", "--data", str(tmp_path), "--out", "y", "--epochs", "three"]) == 2
    err = capsys.readouterr().err
    assert "argument --epochs: expected a whole number >= 1, not 'three'" in err
    assert len(err.strip().splitlines()) == 1


def test_options_default_to_the_train_config(tmp_path):
    """No default is spelled twice: options not typed leave TrainConfig's own default in place."""
    from codedresnext.commands.train import config_kwargs
    from codedresnext.train import TrainConfig

    args = cli.build_parser().parse_args(["train", "--data", str(tmp_path), "--out", "o"])
    kw = config_kwargs(args)
    assert kw == {"data": str(tmp_path), "out": "o"}
    assert TrainConfig(**kw) == TrainConfig(data=str(tmp_path), out="o")


def test_recipe_file_sets_the_hyper_parameters_and_options_win(tmp_path, capsys):
    """`train --config` with a shipped run's config.json: its recipe, not its run location."""
    from codedresnext.commands.train import config_kwargs
    from codedresnext.train import TrainConfig

    recipe = ROOT / "models" / "demo" / "phase1" / "config.json"
    argv = ["train", "--config", str(recipe), "--data", str(tmp_path), "--out", "o"]
    cfg = TrainConfig(**config_kwargs(cli.build_parser().parse_args([*argv, "--lr", "0.05"])))
    assert (cfg.preset, cfg.epochs, cfg.schedule, cfg.warmup_frac) == ("small", 18, "onecycle", 0.15)
    assert (cfg.label_smoothing, cfg.no_randaugment, cfg.save_every) == (0.1, True, 100)
    assert cfg.lr == 0.05 and cfg.data == str(tmp_path) and cfg.out == "o"  # typed options win
    assert cfg.resume is False and cfg.progress is True  # the recipe's run state is not taken

    bad = tmp_path / "bad.json"
    for text, message in (
        ('{"mu": 6, "warp": 2}', "unknown fields warp"),
        ('{"p_drop": "high"}', "p_drop must be float, not 'high'"),
        ('{"batch_size": null}', "batch_size must be int, not None"),
        ('{"randaugment": [3]}', "randaugment must be tuple[int, int] | None, not [3]"),
        ('{"control": 1}', "control must be bool, not 1"),
        ("{not json", "not a JSON recipe"),
    ):
        bad.write_text(text)
        assert (
            run_cli(["train", "--config", str(bad), "--data", str(tmp_path), "--out", str(tmp_path / "r")])
            == 2
        )
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "r").exists()


def test_every_shipped_recipe_reads():
    """recipes/*.json and the demo model's per-phase config.json files are valid --config recipes."""
    from codedresnext.commands.train import read_recipe
    from codedresnext.train import TrainConfig

    files = sorted((ROOT / "recipes").glob("*.json")) + sorted(
        (ROOT / "models" / "demo").rglob("config.json")
    )
    assert len(files) >= 9
    for f in files:
        cfg = TrainConfig(data="d", out="o", **read_recipe(str(f)))
        assert cfg.preset in ("tiny", "small", "cifar10", "cifar100"), f
    phase1 = read_recipe(str(ROOT / "models" / "demo" / "phase1" / "config.json"))
    assert (phase1["epochs"], phase1["lr"], phase1["seed"], phase1["save_every"]) == (18, 0.15, 0, 100)
